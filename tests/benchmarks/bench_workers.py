"""Warm workers and the data plane: ``python tests/benchmarks/bench_workers.py``.

Prints, each against baselines measured in the same run:
- the fixed cost of the 2nd-10th ``start(num_cores=2)`` of the six-stage tutorial graph of
  trivial stages (target: median <= 5 ms), and a stage importing scikit-learn: its first
  run beside the later ones (the import is paid once per worker);
- per-stage time on 2,000 trivial stages (random DAG, fan-out, chain), warm, beside
  ``multiprocessing.Pool`` (fork) and ``ProcessPoolExecutor`` (fork) used as their users use
  them: every ready task handed over at once, a done-callback handing over the tasks it
  releases (targets on the random DAG and the fan-out: at most 1.0x the Pool and 0.7x the
  ProcessPoolExecutor), and ``dask.threaded.get`` of the sinks (threads in one process, no
  inter-process messages; target on the chain: at most 1.0x); pydags' default settings,
  so its results are stored and the run journaled: that goes on in the background once
  ``start()`` returns, and is timed apart;
- a 200 MB float64 array from one stage to two consumers on 2 cores: the gap between the
  consumers' starts (target <= 100 ms), wall time beside ``num_cores=1`` (target <= 2x)
  and the driver's peak memory growth (target <= 1.2x the array); the same with 200 MB of
  ``bytes``; a 10-stage chain passing a 100 MB array along, beside ``num_cores=1``
  (target <= 2x), and with ``cache=True`` (every result stored: each round starts from an
  empty cache) beside the same chain without it: its end (target <= 1.3x) and the driver's
  peak memory growth (target <= 1.2x one array).
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import queue
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

import dask.threaded
import psutil
from bench_scheduler import random_parents

from pydags import Pipeline, stage
from pydags.known import settle
from pydags.scribe import flush
from pydags.store import DiskStore


def trivial(*values):
    return len(values)


def shapes(n: int) -> dict[str, list[list[int]]]:
    return {"random DAG": random_parents(n, seed=7),
            "fan-out": [[] if i == 0 else [0] for i in range(n)],
            "chain": [[i - 1] if i else [] for i in range(n)]}


def build(parents: list[list[int]]) -> Pipeline:
    make = stage(trivial)
    stages: list = []
    for i, ps in enumerate(parents):
        stages.append(make(*[stages[p] for p in ps]).named(f"s{i}"))
    return Pipeline("bench", stages)


def readiness_loop(parents: list[list[int]], submit) -> float:
    """The baseline scheduler, as a user of a pool writes it: each node is handed to
    ``submit(function, args, on_done)`` as soon as its parents are done, however many are
    in flight (the pool queues them), so the workers never wait for the loop."""
    children: dict[int, list[int]] = {i: [] for i in range(len(parents))}
    for i, ps in enumerate(parents):
        for p in ps:
            children[p].append(i)
    waiting = {i: len(ps) for i, ps in enumerate(parents)}
    ready = [i for i, n in waiting.items() if n == 0]
    results: dict[int, object] = {}
    done: queue.SimpleQueue = queue.SimpleQueue()
    start = time.perf_counter()
    while len(results) < len(parents):
        while ready:
            i = ready.pop()
            submit(trivial, [results[p] for p in parents[i]], lambda r, i=i: done.put((i, r)))
        i, value = done.get()
        results[i] = value
        for c in children[i]:
            waiting[c] -= 1
            if waiting[c] == 0:
                ready.append(c)
    return time.perf_counter() - start


def fixed_cost() -> None:
    make = stage(trivial)
    s1, s2 = make().named("stage_1"), make().named("stage_2")
    s3, s4 = make().named("stage_3").after(s2), make().named("stage_4").after(s2)
    s5 = make().named("stage_5").after(s1)
    s6 = make().named("stage_6").after(s3, s4, s5)
    pipeline = Pipeline("tutorial", [s1, s2, s3, s4, s5, s6])
    times = [timed_start(pipeline) for _ in range(10)]
    print(f"tutorial graph, trivial stages, 2 cores: 1st start {times[0] * 1e3:.1f} ms, "
          f"2nd-10th median {statistics.median(times[1:]) * 1e3:.1f} ms (target <= 5 ms)")

    def uses_sklearn():
        import sklearn.ensemble  # noqa: F401

        return "imported"

    heavy = Pipeline("sklearn", [stage(uses_sklearn)().named(f"fit{i}") for i in range(2)])
    runs = [timed_start(heavy) for _ in range(4)]
    print(f"stages importing scikit-learn: 1st run {runs[0] * 1e3:.0f} ms, "
          f"later runs {statistics.median(runs[1:]) * 1e3:.1f} ms (the import stays done)")


def per_stage(n: int = 2000, rounds: int = 7) -> None:
    context = multiprocessing.get_context("fork")
    with context.Pool(2) as pool, concurrent.futures.ProcessPoolExecutor(
            2, mp_context=context) as executor:
        def pool_submit(function, args, on_done):
            pool.apply_async(function, args, callback=on_done)

        def executor_submit(function, args, on_done):
            executor.submit(function, *args).add_done_callback(
                lambda future: on_done(future.result()))

        for shape, parents in shapes(n).items():
            pipeline = build(parents)
            graph = {i: (trivial, *parents[i]) for i in range(n)}
            sinks = sorted(set(range(n)) - {p for ps in parents for p in ps})
            stored: list[float] = []

            def ours(pipeline=pipeline, stored=stored) -> float:
                seconds = timed_start(pipeline)
                begin = time.perf_counter()  # its results go to the store and its record to
                settle()  # the journal in the background: timed apart, and never while a
                flush()  # baseline runs
                stored.append(time.perf_counter() - begin)
                pipeline.runs.clear()
                return seconds

            contenders = [ours, lambda parents=parents: readiness_loop(parents, pool_submit),
                          lambda parents=parents: readiness_loop(parents, executor_submit),
                          lambda graph=graph, sinks=sinks: timed_threaded(graph, sinks)]
            for contender in contenders:  # warm
                contender()
            times: list[list[float]] = [[] for _ in contenders]
            for round_ in range(rounds):  # each goes first in turn
                for i in range(round_, round_ + len(contenders)):
                    times[i % len(contenders)].append(contenders[i % len(contenders)]())
            mine, mp_pool, ppe, threaded = (statistics.median(t) for t in times)
            print(f"{n} trivial stages, {shape} (medians of {rounds} rounds): pydags "
                  f"{mine / n * 1e6:.0f} us/stage, multiprocessing.Pool "
                  f"{mp_pool / n * 1e6:.0f} us, "
                  f"ProcessPoolExecutor {ppe / n * 1e6:.0f} us, dask.threaded.get "
                  f"{threaded / n * 1e6:.0f} us; ratios {mine / mp_pool:.2f}x Pool (target <= 1.0 "
                  f"but the chain), {mine / ppe:.2f}x ProcessPoolExecutor (target <= 0.7 but the "
                  f"chain), {mine / threaded:.2f}x dask.threaded.get (target <= 1.0 on the chain); "
                  f"then storing its results and journaling the run in the background took "
                  f"{statistics.median(stored) * 1e3:.0f} ms")


def timed_threaded(graph: dict, keys: list) -> float:
    """Dask's threaded scheduler on the same graph, asked for the sinks."""
    start = time.perf_counter()
    dask.threaded.get(graph, keys)
    return time.perf_counter() - start


def timed_start(pipeline: Pipeline, **options) -> float:
    start = time.perf_counter()
    pipeline.start(show=False, **{"num_cores": 2, **options})
    return time.perf_counter() - start


class PeakMemory:
    """The highest resident memory of this process while it is entered, sampled."""

    def __enter__(self) -> PeakMemory:
        self.process = psutil.Process()
        self.before = self.peak = self.process.memory_info().rss
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self) -> None:
        while not self.stop.wait(0.005):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __exit__(self, *_) -> None:
        self.stop.set()
        self.thread.join()

    @property
    def growth(self) -> int:
        return self.peak - self.before


ROUNDS = 9  # of the big-data runs: the time to touch fresh memory swings between runs


def interleaved(first: Callable[[], Any], second: Callable[[], Any]) -> tuple[list, list]:
    """``ROUNDS`` results of each, the two taking turns at going first."""
    results: tuple[list, list] = ([], [])
    for round_ in range(ROUNDS):
        for i in (0, 1) if round_ % 2 else (1, 0):
            results[i].append((first, second)[i]())
    return results


def big_data() -> None:
    def produce(megabytes):
        import numpy

        return numpy.random.default_rng(0).random(megabytes * (1 << 20) // 8)

    def consume(array):
        import numpy

        return float(numpy.sqrt(array).sum())

    def increment(array):
        return array + 1

    make, use, step = stage(produce), stage(consume), stage(increment)
    data = make(200)
    fan = Pipeline("fan", [use(data).named("left"), use(data).named("right")])
    fan.start(num_cores=2, show=False)  # warm

    def two_cores() -> tuple[float, float, int]:
        with PeakMemory() as memory:  # the driver's
            start = time.perf_counter()
            run = fan.start(num_cores=2, show=False)
            wall = time.perf_counter() - start
        records = run.stage_records
        fan.runs.clear()
        return wall, abs(records["left"].start - records["right"].start), memory.growth

    def one_core() -> float:
        seconds = timed_start(fan, num_cores=1)
        fan.runs.clear()
        return seconds

    ours, inlines = interleaved(two_cores, one_core)
    wall, gap = (statistics.median(r[i] for r in ours) for i in range(2))
    inline = statistics.median(inlines)
    print(f"200 MB to two consumers (medians of {ROUNDS}): 2 cores {wall:.2f} s, "
          f"1 core {inline:.2f} s, ratio {wall / inline:.2f}x (target <= 2); consumers "
          f"started {gap * 1e3:.0f} ms apart (target <= 100); driver grew by "
          f"{max(r[2] for r in ours) / (200 << 20):.2f}x the array at most (target <= 1.2)")

    def produce_bytes(megabytes):
        return b"\x01" * (megabytes << 20)

    def count(data):
        return data.count(1)

    blob = stage(produce_bytes)(200)
    fan_bytes = Pipeline("bytes", [stage(count)(blob).named("left"),
                                   stage(count)(blob).named("right")])

    def bytes_once(cores: int) -> float:
        seconds = timed_start(fan_bytes, num_cores=cores)
        fan_bytes.runs.clear()
        return seconds

    bytes_once(2)
    ours, inline = map(statistics.median,
                       interleaved(lambda: bytes_once(2), lambda: bytes_once(1)))
    print(f"200 MB of bytes to two consumers (medians of {ROUNDS}): 2 cores {ours:.2f} s, "
          f"1 core {inline:.2f} s, ratio {ours / inline:.2f}x")

    stages = [make(100)]
    for i in range(10):
        stages.append(step(stages[-1]).named(f"hop{i}"))
    chain = Pipeline("chain", stages)

    def once(cores: int) -> float:
        seconds = timed_start(chain, num_cores=cores)
        chain.runs.clear()  # let the arrays go
        return seconds

    once(2)
    ours, inline = map(statistics.median, interleaved(lambda: once(2), lambda: once(1)))
    print(f"10-stage chain passing 100 MB along (medians of {ROUNDS}): 2 cores {ours:.2f} s, "
          f"1 core {inline:.2f} s, ratio {ours / inline:.2f}x (target <= 2)")

    with tempfile.TemporaryDirectory() as folder:
        cached = Pipeline("chain", stages, store=DiskStore(folder))

        def stored() -> tuple[float, int]:
            cached.clear_cache()  # waits for the last round's writes: every round stores all
            with PeakMemory() as memory:
                seconds = timed_start(cached, cache=True)
            cached.runs.clear()
            return seconds, memory.growth

        def plain() -> float:
            settle()  # the writes of a round before, if any, are not this round's
            seconds = timed_start(cached)
            cached.runs.clear()
            return seconds

        stored()
        with_cache, without = interleaved(stored, plain)
        cache_time, plain_time = statistics.median(r[0] for r in with_cache), statistics.median(
            without)
        grown = max(r[1] for r in with_cache) / (100 << 20)
        settle()
    print(f"the same chain with cache=True, every result stored (medians of {ROUNDS}): "
          f"{cache_time:.2f} s, without {plain_time:.2f} s, ratio {cache_time / plain_time:.2f}x "
          f"(target <= 1.3); driver grew by {grown:.2f}x one array at most (target <= 1.2)")


if __name__ == "__main__":
    fixed_cost()
    per_stage()
    big_data()

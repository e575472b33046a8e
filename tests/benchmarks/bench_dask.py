"""Dask backend benchmark: ``python tests/benchmarks/bench_dask.py``.

On one LocalCluster (2 workers, 1 thread each), prints the per-stage time of
``pipeline.start(executor=client)`` beside Dask's own ``client.get`` of the same graph of
trivial stages, asking, as a Dask user would, only for the results of its sinks (the
stages nothing takes): a 2,000-stage random DAG, fan-out and chain (target: ratio <= 1.3;
medians of 5 rounds, each way going first in turn),
and pydags' own worker processes on the same graphs for reference; then a map over
100,000 numbers beside ``client.map`` over 16 chunks of it.
"""

from __future__ import annotations

import statistics
import time

from bench_scheduler import build, random_parents, trivial
from distributed import Client, LocalCluster

from pydags import Pipeline, stage
from pydags.known import settle
from pydags.scribe import flush

ROUNDS = 5


def square(x):
    return x * x


def squares(chunk):
    return [x * x for x in chunk]


def dask_graph(parents: list[list[int]]) -> dict:
    """The same DAG as a plain Dask task graph, its keys named as Dask names them (the
    function's name, then what makes each unique)."""
    return {f"trivial-{i}": (trivial, *[f"trivial-{p}" for p in ps])
            for i, ps in enumerate(parents)}


def timed(action) -> float:
    """The time of ``action``; then pydags' background work (storing results, journaling the
    run) is waited for untimed, so that it slows nothing timed after it."""
    start = time.perf_counter()
    action()
    seconds = time.perf_counter() - start
    settle()
    flush()
    return seconds


def interleaved(*actions, rounds: int = ROUNDS) -> list[float]:
    """The median time of each action over ``rounds`` rounds, each going first in turn."""
    times: list[list[float]] = [[] for _ in actions]
    for round_ in range(rounds):
        for i in range(round_, round_ + len(actions)):
            times[i % len(actions)].append(timed(actions[i % len(actions)]))
    return [statistics.median(t) for t in times]


def main(n: int = 2000) -> None:
    shapes = {"random DAG": random_parents(n, seed=11),
              "fan-out": [[] if i == 0 else [0] for i in range(n)],
              "chain": [[i - 1] if i else [] for i in range(n)]}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        for shape, parents in shapes.items():
            pipeline = build(parents, trivial)
            taken = {p for ps in parents for p in ps}
            graph, keys = dask_graph(parents), [f"trivial-{i}" for i in range(n) if i not in taken]
            client.get(graph, keys)  # warm up both
            timed(lambda pipeline=pipeline: pipeline.start(executor=client, show=False))
            own, ours, local = interleaved(
                lambda graph=graph, keys=keys: client.get(graph, keys),
                lambda pipeline=pipeline: pipeline.start(executor=client, show=False),
                lambda pipeline=pipeline: pipeline.start(num_cores=2, show=False))
            print(f"{n}-stage {shape} (medians of {ROUNDS} rounds): pydags on Dask "
                  f"{ours / n * 1e3:.3f} ms/stage, "
                  f"Dask's client.get {own / n * 1e3:.3f} ms/stage, ratio {ours / own:.2f}x "
                  f"(target <= 1.3); pydags' own workers {local / n * 1e3:.3f} ms/stage")
        numbers = list(range(100_000))
        chunks = [numbers[i:i + 6250] for i in range(0, len(numbers), 6250)]
        mapped = Pipeline("squares", [stage(square).map(numbers)])

        def by_hand() -> list[int]:
            parts = client.gather(client.map(squares, chunks, pure=False))
            return [x for part in parts for x in part]

        by_hand()
        timed(lambda: mapped.start(executor=client, show=False))
        theirs, ours = interleaved(by_hand, lambda: mapped.start(executor=client, show=False))
        print(f"a map over 100,000 numbers (medians of {ROUNDS} rounds): pydags on Dask "
              f"{ours * 1e3:.0f} ms, "
              f"client.map over 16 chunks {theirs * 1e3:.0f} ms, ratio {ours / theirs:.2f}x")


if __name__ == "__main__":
    main()

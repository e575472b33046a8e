"""Scheduler benchmarks: ``python tests/benchmarks/bench_scheduler.py``.

Prints, each against a baseline measured in the same run:
- per-stage overhead of pydags on a 2,000-stage random DAG of trivial stages, beside the
  same worker pool driven by a minimal readiness loop (target: ratio <= 1.2);
- makespan of random DAGs of 50-200 ms sleeping stages on 2 cores, divided by the lower
  bound max(critical path, total work / 2) (target: <= 1.05);
- the time to build and validate a 10,000-stage pipeline (target: < 1 s).
"""

from __future__ import annotations

import random
import time

import networkx as nx

from pydags.executors.process import ProcessExecutor
from pydags.pipeline import Pipeline
from pydags.protocol import Job, Outcome
from pydags.stage import stage


def trivial(*values):
    return len(values)


def nap(seconds, *_):
    time.sleep(seconds)


def random_parents(n: int, seed: int, fan_in: int = 3) -> list[list[int]]:
    rng = random.Random(seed)
    return [rng.sample(range(i), min(i, rng.randint(0, fan_in))) for i in range(n)]


def build(parents, function, args_of=lambda i: ()) -> Pipeline:
    make = stage(function)
    stages = []
    for i, ps in enumerate(parents):
        stages.append(make(*args_of(i), *[stages[p] for p in ps]).named(f"s{i}"))
    return Pipeline("bench").add_stages(stages)


def minimal_loop(parents, workers: int) -> float:
    """The baseline: the same worker pool, driven by the simplest readiness loop."""
    children = {i: [] for i in range(len(parents))}
    for i, ps in enumerate(parents):
        for p in ps:
            children[p].append(i)
    waiting = {i: len(ps) for i, ps in enumerate(parents)}
    results: dict[int, object] = {}
    pool = ProcessExecutor(workers)
    pool.start()
    start = time.perf_counter()
    ready = [i for i, n in waiting.items() if n == 0]
    running = 0
    while len(results) < len(parents):
        while ready and running < workers:
            i = ready.pop()
            pool.submit(Job(str(i), trivial, tuple(results[p] for p in parents[i]), {}))
            running += 1
        for news in pool.poll(1.0):
            if isinstance(news, Outcome):
                running -= 1
                i = int(news.name)
                results[i] = news.value
                for c in children[i]:
                    waiting[c] -= 1
                    if waiting[c] == 0:
                        ready.append(c)
    elapsed = time.perf_counter() - start
    pool.shutdown()
    return elapsed


def overhead(n: int = 2000, workers: int = 2, repeats: int = 5) -> None:
    parents = random_parents(n, seed=7)
    pipeline = build(parents, trivial)
    base, ours = [], []
    for _ in range(repeats):
        base.append(minimal_loop(parents, workers))
        run = pipeline.start(num_cores=workers, show=False)
        ours.append(run.wall_time)
    b, o = min(base), min(ours)
    print(f"overhead, {n} trivial stages on {workers} workers: "
          f"baseline {b / n * 1e3:.3f} ms/stage, pydags {o / n * 1e3:.3f} ms/stage, "
          f"ratio {o / b:.2f} (target <= 1.2)")


def makespan(trials: int = 3, n: int = 40, workers: int = 2) -> None:
    ratios = []
    for seed in range(trials):
        rng = random.Random(100 + seed)
        parents = random_parents(n, seed=100 + seed, fan_in=2)
        seconds = [rng.uniform(0.05, 0.2) for _ in range(n)]
        pipeline = build(parents, nap, args_of=lambda i, s=seconds: (s[i],))
        graph = pipeline.graph
        nx.set_node_attributes(graph, {f"s{i}": s for i, s in enumerate(seconds)}, "w")
        longest: dict[str, float] = {}
        for node in nx.topological_sort(graph):
            longest[node] = graph.nodes[node]["w"] + max(
                (longest[p] for p in graph.predecessors(node)), default=0.0)
        bound = max(max(longest.values()), sum(seconds) / workers)
        run = pipeline.start(num_cores=workers, show=False)
        work = run.ended - min(r.start for r in run.stage_records.values())
        ratios.append(work / bound)
        print(f"  random DAG {seed}: {n} stages, bound {bound:.2f}s, makespan {work:.2f}s, "
              f"ratio {work / bound:.3f}")
    print(f"makespan / lower bound on {workers} cores: worst {max(ratios):.3f} (target <= 1.05)")


def build_time(n: int = 10_000) -> None:
    parents = random_parents(n, seed=3, fan_in=2)
    start = time.perf_counter()
    pipeline = build(parents, trivial)
    elapsed = time.perf_counter() - start
    print(f"build and validate {len(pipeline)} stages: {elapsed:.3f}s (target < 1 s)")


if __name__ == "__main__":
    build_time()
    overhead()
    makespan()

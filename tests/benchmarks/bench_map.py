"""Mapped-stage benchmark: ``python tests/benchmarks/bench_map.py``.

Maps a trivial function over 100,000 and over 1,000,000 integers on 2 processes three ways,
round by round (so each round sees the same machine load), and prints the medians:
``multiprocessing.Pool(2).map`` (its own chunksize, the pool made in the round, as it is
used), ``joblib.Parallel(n_jobs=2)`` (its auto-batching; loky keeps its workers between
calls), and a pipeline ``square.map(numbers)`` started with ``num_cores=2`` (pydags keeps
its workers too). Target: pydags <= 1.2x ``Pool.map``. What pydags does in the background
once ``start()`` returns (storing the results, journaling the run) is waited for and timed
apart, so that it never runs while another way is timed.
"""

from __future__ import annotations

import multiprocessing
import statistics
import time

from joblib import Parallel, delayed

from pydags import Pipeline, stage
from pydags.known import settle
from pydags.scribe import flush

SIZES = (100_000, 1_000_000)
ROUNDS = 7


def square(x):
    return x * x


def with_pool(numbers: list[int]) -> list[int]:
    with multiprocessing.get_context("fork").Pool(2) as pool:
        return pool.map(square, numbers)


def with_joblib(numbers: list[int]) -> list[int]:
    return Parallel(n_jobs=2)(delayed(square)(x) for x in numbers)


def with_pydags(numbers: list[int]) -> list[int]:
    run = Pipeline("squares", [stage(square).map(numbers)]).start(num_cores=2, show=False)
    return run.results["square"]


def background() -> float:
    """Wait for what pydags does in the background once ``start()`` returns (storing the
    results, journaling the run): timed apart, and never while another way runs."""
    begin = time.perf_counter()
    settle()
    flush()
    return time.perf_counter() - begin


def main() -> None:
    for n in SIZES:
        compare(list(range(n)))


def compare(numbers: list[int]) -> None:
    expected = [x * x for x in numbers]
    ways = {"multiprocessing.Pool(2).map": with_pool, "joblib.Parallel(n_jobs=2)": with_joblib,
            "pydags square.map, num_cores=2": with_pydags}
    for way in ways.values():  # warm up: imports, loky's and pydags' workers
        assert way(numbers) == expected
    background()
    times: dict[str, list[float]] = {name: [] for name in ways}
    behind: list[float] = []
    for round_ in range(ROUNDS):  # each goes first in turn
        names = list(ways)[round_ % len(ways):] + list(ways)[:round_ % len(ways)]
        for name in names:
            start = time.perf_counter()
            ways[name](numbers)
            times[name].append(time.perf_counter() - start)
            if ways[name] is with_pydags:
                behind.append(background())
    medians = {name: statistics.median(t) for name, t in times.items()}
    print(f"a map over {len(numbers):,} numbers:")
    for name, seconds in medians.items():
        print(f"  {name:32s} {seconds * 1e3:8.1f} ms  (median of {ROUNDS})")
    ours = medians["pydags square.map, num_cores=2"]
    print(f"  pydags / Pool.map: {ours / medians['multiprocessing.Pool(2).map']:.2f}x "
          f"(target <= 1.2x); then storing its results and journaling the run in the "
          f"background took {statistics.median(behind) * 1e3:.0f} ms")


if __name__ == "__main__":
    main()

"""Journal and persistence benchmark: ``python tests/benchmarks/bench_journal.py``.

The same runs with the journal and persisted results on (the default) and off
(``PYDAGS_JOURNAL=0``, ``persist=False``), round by round so each round sees the same
machine load, on 2 cores with warm workers; medians of 15 rounds:

- 2,000 trivial stages in a random DAG: on at most 1.05x off;
- a map of 100,000 trivial items: on at most 1.05x off;
- a chain of 10 stages passing 100 MB arrays: on at most 1.3x off;
- ``pydags.history()`` over a journal of 10,000 runs: under 0.5 s.

The results are written after the run's stages, in the run's pauses or after its end: how
long that took is printed too (each round starts once the last one's are written).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from bench_scheduler import build, random_parents

from pydags import Pipeline, journal, stage
from pydags.known import settle
from pydags.past_runs import history
from pydags.scribe import flush, reading

ROUNDS = 15


def trivial(*upstream):
    return len(upstream)


def square(x):
    return x * x


def hundred_megabytes(previous=None):
    import numpy

    array = numpy.ones(100_000_000 // 8) if previous is None else previous + 1
    return array


def dag() -> Pipeline:
    return build(random_parents(2000, seed=1, fan_in=2), trivial)


def mapped() -> Pipeline:
    return Pipeline("map", [stage(square).map(range(100_000))])


def chain() -> Pipeline:
    make = stage(hundred_megabytes)
    stages = [make().named("a0")]
    for i in range(1, 10):
        stages.append(make(stages[-1]).named(f"a{i}"))
    return Pipeline("arrays", stages)


def timed(pipeline: Pipeline, on: bool) -> tuple[float, float]:
    """Seconds the run took, then seconds its results took to be written after it (in the
    background: the next cell could run meanwhile)."""
    os.environ["PYDAGS_JOURNAL"] = "1" if on else "0"
    start = time.perf_counter()
    pipeline.start(num_cores=2, show=False, persist=on)
    ended = time.perf_counter()
    settle()  # its results stored and journaled: the next round starts on a quiet machine
    flush()
    return ended - start, time.perf_counter() - ended


def main() -> None:
    os.environ["PYDAGS_HOME"] = tempfile.mkdtemp(prefix="bench-journal-home-")
    os.environ["PYDAGS_STORE"] = tempfile.mkdtemp(prefix="bench-journal-store-")
    failed = False
    for label, make, target in (("2,000 trivial stages", dag, 1.05),
                                ("100,000-item map", mapped, 1.05),
                                ("10 x 100 MB chain", chain, 1.3)):
        pipeline = make()
        timed(pipeline, True), timed(pipeline, False)  # warm up
        times: dict[bool, list[float]] = {True: [], False: []}
        after: list[float] = []
        for _ in range(ROUNDS):
            for on in (True, False):
                took, writing = timed(pipeline, on)
                times[on].append(took)
                if on:
                    after.append(writing)
        on, off = (statistics.median(times[k]) for k in (True, False))
        ratio = on / off
        failed |= ratio > target
        print(f"{label:22s} on {on * 1e3:8.1f} ms  off {off * 1e3:8.1f} ms  "
              f"ratio {ratio:.3f}x (target <= {target}x); then written in the background "
              f"in {statistics.median(after) * 1e3:.0f} ms")
    settle()
    with reading() as db, journal.transaction(db):
        db.executemany("INSERT INTO runs (id, pipeline, state, started, ended, stages, counts) "
                       "VALUES (?, ?, 'ok', ?, ?, 40, '{\"done\": 40}')",
                       [(f"r{i:05d}", f"p{i % 20}", i, i + 1.0) for i in range(10_000)])
    readings = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        assert len(history()) >= 10_000
        readings.append(time.perf_counter() - start)
    seconds = statistics.median(readings)
    failed |= seconds > 0.5
    print(f"history() of 10,000 runs {seconds * 1e3:8.1f} ms (target < 500 ms)")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

"""A 40-stage pipeline with a map, for the journal's tests: run (or resumed) by
``python journaled.py run|resume SEED`` in a process of its own, which prints what it did as
JSON. Light: worker processes import it."""

from __future__ import annotations

import json
import random
import sys
import time

from pydags import Pipeline, stage


@stage
def step(i, *upstream):
    time.sleep(0.01 + 0.04 * (i % 3))
    return i + sum(upstream)


@stage
def square(x, offset):
    time.sleep(0.002)
    return x * x + offset


@stage
def total(values):
    return sum(values)


def pipeline() -> Pipeline:
    chosen = random.Random(7)
    stages = []
    for i in range(37):
        parents = chosen.sample(stages[-6:], min(len(stages), 2)) if stages else []
        stages.append(step(i, *parents).named(f"step_{i:02d}"))
    mapped = square.map(range(300), offset=stages[20]).named("square")
    summed = total(mapped)
    last = step(99, summed, stages[-1]).named("last")
    return Pipeline("journaled", [last, *stages])


def main(action: str) -> None:
    run = pipeline().start(num_cores=2, resume=action == "resume", raise_on_error=False,
                           show=False)
    items = run.items["square"]
    print(json.dumps({
        "id": run.id, "status": {n: s.value for n, s in run.status.items()},
        "notes": {n: r.cache for n, r in run.stage_records.items()},
        "items_ran": sorted(i for i in range(items.count) if items.start[i]),
        "results": {n: run.results[n] for n in run.results if n != "square"},
        "square": run.results["square"]}))


if __name__ == "__main__":
    main(sys.argv[1])

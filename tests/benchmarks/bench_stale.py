"""Staleness benchmark: ``python tests/benchmarks/bench_stale.py``.

A 1,000-stage random DAG of stages that call helper functions and read module constants,
run once with ``cache=True``; then, after one helper changed, ``pipeline.stale()`` says
which stages would run and why. Printed beside, from the same run: building the pipeline,
and ``start(cache=True)`` of it with nothing to run (every stage cached), which looks up
the same fingerprints and loads every result. Target: ``stale()`` under 1 s.
"""

from __future__ import annotations

import sys
import tempfile
import textwrap
import time
from pathlib import Path

from bench_scheduler import random_parents

from pydags import Pipeline
from pydags.store import DiskStore

STAGES = 1000

MODULE = """
from pydags import stage

SCALE = {scale}
OFFSET = 3

def shift(x):
    return x + OFFSET

def scale(x):
    return shift(x) * SCALE

@stage
def first(i):
    return scale(i)

@stage
def second(i, *upstream):
    return shift(i) + sum(upstream)

@stage
def third(i, *upstream):
    return scale(i) - sum(upstream)
"""


def build(module, parents) -> Pipeline:
    kinds = [module.first, module.second, module.third]
    stages = []
    for i, ps in enumerate(parents):
        kind = kinds[0] if not ps else kinds[1 + i % 2]
        stages.append(kind(i, *[stages[p] for p in ps]).named(f"s{i}"))
    return Pipeline("bench_stale", stages, store=STORE)


def load(folder: Path, scale: int):
    import importlib

    (folder / "stale_bench_flow.py").write_text(textwrap.dedent(MODULE.format(scale=scale)))
    sys.modules.pop("stale_bench_flow", None)
    importlib.invalidate_caches()
    return importlib.import_module("stale_bench_flow")


def seconds(action) -> tuple[float, object]:
    start = time.perf_counter()
    value = action()
    return time.perf_counter() - start, value


if __name__ == "__main__":
    folder = Path(tempfile.mkdtemp())
    STORE = DiskStore(folder / "store")
    sys.dont_write_bytecode = True
    sys.path.insert(0, str(folder))
    parents = random_parents(STAGES, seed=5)
    module = load(folder, scale=2)
    took, pipeline = seconds(lambda: build(module, parents))
    print(f"build {STAGES} stages:                        {took:.3f} s")
    took, _ = seconds(lambda: pipeline.start(cache=True, show=False))
    print(f"first start(cache=True), all run:           {took:.3f} s")
    took, _ = seconds(lambda: build(module, parents).start(cache=True, show=False))
    print(f"start(cache=True), all cached:              {took:.3f} s")
    changed = build(load(folder, scale=5), parents)
    took, reasons = seconds(changed.stale)
    stale = sum(reason is not None for reason in reasons.values())
    print(f"stale() after SCALE changed ({stale} stale):   {took:.3f} s (target < 1 s)")
    fresh = build(load(folder, scale=2), parents)
    took, reasons = seconds(fresh.stale)
    print(f"stale() with nothing changed:               {took:.3f} s (target < 1 s)")

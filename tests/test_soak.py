"""Soak: 20 runs of a 200-stage DAG where 5% of stages fail and 1% crash their worker."""

from __future__ import annotations

import random

import pytest
from conftest import live_children
from workload import work

from pydags import StageStatus
from pydags.executors.pool import POOL
from pydags.pipeline import Pipeline

pytestmark = [pytest.mark.soak, pytest.mark.usefixtures("no_orphans")]


def faulty_pipeline(seed: int) -> Pipeline:
    rng = random.Random(seed)
    stages = []
    for i in range(200):
        roll = rng.random()
        fate = "crash" if roll < 0.01 else "fail" if roll < 0.06 else "ok"
        parents = rng.sample(stages, min(len(stages), rng.randint(0, 2)))
        stages.append(work(fate, *parents).named(f"s{i}"))
    return Pipeline(f"soak{seed}").add_stages(stages)


def test_twenty_faulty_runs_stay_consistent_and_leave_no_process():
    for seed in range(20):
        pipeline = faulty_pipeline(seed)
        run = pipeline.start(num_cores=2, raise_on_error=False)
        status = run.status
        for name in pipeline.graph:
            deps = list(pipeline.graph.predecessors(name))
            if status[name] is StageStatus.DONE:
                assert all(status[d] is StageStatus.DONE for d in deps), name
            elif status[name] is StageStatus.SKIPPED:
                assert any(status[d] in (StageStatus.FAILED, StageStatus.SKIPPED)
                           for d in deps), name
            else:
                assert status[name] is StageStatus.FAILED, (name, status[name])
                assert all(status[d] is StageStatus.DONE for d in deps), name
        fates = {s.name: s.arguments[0][0] for s in pipeline.stages}
        for name, fate in fates.items():
            if status[name] is StageStatus.FAILED:
                expected = "worker died" if fate == "crash" else "planned failure"
                assert expected in run.errors[name]
        left = {p.pid for p in live_children()}
        assert left <= set(POOL.idle) and len(left) <= 2, f"run {seed} left processes behind"

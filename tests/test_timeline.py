"""Run insight: timeline, efficiency figures, records, history and comparison."""

from __future__ import annotations

import itertools
import os

from matplotlib.testing.compare import compare_images
from test_draw import BASELINE

from pydags.examples import tutorial
from pydags.pipeline import Pipeline
from pydags.records import Attempt
from pydags.run import Run
from pydags.stage import stage
from pydags.status import StageStatus
from pydags.views.timeline import critical_path, figures


def synthetic_run() -> Run:
    """Two workers, fixed times: a (0-2) on w1, b (0-1) on w2, c after a and b (2-4) on w2."""
    run = Run("synthetic", ["a", "b", "c"], {"a": set(), "b": set(), "c": {"a", "b"}})
    for name, worker, start, end in [("a", "w1", 100, 102), ("b", "w2", 100, 101),
                                     ("c", "w2", 102, 104)]:
        record = run.stage_records[name]
        record.status, record.worker = StageStatus.DONE, worker
        record.start, record.end = start, end
        record.attempts.append(Attempt(1, worker, start, end, StageStatus.DONE))
    return run


def test_efficiency_is_computed_from_recorded_times():
    f = figures(synthetic_run())
    assert f["wall"] == 4 and f["work"] == 5 and f["workers"] == 2
    assert f["efficiency"] == 5 / 8 and f["longest"] == ("a", 2)
    assert critical_path(synthetic_run()) == ["a", "c"]


def test_tutorial_timeline_rows_bars_and_dependencies():
    pipeline = tutorial.build()
    run = pipeline.start(num_cores=2)
    figure = run.timeline()
    bars = [p for p in figure.axes[0].patches if p.get_gid()]
    assert sorted(p.get_gid() for p in bars) == sorted(pipeline.graph)
    rows = {}
    for bar in bars:
        rows.setdefault(bar.get_y(), []).append((bar.get_x(), bar.get_x() + bar.get_width()))
    assert len(rows) <= 2
    for spans in rows.values():
        spans.sort()
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert end <= start
    records = run.stage_records
    for name in pipeline.graph:
        for dep in pipeline.graph.predecessors(name):
            assert records[dep].end <= records[name].start


def test_records_history_and_compare():
    @stage
    def one():
        return 1

    pipeline = Pipeline("h").add_stages(one())
    first, second = pipeline.start(), pipeline.start()
    assert list(pipeline.runs) == [first, second]
    rows = first.records()
    assert rows[0]["stage"] == "one" and rows[0]["end"]
    assert rows[0]["worker"] == f"main (pid {os.getpid()})"
    assert list(first.to_dataframe().columns)[:3] == ["stage", "attempt", "worker"]
    change = pipeline.compare(first, second)
    assert change[0]["stage"] == "one" and "ratio" in change[0]
    for _ in range(25):
        pipeline.start()
    assert len(pipeline.runs) == 20


def test_the_timeline_of_a_synthetic_run_matches_the_reference(tmp_path):
    actual = tmp_path / "timeline.png"
    synthetic_run().timeline().savefig(actual, dpi=80)
    assert compare_images(str(BASELINE / "timeline.png"), str(actual), tol=3) is None

"""The recorder: the one writer of what a run knows, read through snapshots from any thread."""

from __future__ import annotations

import threading
import time

from workload import fails_for

from pydags import Pipeline, StageStatus
from pydags.views.timeline import bars


def test_snapshots_read_in_a_tight_loop_during_a_100000_item_map_raise_nothing():
    run = Pipeline("big_map").add_stages(fails_for.map(range(100_000), bad=(7,))).prepare(
        num_cores=2, raise_on_error=False)
    problems: list[BaseException] = []
    tallies: list[tuple[int, int]] = []
    reading = threading.Event()

    def read() -> None:
        reading.set()
        while not run.done():
            try:
                snap = run.snapshot()
                items = snap.items.get("fails_for")
                if items is not None:
                    tallies.append((sum(items.tally), items.count))
                    items.spans("fails_for", time.time())
                    assert items.status.count(1) >= 0 and snap.summary
                bars(snap)
            except BaseException as exc:  # any error in a reader is the failure
                problems.append(exc)
                return

    reader = threading.Thread(target=read)
    reader.start()
    assert reading.wait(30)
    run.start(block=True)
    reader.join(60)
    assert problems == []
    assert tallies and all(total == count == 100_000 for total, count in tallies)
    assert run.status["fails_for"] is StageStatus.FAILED
    assert run.items["fails_for"].counts() == {StageStatus.DONE: 99_999, StageStatus.FAILED: 1}


def test_a_snapshot_stays_as_it_was_taken():
    run = Pipeline("kept").add_stages(fails_for.map(range(10))).start(num_cores=1)
    snap = run.snapshot()
    assert snap.summary == "1/1 done" and snap.items["fails_for"].counts() == {
        StageStatus.DONE: 10}
    assert snap.stage_records["fails_for"] is not run.stage_records["fails_for"]
    assert snap.stage_records["fails_for"] == run.stage_records["fails_for"]
    assert snap.items["fails_for"].status is not run.items["fails_for"].status
    assert snap.wall_time == run.wall_time

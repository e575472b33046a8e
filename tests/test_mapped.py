"""Mapped stages: a stage run once per item of a list known only at run time."""

from __future__ import annotations

import os
import threading

import pytest
from conftest import assert_no_orphans
from workload import (
    crashes_on,
    held,
    list_files,
    pause_then_double,
    read_number,
    slow_from,
    stops_on_zero,
    summarize,
    unless_stopped,
)

from pydags import Pipeline, Stage, StageStatus
from pydags.errors import PipelineError
from pydags.executors import batch


def _files(folder, count):
    folder.mkdir(exist_ok=True)
    for i in range(count):
        (folder / f"{i:03d}.csv").write_text(str(i))
    return str(folder)


@pytest.mark.parametrize("count", [0, 1, 25])
def test_a_map_over_files_known_only_at_run_time(tmp_path, count):
    files = list_files(_files(tmp_path / "data", count))
    numbers = read_number.map(files, scale=2)
    summary = summarize(numbers)
    run = Pipeline("files", [summary]).start(num_cores=2, show=False)
    assert run.results["read_number"] == [2.0 * i for i in range(count)]
    assert run.results["summarize"] == {"count": count, "total": 2.0 * sum(range(count))}
    assert run.status["read_number"] is StageStatus.DONE
    item_rows = [r for r in run.records() if r["stage"] == "read_number"]
    assert sorted(r["item"] for r in item_rows) == list(range(count))
    assert all(r["status"] == "done" and r["end"] >= r["start"] > 0 for r in item_rows)


def test_class_stages_map_too_and_several_arguments_are_zipped():
    class Scale(Stage):
        def __init__(self, values, factors, *, offset):
            super().__init__(values, factors, offset=offset)

        def run(self, value, factor, offset):
            return value * factor + offset

    scaled = Scale.map([1, 2, 3], (10, 20, 30), offset=1)
    run = Pipeline("zip", [scaled]).start(num_cores=1, show=False)
    assert run.results["Scale"] == [11, 41, 91]


def test_arguments_of_different_lengths_are_an_error_naming_both():
    with pytest.raises(ValueError, match="argument 0 has 2 items, argument 1 has 3 items"):
        pause_then_double.map([1, 2], [1, 2, 3])
    with pytest.raises(TypeError, match="needs a positional argument to map over"):
        pause_then_double.map(x=[1, 2])
    with pytest.raises(TypeError, match="mapped argument 0 is a str"):
        pause_then_double.map("abc")
    with pytest.raises(TypeError, match=r"mapped argument 0 is a dict.*list\(d.items\(\)\)"):
        pause_then_double.map({"a": 1})
    import pandas
    with pytest.raises(TypeError, match=r"is a DataFrame; map over its rows with"):
        pause_then_double.map(pandas.DataFrame({"a": [1, 2]}))


def test_lengths_known_at_run_time_are_checked(tmp_path):
    files = list_files(_files(tmp_path / "data", 3))
    paired = read_number.map(files, [1, 2])
    run = Pipeline("lengths", [paired]).start(num_cores=2, show=False, raise_on_error=False)
    assert run.status["read_number"] is StageStatus.FAILED
    assert run.errors["read_number"] == ("stage 'read_number': mapped arguments have different "
                                         "lengths: argument 0 has 3 items, argument 1 has 2 items")


def test_a_map_of_a_map_goes_item_by_item():
    first = pause_then_double.map(list(range(6)), seconds=0.3)
    second = pause_then_double.map(first).named("again")
    run = Pipeline("chain", [second]).start(num_cores=2, show=False)
    assert run.results["again"] == [4 * i for i in range(6)]
    rows = run.records()
    first_ends = [r["end"] for r in rows if r["stage"] == "pause_then_double"]
    second_start = next(r["start"] for r in rows if r["stage"] == "again" and r["item"] == 0)
    assert second_start < max(first_ends)


def test_a_failing_item_is_retried_alone_then_fails_the_map_naming_it(tmp_path):
    stop, calls = tmp_path / "stop", tmp_path / "calls"
    stop.touch()
    calls.mkdir()
    tens = unless_stopped.map(list(range(8)), stop_file=str(stop), calls=str(calls))
    tens.options(retries=2)
    after = summarize(tens)
    pipeline = Pipeline("items", [after])
    with pytest.raises(PipelineError) as raised:
        pipeline.start(num_cores=2, show=False)
    run = raised.value.run
    assert run.status == {"unless_stopped": StageStatus.FAILED,
                          "summarize": StageStatus.SKIPPED}
    error = run.errors["unless_stopped"]
    assert "1 of 8 items of stage 'unless_stopped' failed: item 3 (3)" in error
    assert "ValueError: item 3 is broken" in error and "after 3 attempts" in error
    called = sorted(name.split("-")[0] for name in os.listdir(calls))
    assert called.count("3") == 3 and all(called.count(str(i)) == 1 for i in (0, 1, 2, 4))
    rows = [r for r in run.records() if r["item"] == 3]
    assert [r["status"] for r in sorted(rows, key=lambda r: r["attempt"])] == ["failed"] * 3
    done = [i for i, s in enumerate(run.items["unless_stopped"].statuses())
            if s is StageStatus.DONE]
    assert done == [0, 1, 2, 4, 5, 6, 7]

    stop.unlink()
    for name in os.listdir(calls):
        os.unlink(calls / name)
    again = pipeline.start(num_cores=2, show=False, resume=True)
    assert [name.split("-")[0] for name in os.listdir(calls)] == ["3"]
    assert again.results["unless_stopped"] == [10 * i for i in range(8)]
    assert again.results["summarize"] == {"count": 8, "total": 280}


def test_cache_reruns_only_new_and_changed_items(tmp_path):
    from pydags.store import DiskStore

    calls = tmp_path / "calls"
    calls.mkdir()

    def pipeline(values):
        tens = unless_stopped.map(values, stop_file=str(tmp_path / "no-stop"), calls=str(calls))
        return Pipeline("cached-items", [tens], store=DiskStore(tmp_path / "store"))

    first = pipeline([0, 1, 2]).start(num_cores=2, show=False, cache=True)
    assert first.results["unless_stopped"] == [0, 10, 20]
    for name in os.listdir(calls):
        os.unlink(calls / name)
    second = pipeline([0, 1, 2, 5]).start(num_cores=2, show=False, cache=True)
    assert second.results["unless_stopped"] == [0, 10, 20, 50]
    assert [name.split("-")[0] for name in os.listdir(calls)] == ["5"]
    statuses = second.items["unless_stopped"].statuses()
    assert statuses == [StageStatus.CACHED] * 3 + [StageStatus.DONE]


def test_events_carry_the_item_and_batches_keep_every_item(tmp_path):
    seen = []
    doubled = pause_then_double.map(range(2000))
    run = Pipeline("events", [doubled]).prepare(num_cores=2)
    run.subscribe(lambda event: seen.append(event), items=True)
    run.start()
    assert run.results["pause_then_double"] == [2 * i for i in range(2000)]
    done = sorted(e.item for e in seen if e.item is not None and e.status is StageStatus.DONE)
    assert done == list(range(2000))
    assert [e.status for e in seen if e.item is None] == [
        StageStatus.QUEUED, StageStatus.RUNNING, StageStatus.DONE]
    batches = {e.time for e in seen if e.item is not None and e.status is StageStatus.RUNNING}
    assert len(batches) < 200  # small items go out together, each batch starting at once
    assert run.items["pause_then_double"].counts() == {StageStatus.DONE: 2000}


def test_short_items_are_timed_in_runs():
    run = Pipeline("runs", [slow_from.map(range(300), first_slow=300)]).start(
        num_cores=2, show=False)
    assert run.results["slow_from"] == list(range(300))
    items = run.items["slow_from"]
    assert len(set(items.start)) < 100  # each run's items share its start and its end
    assert all(items.end[i] == items.end[i + 1] for i in range(299)
               if items.start[i] == items.start[i + 1])


@pytest.mark.parametrize("cores", [1, 2])
def test_an_item_raising_stopiteration_fails_alone_and_the_others_keep_their_places(cores):
    run = Pipeline("stops", [stops_on_zero.map([1, 0, 2, 3])]).start(
        num_cores=cores, show=False, raise_on_error=False)
    items = run.items["stops_on_zero"]
    assert items.statuses() == [StageStatus.DONE, StageStatus.FAILED, StageStatus.DONE,
                                StageStatus.DONE]
    assert items.values[0] == 1 and items.values[2:] == [2, 3]
    assert "StopIteration" in items.errors[1].message


def test_items_after_a_slow_run_are_timed_alone(monkeypatch):
    monkeypatch.setattr(batch, "RUN", 8)
    run = Pipeline("runs", [slow_from.map(range(120), first_slow=100)]).start(show=False)
    assert run.results["slow_from"] == list(range(120))
    items = run.items["slow_from"]
    assert len(set(items.start[:100])) < 40
    alone = range(100 + batch.RUN, 120)  # one run at most had short items and slow ones
    assert len({items.start[i] for i in alone}) == len(alone)
    assert all(items.end[i] - items.start[i] >= 0.02 for i in alone)


def test_a_timeout_stops_one_item_and_a_crash_blames_one_item(no_orphans):
    slow = pause_then_double.map([1, 2, 3], [0, 120, 0]).options(timeout=1)
    run = Pipeline("timeout", [slow]).start(num_cores=2, show=False, raise_on_error=False)
    assert [s.value for s in run.items["pause_then_double"].statuses()] == [
        "done", "failed", "done"]
    assert "item 1 ((2, 120))" in run.errors["pause_then_double"]
    assert "timed out after 1 s" in run.errors["pause_then_double"]

    crashing = crashes_on.map(range(400), bad=300)
    run = Pipeline("crash", [crashing]).start(num_cores=2, show=False, raise_on_error=False)
    statuses = run.items["crashes_on"].statuses()
    assert statuses.count(StageStatus.FAILED) == 1 and statuses[300] is StageStatus.FAILED
    assert run.errors["crashes_on"].startswith(
        "1 of 400 items of stage 'crashes_on' failed: item 300 (300); first error: worker died "
        "(killed by signal SIGKILL)")
    assert run.results == {}


def test_cancel_during_a_map_leaves_items_cancelled_or_done(tmp_path):
    release = tmp_path / "release"
    started = threading.Event()
    waiting = held.map(list(range(6)), release=str(release))
    after = summarize(waiting)
    run = Pipeline("cancel", [after]).prepare(num_cores=2)
    run.subscribe(lambda e: e.status is StageStatus.RUNNING and e.item and started.set(),
                  items=True)
    run.start(block=False)
    assert started.wait(120), "no item started"
    run.cancel()
    run.wait(timeout=120)
    statuses = set(run.items["held"].statuses())
    assert statuses <= {StageStatus.CANCELLED, StageStatus.DONE}
    assert StageStatus.CANCELLED in statuses
    assert run.status["held"] is StageStatus.CANCELLED
    assert run.status["summarize"] is StageStatus.CANCELLED
    assert_no_orphans()


def test_fail_fast_stops_a_map_at_its_first_failed_item(tmp_path):
    items = [-1] + [1] * 20  # item 0 fails at once; the others wait for a file never made
    waiting = held.map(items, release=str(tmp_path / "never")).options(timeout=300)
    run = Pipeline("fail-fast", [summarize(waiting)]).start(
        num_cores=2, show=False, raise_on_error=False, fail_fast=True)
    assert run.status == {"held": StageStatus.FAILED, "summarize": StageStatus.SKIPPED}
    statuses = run.items["held"].statuses()
    assert statuses[0] is StageStatus.FAILED
    assert set(statuses[1:]) == {StageStatus.CANCELLED}
    assert "item 0 (-1)" in run.errors["held"]
    assert_no_orphans()


def test_resume_of_a_map_over_a_map_reruns_only_the_failed_items(tmp_path):
    stop, calls = tmp_path / "stop", tmp_path / "calls"
    stop.touch()
    calls.mkdir()
    doubled = pause_then_double.map([0, 1, 1.5, 2])  # 0, 2, 3.0, 4: item 2 gives 3, which fails
    tens = unless_stopped.map(doubled, stop_file=str(stop), calls=str(calls))
    pipeline = Pipeline("linked-resume", [summarize(tens)])
    first = pipeline.start(num_cores=2, show=False, raise_on_error=False)
    assert first.status == {"pause_then_double": StageStatus.DONE,
                            "unless_stopped": StageStatus.FAILED,
                            "summarize": StageStatus.SKIPPED}
    assert "item 2 (3.0)" in first.errors["unless_stopped"]
    stop.unlink()
    for name in os.listdir(calls):
        os.unlink(calls / name)
    again = pipeline.start(num_cores=2, show=False, resume=True)
    assert again.status["pause_then_double"] is StageStatus.CACHED  # known whole
    assert [name.split("-")[0] for name in os.listdir(calls)] == ["3.0"]
    assert again.results["summarize"] == {"count": 4, "total": 90.0}


@pytest.mark.parametrize("cores", [1, 2])
def test_async_items_are_awaited_and_their_output_kept(cores):
    from workload import fetch

    run = Pipeline("async-map", [fetch.map([1, 2, 3])]).start(num_cores=cores, show=False)
    assert run.results["fetch"] == [2, 4, 6]
    assert sorted(run.outputs["fetch"].splitlines()) == ["fetched 1", "fetched 2", "fetched 3"]

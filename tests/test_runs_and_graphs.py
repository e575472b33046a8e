"""The run handle (prepare, subscribe, start) and a graph that is always the one built."""

from __future__ import annotations

import pytest
from workload import clean, load, total

from pydags import StageStatus
from pydags.errors import CycleError
from pydags.pipeline import Pipeline


def listen(run):
    """Subscribe to every notification of ``run``; returns the list they land in."""
    heard = []
    run.subscribe(lambda event: heard.append((event.stage, event.status)),
                  on_start=lambda r: heard.append(("start", r is run)),
                  on_finish=lambda r: heard.append(("finish", r.done() is False)))
    return heard


def expected_order(heard, stages):
    assert heard[0] == ("start", True) and heard[-1] == ("finish", True), heard
    events = heard[1:-1]
    assert all(name in stages for name, _ in events)
    for name in stages:
        mine = [status for n, status in events if n == name]
        assert mine == [StageStatus.QUEUED, StageStatus.RUNNING, StageStatus.DONE], (name, mine)


@pytest.mark.parametrize(("cores", "block"), [(1, True), (2, True), (2, False)])
def test_a_prepared_run_tells_its_subscribers_start_events_and_finish_in_order(
        cores, block, no_orphans):
    pipeline = Pipeline().add_stages(total(clean(load())))
    run = pipeline.prepare(num_cores=cores)
    assert repr(run).startswith("<Run of 'pipeline', not started")
    heard = listen(run)
    assert run.start(block=block).wait(timeout=120) is run
    expected_order(heard, ["load", "clean", "total"])
    assert run.results["total"] == 6 and pipeline.last_run is run
    with pytest.raises(RuntimeError, match="started already"):
        run.start()


def test_a_prepared_run_must_be_started_before_waiting():
    run = Pipeline().add_stages(load()).prepare()
    with pytest.raises(RuntimeError, match=r"call run\.start"):
        run.wait(timeout=1)


def test_after_and_named_on_added_stages_are_honoured():
    first, second = load(), clean([2, 1]).named("second")
    pipeline = Pipeline().add_stages([first, second])
    assert pipeline.graph.number_of_edges() == 0
    second.after(first)  # after add_stages
    first.named("source")
    run = pipeline.start(num_cores=1)
    records = run.stage_records
    assert set(run.status) == {"source", "second"}
    assert records["source"].end <= records["second"].start
    assert list(pipeline.graph.edges) == [("source", "second")]
    assert pipeline["source"] is first and "load" not in pipeline


def test_a_dependency_added_later_joins_the_pipeline():
    extra = total([1, 2]).named("extra")
    last = clean([3, 1])
    pipeline = Pipeline().add_stages(last)
    last.after(extra)
    assert len(pipeline) == 2 and pipeline.start().results["extra"] == 3


def test_a_cycle_made_after_add_stages_is_found_before_anything_runs():
    a, b = load(), clean([1])
    pipeline = Pipeline().add_stages(b.after(a))
    a.after(b)
    ran = []
    with pytest.raises(CycleError) as info:
        pipeline.start(on_event=ran.append)
    assert set(info.value.cycle) == {"load", "clean"} and not ran


def test_a_rejected_add_stages_leaves_the_pipeline_as_it_was():
    pipeline = Pipeline("p").add_stages(clean(load()))
    before = (len(pipeline), repr(pipeline))
    x, y = total([1]).named("x"), total([2]).named("y")
    x.after(y)
    y.after(x)
    with pytest.raises(CycleError):
        pipeline.add_stages(x)
    with pytest.raises(ValueError, match="two different stages are named 'load'"):
        pipeline.add_stages(total(load()))
    with pytest.raises(TypeError, match="item 1"):
        pipeline.add_stages(total([5]).named("fine"), "not a stage")
    assert (len(pipeline), repr(pipeline)) == before
    assert pipeline.start().status == {"load": StageStatus.DONE, "clean": StageStatus.DONE}


def test_building_stays_linear():
    # Hang catchers only: tests/benchmarks/bench_build.py prints the real times.
    pipeline = Pipeline()
    stages = []
    for i in range(3000):
        stages.append(load().named(f"n{i}").after(*stages[-2:]))
        pipeline.add_stages(stages[-1])  # one call at a time, as 0.1 code does
    assert len(pipeline) == 3000 and pipeline.graph.number_of_edges() == 2 * 3000 - 3
    wide = total(list(stages))  # one stage with 3,000 upstream arguments
    assert len(Pipeline().add_stages(wide)) == 3001

"""Pipelines on a Dask distributed cluster: a LocalCluster and a real scheduler with workers."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import types

import pytest

distributed = pytest.importorskip("distributed")  # the test extra installs it

from conftest import free_port  # noqa: E402
from workload import (  # noqa: E402
    big_array,
    clean,
    fails_first,
    fails_for,
    fine,
    hard_exit,
    list_files,
    load,
    pause_then_double,
    read_number,
    summarize,
    total,
    unless_stopped,
    wait_for_file,
)

from pydags import StageStatus  # noqa: E402
from pydags.examples import tutorial  # noqa: E402
from pydags.executors import dask as dask_executor  # noqa: E402
from pydags.pipeline import Pipeline  # noqa: E402
from pydags.protocol import ErrorKind  # noqa: E402
from pydags.stage import stage  # noqa: E402


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=":0")
    with distributed.Client(cluster) as client:
        yield client
    cluster.close()


@stage
def broken(rows):
    raise ValueError("broken on the cluster")


def test_tutorial_on_two_workers_overlaps_and_respects_dependencies(client):
    pipeline = tutorial.build()
    events = []
    run = pipeline.start(executor=client, on_event=events.append)
    assert run.ok
    records = run.stage_records
    assert len({r.worker for r in records.values()}) == 2
    assert all(r.worker.startswith("tcp://") for r in records.values())
    one, two = records["stage_1"], records["stage_2"]
    assert one.start < two.end and two.start < one.end
    for name in pipeline.graph:
        for dep in pipeline.graph.predecessors(name):
            assert records[dep].end <= records[name].start, (dep, name)
    assert {e.status for e in events} >= {StageStatus.QUEUED, StageStatus.RUNNING,
                                          StageStatus.DONE}
    assert run.outputs["stage_3"] == "Running stage 3\n"
    assert len(run.timeline().axes[0].get_yticks()) == 2


def test_results_flow_between_stages_on_the_cluster(client):
    raw = load()
    run = Pipeline().add_stages(total(clean(raw), offset=total(raw).named("raw_total"))).start(
        executor=client)
    assert run.results == {"load": [3, 1, 2], "clean": [1, 2, 3], "raw_total": 6,
                           "total": 12}


def test_a_failing_stage_skips_descendants_and_independent_branches_finish(client):
    raw = load()
    run = Pipeline().add_stages(total(broken(raw)), clean(raw)).start(executor=client,
                                                                       raise_on_error=False)
    assert run.status == {"load": StageStatus.DONE, "broken": StageStatus.FAILED,
                          "total": StageStatus.SKIPPED, "clean": StageStatus.DONE}
    assert "ValueError: broken on the cluster" in run.errors["broken"]
    assert run.results["clean"] == [1, 2, 3]


def test_retries_and_timeouts_on_the_cluster(client, tmp_path):
    @stage(timeout=0.5)
    def slow():
        time.sleep(3)

    events = []
    flaky = fails_first(str(tmp_path / "n")).options(retries=2)
    run = Pipeline().add_stages(flaky, slow()).start(
        executor=client, raise_on_error=False, on_event=events.append)
    assert run.results["fails_first"] == "ok"
    assert [e.attempt for e in events if e.status is StageStatus.RETRYING] == [1]
    assert run.status["slow"] is StageStatus.FAILED and "timed out" in run.errors["slow"]


def test_functions_defined_by_exec_in_main_run_on_the_cluster(client):
    module = types.ModuleType("__main__")
    exec("from pydags import stage\nbase = 5\n@stage\ndef five():\n    return base\n"
         "@stage\ndef square(x):\n    return (lambda v: v * v)(x)\n", module.__dict__)
    run = Pipeline().add_stages(module.square(module.five())).start(executor=client)
    assert run.results["square"] == 25


def test_num_cores_with_dask_and_bad_executors_are_clear_errors(client, monkeypatch):
    pipeline = Pipeline().add_stages(load())
    with pytest.raises(ValueError, match="num_cores cannot be combined"):
        pipeline.start(executor=client, num_cores=2)
    with pytest.raises(TypeError, match="scheduler address"):
        pipeline.start(executor=42)
    monkeypatch.setattr(dask_executor, "Client", None)
    with pytest.raises(ImportError, match=r"pydags\[dask\]"):
        pipeline.start(executor="tcp://127.0.0.1:1")


def test_a_stage_that_kills_its_dask_worker_fails_as_a_crash_and_the_rest_ends():
    import dask

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                     dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as client:
        run = Pipeline("crash", [hard_exit(), fine()]).start(executor=client,
                                                             raise_on_error=False)
    assert run.status == {"hard_exit": StageStatus.FAILED, "fine": StageStatus.DONE}
    error = run.stage_records["hard_exit"].error
    assert error.kind is ErrorKind.CRASH
    assert "Dask could not run stage 'hard_exit'" in error.message


def test_a_real_scheduler_and_two_workers_by_address():
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
         "--port", str(port), "--dashboard-address", ":0", "--no-show"],
        stderr=subprocess.DEVNULL)
    workers = [subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
         "--host", "127.0.0.1", "--no-dashboard"], stderr=subprocess.DEVNULL)
        for _ in range(2)]
    try:
        with distributed.Client(address, timeout=30) as probe:
            probe.wait_for_workers(2, timeout=30)
            known = set(probe.scheduler_info()["workers"])
        run = Pipeline().add_stages(total(clean(load()))).start(executor=address)
        assert run.results["total"] == 6
        assert {r.worker for r in run.stage_records.values()} <= known
    finally:
        for process in [*workers, scheduler]:
            process.terminate()
        for process in [*workers, scheduler]:
            process.wait(timeout=30)


def test_cancel_and_fail_fast_on_the_cluster(client, tmp_path):
    # Dask cannot stop a running task: the test releases its stages once they are cancelled.
    naps, long = tmp_path / "naps", tmp_path / "long"

    @stage
    def quick_fail():
        raise RuntimeError("stop everything")

    running = threading.Event()
    stages = [wait_for_file(str(naps)).named(f"nap{i}") for i in range(4)]
    handle = Pipeline().add_stages(stages).start(
        executor=client, block=False,
        on_event=lambda e: e.status is StageStatus.RUNNING and running.set())
    try:
        assert running.wait(120), "no stage started on the cluster"
        handle.cancel()
        handle.wait(timeout=60)
        assert set(handle.status.values()) == {StageStatus.CANCELLED}
        naps.write_text("go")
        run = Pipeline().add_stages(quick_fail(), wait_for_file(str(long)).named("long")
                                    ).start(executor=client, fail_fast=True,
                                            raise_on_error=False)
        assert run.status == {"quick_fail": StageStatus.FAILED,
                              "long": StageStatus.CANCELLED}
    finally:
        naps.write_text("go")
        long.write_text("go")


def test_each_attempt_on_the_cluster_has_its_own_record_and_error(client, tmp_path):
    @stage(retries=2)
    def always(rows):
        raise KeyError(f"attempt-specific {len(rows)}")

    flaky = fails_first(str(tmp_path / "n")).options(retries=1)
    run = Pipeline().add_stages(flaky, total(always(load()))).start(
        executor=client, raise_on_error=False)
    rows = [r for r in run.records() if r["stage"] == "fails_first"]
    assert [(r["attempt"], r["status"]) for r in rows] == [(1, "failed"), (2, "done")]
    assert all(r["start"] and r["end"] and r["start"] <= r["end"] for r in rows)
    assert "an early attempt fails" in rows[0]["error"] and rows[1]["error"] is None
    assert run.status["always"] is StageStatus.FAILED
    assert run.status["total"] is StageStatus.SKIPPED
    error = run.errors["always"]
    assert "failed after 3 attempts" in error
    assert error.count("KeyError: 'attempt-specific 3'") >= 3 and "None" not in error


def test_a_prepared_run_on_the_cluster_tells_start_events_and_finish(client):
    from test_runs_and_graphs import expected_order, listen

    run = Pipeline().add_stages(total(clean(load()))).prepare(executor=client)
    heard = listen(run)
    run.start()
    expected_order(heard, ["load", "clean", "total"])


def test_quick_stages_on_the_cluster_report_together_and_each_still_tells_its_start(client):
    # a stage ending within ``STARTED_AFTER`` reports its start with its end, and the ends
    # of stages close together travel in one event
    before = set(client.get_events())
    events = []
    names = [f"quick{i}" for i in range(200)]
    run = Pipeline().add_stages([fine().named(n) for n in names]).start(
        executor=client, on_event=events.append)
    for name in names:
        assert [e.status for e in events if e.stage == name] == [
            StageStatus.QUEUED, StageStatus.RUNNING, StageStatus.DONE], name
        record = run.stage_records[name]
        assert 0 < record.queued <= record.start <= record.end, record
        assert record.worker.startswith("tcp://"), record
    [topic] = [t for t in client.get_events() if t.startswith("pydags-") and t not in before]
    sent = client.get_events(topic)
    ended = [r["key"] for _, reports in sent for r in reports if r["kind"] == "ended"]
    assert len(ended) == len(set(ended)) == 200
    assert len(sent) < 100, f"{len(sent)} events for 200 quick stages"


def test_a_retried_upstream_stage_on_the_cluster_feeds_its_dependents_its_new_result(
        client, tmp_path):
    source = fails_first(str(tmp_path / "n"), [5, 4]).options(retries=1)
    events = []
    run = Pipeline().add_stages(total(clean(source))).start(
        executor=client, on_event=events.append)
    assert run.results["total"] == 9
    assert [e.status for e in events if e.stage == "total"][-1] is StageStatus.DONE


def test_mapped_stages_on_the_cluster_item_by_item_with_a_failing_item(client, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    for i in range(12):
        (folder / f"{i:02d}.csv").write_text(str(i))
    numbers = read_number.map(list_files(str(folder)), scale=2)
    doubled = pause_then_double.map(numbers)
    summary = summarize(doubled)
    with distributed.get_task_stream(client) as tasks:
        run = Pipeline("map-on-dask", [summary]).start(executor=client)
    names = {task["key"].split("-")[0] for task in tasks.data}
    assert {"take_items", "join_items"} <= names  # items' results went worker to worker
    assert run.results["pause_then_double"] == [4.0 * i for i in range(12)]
    assert run.results["summarize"] == {"count": 12, "total": 4.0 * sum(range(12))}
    workers = {r["worker"] for r in run.records() if r["stage"] == "read_number"}
    assert workers <= set(client.nthreads()) and workers

    calls = tmp_path / "calls"
    calls.mkdir()
    (tmp_path / "stop").touch()
    tens = unless_stopped.map(range(6), stop_file=str(tmp_path / "stop"), calls=str(calls))
    run = Pipeline("map-fails-on-dask", [summarize(tens.options(retries=1))]).start(
        executor=client, raise_on_error=False)
    assert run.status == {"unless_stopped": StageStatus.FAILED,
                          "summarize": StageStatus.SKIPPED}
    assert "1 of 6 items of stage 'unless_stopped' failed: item 3 (3)" in run.errors[
        "unless_stopped"]
    assert sorted(n.split("-")[0] for n in os.listdir(calls)).count("3") == 2


def test_large_results_and_a_map_of_100000_items_on_the_cluster(client):
    # results over the size that rides with a task's report are fetched, not waited on
    squares = fails_for.map(range(100_000))
    run = Pipeline("big-on-dask", [total(squares)]).start(executor=client)
    assert run.results["total"] == sum(x * x for x in range(100_000))
    assert len(run.results["fails_for"]) == 100_000
    assert run.items["fails_for"].counts() == {StageStatus.DONE: 100_000}


@pytest.mark.parametrize(("fate", "says"), [
    ("exits", "sys.exit(4)"),
    ("lock", "item 300 of stage 'bad' returned a _thread.lock that cannot be sent back"),
])
def test_one_bad_item_fails_alone_on_the_cluster(client, fate, says):
    from workload import exits_for, lock_for

    function = exits_for if fate == "exits" else lock_for
    run = Pipeline("bad_item").add_stages(function.map(range(1000), bad=300).named("bad")).start(
        executor=client, raise_on_error=False, show=False)
    assert run.items["bad"].summary() == "1000 items: 999 done · 1 failed"
    assert run.items["bad"].statuses()[300] is StageStatus.FAILED
    assert says in run.errors["bad"]


def test_two_overlapping_runs_on_the_cluster_each_end_with_their_own_results(client, tmp_path):
    from workload import echo

    release = tmp_path / "release"
    flow = Pipeline("overlap").add_stages(echo(wait_for_file(str(release))))
    first = flow.start(executor=client, block=False, show=False, raise_on_error=False)
    deadline = time.time() + 60
    while first.status["wait_for_file"] is not StageStatus.RUNNING:
        assert time.time() < deadline, first.status
        time.sleep(0.01)
    second = flow.start(executor=client, block=False, show=False, raise_on_error=False)
    release.touch()
    for run in (first, second):
        run.wait()
        assert run.results == {"wait_for_file": True, "echo": True}, run.errors


def test_a_run_on_the_cluster_is_journaled_and_resumed_from_its_persisted_results(client):
    first = Pipeline("durable", [total(clean(load()))]).start(executor=client)
    again = Pipeline("durable", [total(clean(load()))]).start(executor=client,
                                                             resume=first.id)
    assert set(again.status.values()) == {StageStatus.CACHED}
    assert again.results["total"] == first.results["total"] == 6
    assert again.stage_records["total"].cache.startswith(f"resumed: it succeeded in run "
                                                         f"{first.id}")


def test_a_large_result_stays_on_the_cluster_until_it_is_read(client):
    array = big_array(1)  # 1 MiB: more than rides with a task's report
    run = Pipeline("left-on-dask", [array, total(array).named("sum")]).start(
        executor=client, show=False, persist=False)
    held = run.results.held("big_array")
    assert isinstance(held, dask_executor.OnCluster)  # not fetched by the run
    assert "float64" in run.results.preview("big_array")  # made on the worker
    assert run.results["sum"] == sum(range((1 << 20) // 8))
    assert len(run.results["big_array"]) == (1 << 20) // 8  # fetched now
    assert "fetched" in repr(held)

"""Maps, warm workers and shared memory under hostile input: nothing wrong, nothing lost."""

from __future__ import annotations

import pytest
from workload import (
    big_array,
    echo,
    exits_for,
    lock_for,
    size_of,
    starts_a_daemon,
    wait_for_file,
    where_am_i,
)

from pydags import StageStatus
from pydags.pipeline import Pipeline
from pydags.stage import Stage, stage

pytestmark = pytest.mark.usefixtures("no_orphans")


def run(*stages, **options):
    options.setdefault("num_cores", 2)
    return Pipeline("hardening").add_stages(*stages).start(raise_on_error=False, show=False,
                                                          **options)


@pytest.mark.parametrize("cores", [1, 2])
def test_a_map_over_a_generator_maps_its_items(cores):
    squares = echo.map(x * x for x in range(5))
    assert run(squares, num_cores=cores).results["echo"] == [0, 1, 4, 9, 16]


@pytest.mark.parametrize(("fate", "says", "cores"), [
    (exits_for, "sys.exit(4)", 1),
    (exits_for, "sys.exit(4)", 2),
    # in this process a result is never pickled: a lock is a fine result there
    (lock_for, "item 300 of stage 'bad' returned a _thread.lock that cannot be sent back", 2),
])
def test_one_bad_item_fails_alone_not_its_batch(fate, says, cores):
    result = run(fate.map(range(1000), bad=300).named("bad"), num_cores=cores)
    assert result.items["bad"].summary() == "1000 items: 999 done · 1 failed"
    assert result.items["bad"].statuses()[300] is StageStatus.FAILED
    assert "1 of 1000 items of stage 'bad' failed: item 300 (300)" in result.errors["bad"]
    assert says in result.errors["bad"]
    assert "BatchResult" not in result.errors["bad"]


def test_a_map_cached_whole_has_its_items(tmp_path):
    from pydags.store import DiskStore

    pipeline = Pipeline("cached_map", [echo.map(range(4)).named("item")],
                        store=DiskStore(tmp_path))
    pipeline.start(cache=True, show=False)
    again = pipeline.start(cache=True, show=False)
    assert again.status["item"] is StageStatus.CACHED
    assert again.items["item"].summary() == "4 items: 4 cached"
    assert again.results["item"] == [0, 1, 2, 3]


@pytest.mark.parametrize("name", ["\x1b[31mred", "nul\x00", "two\nlines"])
def test_a_stage_name_with_a_control_character_is_refused_naming_it(name):
    with pytest.raises(ValueError, match="holds control characters"):
        echo(1).named(name)

    class Odd(Stage):
        @property
        def name(self):
            return name

        def run(self):
            return 1

    with pytest.raises(ValueError, match="give it a name without them"):
        Pipeline("odd", [Odd()])


@pytest.mark.parametrize("cores", [1, 2])
def test_a_stage_renamed_while_its_run_goes_on_keeps_its_name_in_that_run(tmp_path, cores):
    release = tmp_path / "release"
    upstream = wait_for_file(str(release))
    pipeline = Pipeline("renamed", [echo(upstream)])
    run = pipeline.start(num_cores=cores, block=False, show=False, raise_on_error=False)
    upstream.named("renamed_during_run")
    release.touch()
    run.wait()
    assert run.status == {"wait_for_file": StageStatus.DONE, "echo": StageStatus.DONE}
    assert run.results["echo"] is True
    assert "renamed_during_run" in pipeline  # the next run uses the new name


def test_stage_on_a_method_is_refused_when_decorated_saying_what_to_do():
    with pytest.raises(TypeError, match=r"cannot decorate the method Model\.fit.*Stage subclass"):
        class Model:
            @stage
            def fit(self, data):
                return data

    @stage
    def plain(self_made):  # a function whose first parameter only looks alike
        return self_made

    assert plain(1).name == "plain"


def test_more_workers_than_cores_warns_once(monkeypatch):
    import os

    from pydags.executors import choice as module

    monkeypatch.setattr(module, "_WARNED", set())
    many = (os.cpu_count() or 1) + 2
    flow = Pipeline("many", [echo(i).named(f"e{i}") for i in range(many)])
    with pytest.warns(UserWarning, match=f"num_cores={many} starts {many} worker processes"):
        flow.start(num_cores=many, show=False)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert flow.start(num_cores=many, show=False).ok


def test_a_map_over_a_result_lost_with_its_worker_makes_it_again(tmp_path):
    import os
    import signal

    release = tmp_path / "release"
    big = big_array(2)
    sizes = size_of.map(range(4), model=big).after(wait_for_file(str(release)))
    run = Pipeline("lost_map", [sizes]).start(num_cores=2, block=False, show=False,
                                              raise_on_error=False)
    assert wait_until(lambda: run.status["big_array"] is StageStatus.DONE)
    held = run.results.held("big_array")
    assert held.worker is not None, "the array stays in the worker that made it"
    os.kill(held.worker.pid, signal.SIGKILL)
    held.worker.process.wait()
    release.touch()
    run.wait()
    assert run.status["size_of"] is StageStatus.DONE, run.errors
    assert run.results["size_of"] == [len(run.results["big_array"]) + i for i in range(4)]
    assert [a.number for a in run.stage_records["big_array"].attempts] == [1, 2]


def wait_until(condition, seconds=60.0):
    import time

    end = time.time() + seconds
    while not condition() and time.time() < end:
        time.sleep(0.01)
    return condition()


def test_warm_workers_run_in_the_drivers_current_folder_environment_and_path(
        tmp_path, monkeypatch):
    flow = Pipeline("context", [where_am_i(None), where_am_i(1).named("again")])
    assert flow.start(num_cores=2, show=False).ok  # the workers are warm now
    (tmp_path / "probe_for_context.py").write_text("VALUE = 7\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYDAGS_TEST_X", "set after the workers started")
    monkeypatch.syspath_prepend(str(tmp_path))
    flow = Pipeline("context", [where_am_i(None, module="probe_for_context"),
                                where_am_i(1, module="probe_for_context").named("again")])
    run = flow.start(num_cores=2, show=False)
    expected = (str(tmp_path), "set after the workers started", 7)
    assert run.results["where_am_i"] == expected
    assert run.results["again"] == expected
    assert len({a.worker for r in run.stage_records.values() for a in r.attempts}) == 2


@pytest.mark.parametrize("timeout", [None, 60])
def test_a_big_keyword_argument_of_a_map_goes_to_shared_memory_once(monkeypatch, timeout):
    import numpy

    from pydags.executors import buffers

    written = []
    write = buffers._write
    monkeypatch.setattr(buffers, "_write", lambda view: written.append(view.nbytes)
                        or write(view))
    model = numpy.ones(4 << 20, dtype=numpy.uint8)  # 4 MB
    sizes = size_of.map(range(40), model=model).options(timeout=timeout)
    run = Pipeline("shared_kwargs", [sizes]).start(num_cores=2, show=False)
    assert run.results["size_of"] == [i + (4 << 20) for i in range(40)]
    assert sum(written) == model.nbytes, written
    assert run.items["size_of"].summary() == "40 items: 40 done"


@pytest.mark.parametrize("how", ["shutdown", "timeout"])
def test_a_daemon_a_stage_starts_stops_with_its_worker(tmp_path, how):
    import psutil

    import pydags

    pid_file = tmp_path / "daemon.pid"
    if how == "shutdown":
        result = run(starts_a_daemon(str(pid_file)))
        assert psutil.pid_exists(result.results["starts_a_daemon"])  # its worker is warm
        pydags.shutdown()
    else:
        result = run(starts_a_daemon(str(pid_file), then_sleep=300).options(timeout=1))
        assert "timed out" in result.errors["starts_a_daemon"]
    pid = int(pid_file.read_text())

    def gone():
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    assert wait_until(gone), f"the daemon {pid} outlived its worker"


@pytest.mark.parametrize("cores", [1, 2])
def test_two_overlapping_runs_of_one_pipeline_each_end_with_their_own_results(tmp_path, cores):
    release = tmp_path / "release"
    flow = Pipeline("overlap", [echo(wait_for_file(str(release)))])
    first = flow.start(num_cores=cores, block=False, show=False, raise_on_error=False)
    assert wait_until(lambda: first.status["wait_for_file"] is StageStatus.RUNNING)
    second = flow.start(num_cores=cores, block=False, show=False, raise_on_error=False)
    release.touch()
    for run in (first, second):
        run.wait()
        assert run.status == {"wait_for_file": StageStatus.DONE, "echo": StageStatus.DONE}
        assert run.results["echo"] is True
    third = flow.start(num_cores=cores, show=False)  # keep_results=1: the older ones go
    assert third.results["echo"] is True
    with pytest.raises(RuntimeError, match="let go when a later run started"):
        first.results["echo"]

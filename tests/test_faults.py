"""Fault injection: crashes, timeouts, retries, cancel, Ctrl-C, bad results; no hangs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from conftest import assert_no_orphans
from workload import (
    calls_sys_exit,
    downstream,
    fails_first,
    fine,
    hard_exit,
    interrupts_itself,
    loud,
    raises_two_part,
    raises_unpicklable,
    segfault,
    sleepy,
)

from pydags import StageStatus
from pydags.pipeline import Pipeline
from pydags.stage import stage

pytestmark = pytest.mark.usefixtures("no_orphans")


def run(*stages, **options):
    options.setdefault("num_cores", 2)
    return Pipeline("faults").add_stages(*stages).start(raise_on_error=False, **options)


@pytest.mark.parametrize(("crash", "words"), [(segfault, "SIGSEGV"), (hard_exit, "exit code 7")])
def test_a_dying_worker_fails_only_its_stage(crash, words):
    result = run(downstream(crash()), fine(), sleepy(0.5).named("slow"))
    assert result.status == {crash.__name__: StageStatus.FAILED,
                             "downstream": StageStatus.SKIPPED, "fine": StageStatus.DONE,
                             "slow": StageStatus.DONE}
    assert "worker died" in result.errors[crash.__name__] and words in result.errors[crash.__name__]
    assert result.results == {"fine": "fine", "slow": 0.5}


def test_a_timeout_stops_the_stage_and_its_worker_and_others_go_on():
    start = time.time()
    result = run(downstream(sleepy(300).options(timeout=0.5)), fine())
    assert result.status["sleepy"] is StageStatus.FAILED
    assert "timed out after 0.5 s" in result.errors["sleepy"]
    assert result.status["downstream"] is StageStatus.SKIPPED and result.results["fine"] == "fine"
    assert time.time() - start < 120  # far less than the stage's 300 s: it was stopped


def test_a_timeout_with_one_core_runs_in_a_worker():
    result = run(sleepy(300).options(timeout=0.3), num_cores=1)
    assert result.status["sleepy"] is StageStatus.FAILED and "timed out" in result.errors["sleepy"]


def test_retries_rerun_a_failing_stage_and_report_each_attempt(tmp_path):
    flaky = fails_first(str(tmp_path / "attempts"), "third time lucky", attempts=3)
    events = []
    result = run(flaky.options(retries=2, retry_delay=0.05), on_event=events.append)
    assert result.results["fails_first"] == "third time lucky"
    assert [e.attempt for e in events if e.status is StageStatus.RETRYING] == [1, 2]
    assert [a.number for a in result.stage_records["fails_first"].attempts] == [1, 2, 3]


def test_the_final_error_keeps_every_attempt():
    @stage(retries=1)
    def always():
        raise KeyError("missing")

    result = run(always())
    assert "failed after 2 attempts" in result.errors["always"]
    assert result.errors["always"].count("KeyError") >= 2


def test_fail_fast_cancels_the_rest():
    @stage
    def quick_fail():
        time.sleep(0.2)
        raise ValueError("stop")

    start = time.time()
    result = run(quick_fail(), sleepy(300).named("long"),
                 downstream(sleepy(300).named("later")), fail_fast=True)
    assert result.status["quick_fail"] is StageStatus.FAILED
    assert result.status["long"] is StageStatus.CANCELLED
    assert result.status["later"] in (StageStatus.CANCELLED,)
    assert result.status["downstream"] is StageStatus.CANCELLED
    assert time.time() - start < 120  # far less than the stages' 300 s: they were stopped


def when(condition):
    """An ``on_event`` subscriber and a ``threading.Event`` set once ``condition(event)``."""
    reached = threading.Event()

    def watch(event):
        if condition(event):
            reached.set()

    return watch, reached


def test_cancel_a_non_blocking_run_stops_it_promptly():
    stages = [sleepy(300).named(f"s{i}") for i in range(6)]
    watch, fine_done = when(lambda e: e.stage == "fine" and e.status.finished)
    handle = Pipeline().add_stages(downstream(fine()), *stages).start(
        num_cores=2, block=False, on_event=watch)
    assert fine_done.wait(120), "the quick stages never finished"
    handle.cancel()
    handle.wait(timeout=60)  # cancelled stages are not failures: no PipelineError
    statuses = set(handle.status.values())
    assert StageStatus.RUNNING not in statuses and StageStatus.QUEUED not in statuses
    assert statuses <= {StageStatus.DONE, StageStatus.CANCELLED}
    assert StageStatus.CANCELLED in statuses  # 300 s stages cannot have finished
    assert handle.results.get("fine") == "fine"
    assert_no_orphans()


def test_ctrl_c_during_a_blocking_run_cleans_up_and_reraises():
    main = threading.main_thread().ident
    watch, fine_done = when(lambda e: e.stage == "fine" and e.status.finished)

    def interrupt():
        if fine_done.wait(120):
            signal.pthread_kill(main, signal.SIGINT)

    pipeline = Pipeline().add_stages(fine(), *[sleepy(300).named(f"s{i}") for i in range(4)])
    threading.Thread(target=interrupt, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        pipeline.start(num_cores=2, on_event=watch)
    last = pipeline.last_run
    assert last.status["fine"] is StageStatus.DONE and last.results["fine"] == "fine"
    assert all(s in (StageStatus.DONE, StageStatus.CANCELLED) for s in last.status.values())
    assert_no_orphans()


def test_unpicklable_exception_sys_exit_and_megabytes_of_output():
    result = run(raises_unpicklable(), calls_sys_exit(), loud())
    assert result.status["raises_unpicklable"] is StageStatus.FAILED
    assert "Unpicklable: carries a lock" in result.errors["raises_unpicklable"]
    assert result.status["calls_sys_exit"] is StageStatus.FAILED
    assert "sys.exit(3)" in result.stage_records["calls_sys_exit"].error.message
    assert result.results["loud"] == "done"
    output = result.outputs["loud"]
    assert len(output) < 1.1e6 and "earlier characters of output dropped" in output


def test_a_stage_that_starts_a_subprocess_leaves_nothing_behind_on_timeout():
    @stage(timeout=0.5)
    def spawner():
        import subprocess

        subprocess.Popen(["sleep", "60"])
        time.sleep(60)

    result = run(spawner())
    assert result.status["spawner"] is StageStatus.FAILED


def test_an_argument_that_cannot_reach_a_worker_fails_its_stage_clearly():
    result = run(downstream(threading.Lock()), fine())
    assert result.status["downstream"] is StageStatus.FAILED
    message = result.stage_records["downstream"].error.message
    assert "could not be sent to a worker" in message and "num_cores=1" in message
    assert result.results["fine"] == "fine"


def test_an_exception_that_cannot_be_rebuilt_keeps_its_type_message_and_traceback():
    result = run(raises_two_part(), fine())
    error = result.errors["raises_two_part"]
    assert "TwoPartError: parsing failed because the header is missing" in error
    assert "in raises_two_part" in error and "could not be loaded" not in error
    assert result.results["fine"] == "fine"


def test_a_keyboard_interrupt_raised_by_a_stage_in_a_worker_is_its_own_failure():
    result = run(interrupts_itself(), fine())
    assert result.status["interrupts_itself"] is StageStatus.FAILED
    error = result.errors["interrupts_itself"]
    assert "KeyboardInterrupt" in error and "signal" not in error
    assert result.results["fine"] == "fine"


TWICE = textwrap.dedent("""
    import atexit
    from pydags import Pipeline
    from workload import sleepy

    run = Pipeline("twice", [sleepy(300).named(f"s{i}") for i in range(4)]).prepare(num_cores=2)
    atexit.register(lambda: print("statuses", *sorted({s.value for s in run.status.values()}),
                                  flush=True))
    run.subscribe(lambda e: e.status.value == "running" and print("running", flush=True))
    run.start()
""")


@pytest.mark.parametrize("gap", [0.0, 0.005, 0.01, 0.02, 0.05])
def test_a_second_ctrl_c_during_the_cleanup_of_the_first_does_not_hang(no_orphans, gap):
    driver = subprocess.Popen([sys.executable, "-c", TWICE], stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert [driver.stdout.readline() for _ in range(2)] == ["running\n"] * 2
    driver.send_signal(signal.SIGINT)
    time.sleep(gap)  # the gap between two presses of Ctrl-C is the point of the test
    driver.send_signal(signal.SIGINT)
    try:
        out, _ = driver.communicate(timeout=120)
    finally:
        driver.kill()
    assert "statuses cancelled\n" in out, out

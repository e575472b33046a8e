"""Warm workers: reused across runs, stopped when idle or asked, always running the code on
disk, reporting what stages print as they print it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time

import psutil
import pytest
from conftest import assert_no_orphans
from workload import pid_and_modules, talk_then

import pydags
from pydags import StageStatus
from pydags.executors import buffers
from pydags.executors.pool import POOL
from pydags.pipeline import Pipeline

pytestmark = pytest.mark.usefixtures("no_orphans")


def test_later_runs_reuse_the_workers_and_their_imports():
    pipeline = Pipeline().add_stages([pid_and_modules().named(f"p{i}") for i in range(6)])
    first = pipeline.start(num_cores=2)
    pids = {pid for pid, _ in first.results.values()}
    assert len(pids) == 2 and set(POOL.idle) == pids
    second = pipeline.start(num_cores=2)
    assert {pid for pid, _ in second.results.values()} == pids
    assert all(had for _, had in second.results.values())  # imported in the first run
    folder = buffers.folder()
    pydags.shutdown()
    assert POOL.idle == []
    assert not os.path.exists(folder)  # unneeded: a driver killed now leaves nothing behind
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"


def test_a_worker_that_timed_out_is_never_reused():
    pipeline = Pipeline().add_stages(talk_then("sleep").options(timeout=0.5),
                                     pid_and_modules())
    run = pipeline.start(num_cores=2, raise_on_error=False)
    assert run.status["talk_then"] is StageStatus.FAILED
    killed = int(run.stage_records["talk_then"].worker.split("pid ")[1].rstrip(")"))
    assert killed not in POOL.idle and len(POOL.idle) == 2


def test_idle_workers_exit_after_the_idle_time(tmp_path):
    script = textwrap.dedent("""
        import time
        from pydags import Pipeline
        from pydags.executors.pool import POOL
        from workload import fine
        Pipeline("idle", [fine(), fine().named("again")]).start(num_cores=2)
        assert len(POOL.idle) == 2, POOL.idle
        deadline = time.time() + 60
        while POOL.idle and time.time() < deadline:
            time.sleep(0.1)
        print("idle workers left:", len(POOL.idle))
    """)
    env = dict(os.environ, PYDAGS_IDLE_SECONDS="0.5",
               PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert "idle workers left: 0" in done.stdout, done.stderr


def test_output_reaches_the_driver_while_the_stage_runs_and_survives_its_end():
    heard = threading.Event()
    run = Pipeline().add_stages(talk_then("sleep").options(timeout=60)).prepare(num_cores=2)
    run.subscribe(on_output=lambda stage, text: "before the end" in text and heard.set())
    run.start(block=False)
    try:
        assert heard.wait(120), "the printed line never arrived while the stage ran"
        assert run.status["talk_then"] is StageStatus.RUNNING
        assert run.outputs["talk_then"] == "before the end\n"
    finally:
        run.cancel()
        run.wait(timeout=60)
    assert run.outputs["talk_then"] == "before the end\n"


@pytest.mark.parametrize("fate", ["sleep", "crash"])
def test_a_stage_that_times_out_or_crashes_keeps_what_it_printed(fate):
    stage = talk_then(fate).options(timeout=3) if fate == "sleep" else talk_then(fate)
    run = Pipeline().add_stages(stage).start(num_cores=2, raise_on_error=False)
    assert run.status["talk_then"] is StageStatus.FAILED
    assert run.outputs["talk_then"] == "before the end\n"


def test_a_timeout_counts_from_when_the_stage_starts_not_from_a_slow_worker_start(tmp_path):
    (tmp_path / "slow_import.py").write_text(textwrap.dedent("""
        import time
        from pydags import stage
        time.sleep(2)  # a heavy import, as a worker meets it before the stage can start

        @stage(timeout=1)
        def quick():
            time.sleep(0.5)
            return "in time"
    """))
    sys.path.insert(0, str(tmp_path))
    try:
        import slow_import

        run = Pipeline().add_stages(slow_import.quick()).start(num_cores=2)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("slow_import", None)
        pydags.shutdown()  # its workers imported the module
    assert run.results["quick"] == "in time"
    assert run.durations["quick"] >= 0.5


def test_a_module_edited_between_runs_gives_the_new_result_in_process_and_in_workers(
        tmp_path):
    module = tmp_path / "edited_stages.py"
    source = "from pydags import stage\n\n@stage\ndef answer():\n    return {}\n"
    module.write_text(source.format(1))
    sys.path.insert(0, str(tmp_path))
    try:
        import edited_stages

        pipeline = Pipeline().add_stages(edited_stages.answer())
        assert pipeline.start(num_cores=2).results["answer"] == 1
        assert pipeline.start(num_cores=1).results["answer"] == 1
        time.sleep(0.01)  # a later modification time than the first version
        module.write_text(source.format(2000))
        assert pipeline.start(num_cores=2).results["answer"] == 2000
        assert pipeline.start(num_cores=1).results["answer"] == 2000
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("edited_stages", None)
    assert_no_orphans()


def test_a_module_edited_into_a_syntax_error_fails_its_stage_clearly(tmp_path):
    module = tmp_path / "broken_later.py"
    module.write_text("from pydags import stage\n\n@stage\ndef value():\n    return 1\n")
    sys.path.insert(0, str(tmp_path))
    try:
        import broken_later
        from workload import fine

        pipeline = Pipeline().add_stages(broken_later.value(), fine())
        assert pipeline.start(num_cores=2).results["value"] == 1
        time.sleep(0.01)
        module.write_text("from pydags import stage\n\n@stage\ndef value(:\n")
        run = pipeline.start(num_cores=2, raise_on_error=False)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("broken_later", None)
    assert run.status["value"] is StageStatus.FAILED and run.results["fine"] == "fine"
    assert "stage 'value' could not be prepared" in run.errors["value"]
    assert "SyntaxError" in run.errors["value"]

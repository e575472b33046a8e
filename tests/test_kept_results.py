"""Big results stay in the worker that made them until read, and are never silently lost."""

from __future__ import annotations

import gc
import os
import signal
import time

import numpy
import psutil
import pytest
from workload import (
    array_sum,
    big_array,
    big_bytes,
    bytes_info,
    crashes_once,
    echo,
    pass_along,
    pause_then_double,
    wait_for_file,
)

import pydags
from pydags import StageStatus
from pydags.errors import LostResult
from pydags.executors.kept import Kept
from pydags.pipeline import Pipeline

pytestmark = pytest.mark.usefixtures("no_orphans")

MB = 8  # megabytes: over the size a result is kept for
EXPECTED = float(numpy.arange(MB * (1 << 20) // 8).sum())


def worker_pid(run, name: str) -> int:
    return int(run.stage_records[name].worker.split("pid ")[1].rstrip(")"))


def test_results_read_like_a_dict_of_values():
    run = Pipeline().add_stages(big_array(MB)).start(num_cores=2)
    assert isinstance(run.results.held("big_array"), Kept)
    for results in (dict(run.results), {**run.results}, dict(run.results.items()),
                    run.results.copy()):
        assert float(results["big_array"].sum()) == EXPECTED
    assert [float(v.sum()) for v in run.results.values()] == [EXPECTED]
    assert float(run.results.get("big_array").sum()) == EXPECTED
    assert run.results.get("nothing") is None and list(run.results) == ["big_array"]


def wait_for(condition, what: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(0.01)


def test_a_stage_on_another_worker_gets_a_kept_result_from_its_busy_worker(tmp_path):
    data = big_array(MB)
    other = wait_for_file(str(tmp_path / "other")).named("other")
    busy = wait_for_file(str(tmp_path / "busy")).named("busy").after(data)
    total = array_sum(data).after(other)
    run = Pipeline().add_stages(busy, total).start(num_cores=2, block=False)
    wait_for(lambda: run.status["busy"] is StageStatus.RUNNING, "'busy' to run")
    (tmp_path / "other").touch()  # 'array_sum' goes to the free worker; the holder is busy
    wait_for(lambda: run.status["array_sum"].finished, "'array_sum' to end")
    (tmp_path / "busy").touch()
    run.wait(120)
    records = run.stage_records
    assert records["busy"].worker == records["big_array"].worker != records["array_sum"].worker
    assert run.results["array_sum"] == (EXPECTED, False)
    assert float(run.results["big_array"].sum()) == EXPECTED


def test_a_crash_loses_a_kept_result_and_its_stage_runs_again(tmp_path):
    data = big_array(MB)
    total = crashes_once(data, str(tmp_path / "crashed")).options(retries=1)
    run = Pipeline().add_stages(total).start(num_cores=2)
    assert run.results["crashes_once"] == EXPECTED
    assert run.stage_records["crashes_once"].attempts[0].error.startswith("worker died")
    # The result it took went with the worker: its stage ran a second time.
    assert [a.status for a in run.stage_records["big_array"].attempts] == [StageStatus.DONE] * 2
    assert run.status == {"big_array": StageStatus.DONE, "crashes_once": StageStatus.DONE}


def test_a_timeout_stops_the_worker_but_the_result_it_kept_is_fetched_first():
    data = big_array(MB)
    run = Pipeline().add_stages(pause_then_double(data, seconds=300).options(timeout=1)).start(
        num_cores=2, raise_on_error=False)
    assert run.status["pause_then_double"] is StageStatus.FAILED
    assert run.stage_records["big_array"].worker == run.stage_records["pause_then_double"].worker
    assert float(run.results["big_array"].sum()) == EXPECTED


def test_reading_a_result_whose_worker_was_killed_says_so_and_resume_makes_it_again():
    pipeline = Pipeline("p").add_stages(big_array(MB), echo(7).named("small"))
    run = pipeline.start(num_cores=2)
    os.kill(worker_pid(run, "big_array"), signal.SIGKILL)
    with pytest.raises(LostResult, match=r"stage 'big_array' was lost: worker-\d \(pid \d+\), "
                                         r"which kept it, died.*resume=True"):
        run.results["big_array"]
    assert run.results["small"] == 7  # not kept: small results come back at once
    again = pipeline.start(num_cores=2, resume=True)
    assert again.status == {"big_array": StageStatus.DONE, "small": StageStatus.CACHED}
    assert float(again.results["big_array"].sum()) == EXPECTED


def test_stopping_the_workers_fetches_what_they_keep_first():
    run = Pipeline().add_stages(pass_along(big_array(MB))).start(num_cores=2)
    pid = worker_pid(run, "pass_along")
    pydags.shutdown()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"
    assert float(run.results["pass_along"].sum()) == EXPECTED


def test_a_worker_lets_a_result_go_with_the_run_that_held_it():
    pipeline = Pipeline().add_stages(big_array(256))
    run = pipeline.start(num_cores=2)
    worker = psutil.Process(worker_pid(run, "big_array"))
    assert worker.memory_info().rss > 256 << 20
    del run
    pipeline.runs.clear()
    gc.collect()
    deadline = time.monotonic() + 60
    while worker.memory_info().rss > 128 << 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert worker.memory_info().rss < 128 << 20


def test_large_bytes_stay_in_their_worker_too_and_arrive_as_bytes():
    run = Pipeline().add_stages(bytes_info(big_bytes(MB))).start(num_cores=2)
    assert run.results["bytes_info"] == ("bytes", MB << 20, b"\x01\x01")
    assert isinstance(run.results.held("big_bytes"), Kept)
    value = run.results["big_bytes"]
    assert type(value) is bytes and len(value) == MB << 20 and value[:1] == b"\x01"
    assert "bytes of 8,388,608 bytes: b&#x27;\\x01" in run.results.preview("big_bytes")

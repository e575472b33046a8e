"""Short stages queue on their worker, and stages in a line run on one worker, each right
after the one before, with no round trip to the driver between them; failures, crashes and
timeouts keep their meaning, and nothing waits behind a long stage."""

from __future__ import annotations

import pytest
from workload import echo, sleepy, work

from pydags import Pipeline, StageStatus
from pydags.core import CHAIN

pytestmark = pytest.mark.usefixtures("no_orphans")


def line(fates: list[str], **options) -> Pipeline:
    stages = [work(fates[0]).named("s0")]
    for i, fate in enumerate(fates[1:], 1):
        stages.append(work(fate, stages[-1]).named(f"s{i}").options(**options))
    return Pipeline("line", stages)


def test_a_line_of_stages_runs_in_order_on_one_worker_and_gives_every_result():
    length = 2 * CHAIN + 5  # more than one stretch handed out at once
    run = line(["ok"] * length).start(num_cores=2, show=False)
    assert [run.results[f"s{i}"] for i in range(length)] == list(range(1, length + 1))
    records = run.stage_records
    assert all(records[f"s{i}"].status is StageStatus.DONE for i in range(length))
    for i in range(1, CHAIN + 1):  # the stretch behind s0 ran where s0 did, in order
        assert records[f"s{i}"].worker == records["s0"].worker
        assert records[f"s{i}"].start >= records[f"s{i - 1}"].end


def test_a_failure_in_a_line_skips_the_rest_and_the_worker_goes_on():
    run = line(["ok"] * 4 + ["fail"] + ["ok"] * 5).start(num_cores=2, show=False,
                                                           raise_on_error=False)
    status = run.status
    assert [status[f"s{i}"] for i in range(4)] == [StageStatus.DONE] * 4
    assert status["s4"] is StageStatus.FAILED
    assert "planned failure" in run.errors["s4"]
    assert [status[f"s{i}"] for i in range(5, 10)] == [StageStatus.SKIPPED] * 5
    again = line(["ok"] * 3).start(num_cores=2, show=False)  # the same warm workers serve
    assert again.results["s2"] == 3


def test_a_retried_stage_in_a_line_takes_the_rest_with_it(tmp_path):
    flag = tmp_path / "failed-once"
    fates = ["ok", "ok", f"fail-once:{flag}", "ok", "ok"]
    run = line(fates, retries=1).start(num_cores=2, show=False)
    assert run.results["s4"] == 5
    records = run.stage_records
    assert len(records["s2"].attempts) == 2
    assert all(len(records[f"s{i}"].attempts) == 1 for i in (3, 4))  # withdrawn, not run


def test_a_crash_in_a_line_is_blamed_on_its_stage_and_the_rest_is_skipped():
    run = line(["ok"] * 3 + ["crash"] + ["ok"] * 3).start(num_cores=2, show=False,
                                                          raise_on_error=False)
    status = run.status
    assert [status[f"s{i}"] for i in range(3)] == [StageStatus.DONE] * 3
    assert status["s3"] is StageStatus.FAILED and "worker died" in run.errors["s3"]
    assert [status[f"s{i}"] for i in range(4, 7)] == [StageStatus.SKIPPED] * 3


def test_a_timeout_in_a_line_stops_its_stage_only():
    first = work("ok").named("first")
    slow = sleepy(30).named("slow").after(first).options(timeout=1)
    last = work("ok", slow).named("last")
    run = Pipeline("timeout-line", [first, slow, last]).start(num_cores=2, show=False,
                                                               raise_on_error=False)
    assert run.status["first"] is StageStatus.DONE
    assert run.status["slow"] is StageStatus.FAILED and "timed out" in run.errors["slow"]
    assert run.status["last"] is StageStatus.SKIPPED


def test_a_map_whose_batches_and_results_outgrow_a_pipe_ends():
    # Batches queue on busy workers, and each way a message is larger than a pipe holds: the
    # driver writes only what a pipe takes, so neither side waits on the other for ever.
    items = [str(i) * 50 for i in range(200_000)]  # batches of megabytes: more than a pipe
    run = Pipeline("wide-map", [echo.map(items)]).start(num_cores=2, show=False)
    assert run.results["echo"] == items


def test_short_stages_never_wait_behind_a_long_one():
    long = sleepy(3).named("long")
    short = [work("ok").named(f"short{i}") for i in range(200)]
    run = Pipeline("mixed", [long, *short]).start(num_cores=2, show=False)
    records = run.stage_records
    assert all(records[s.name].end < records["long"].end for s in short)
    assert {records[s.name].worker for s in short} != {records["long"].worker}

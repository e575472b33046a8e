"""The scheduling core alone, step by step, as dask's ``test_finish_task`` tests its state:
no process, no thread, no clock — news in, decisions out."""

from __future__ import annotations

from array import array
from types import SimpleNamespace

from pydags.core import Core
from pydags.decisions import Expand, Hand, ItemStatus, Status, Withdraw
from pydags.executors.batch import BatchResult
from pydags.plan import Plan
from pydags.protocol import ErrorKind, Outcome, StageError, Started
from pydags.status import StageStatus as S

T = 1000.0  # the time the news arrives at, as the loop would tell it


def plan(edges: dict[str, set[str]], *, priority: dict[str, float] | None = None,
         mapped: dict[str, list[str | None]] | None = None, inputs: bool = True,
         retries: int = 0, timeout: float | None = None) -> Plan:
    """A plan over stand-in stages (the core reads only their settings)."""
    stages = {name: SimpleNamespace(name=name, retries=retries, retry_delay=5.0,
                                    timeout=timeout) for name in edges}
    return Plan(stages, edges, priority or {}, {n: set(d) if inputs else set()
                                                for n, d in edges.items()}, mapped or {})


def core(edges: dict[str, set[str]], *, capacity: int = 2, pipelines: bool = False,
         fail_fast: bool = False, **given) -> Core:
    made = Core(plan(edges, **given), capacity=capacity, parallelism=capacity,
                pipelines=pipelines, fail_fast=fail_fast)
    made.begin(set())
    made.take()
    return made


def handed(decisions) -> list[str]:
    return [d.key for d in decisions if isinstance(d, Hand)]


def statuses(decisions) -> list[tuple[str, S]]:
    return [(d.stage, d.status) for d in decisions if isinstance(d, Status)]


def ok(key: str, attempt: int = 1, value=None) -> Outcome:
    return Outcome(key, attempt, True, value=value, worker="w1", start=T, end=T)


def failed(key: str, kind: ErrorKind = ErrorKind.EXCEPTION, attempt: int = 1) -> Outcome:
    return Outcome(key, attempt, False, error=StageError(kind, f"{key} broke"), worker="w1",
                   start=T, end=T)


def batch(count: int, seconds_each: float, errors: dict | None = None) -> BatchResult:
    starts = array("d", [T + i * seconds_each for i in range(count)])
    return BatchResult([1] * count, errors or {}, starts, T + count * seconds_each)


def test_the_ready_stage_with_the_longest_work_below_it_goes_first():
    # a -> a2 -> a3 (a long chain) beside b and c: with room for one, a goes first
    edges = {"a": set(), "a2": {"a"}, "a3": {"a2"}, "b": set(), "c": set()}
    state = core(edges, capacity=1, priority={"a": 3, "a2": 2.5, "a3": 1, "b": 1, "c": 2})
    state.hand_out()
    assert handed(state.take()) == ["a"]
    state.tell(ok("a"), T)
    state.hand_out()
    decisions = state.take()
    assert statuses(decisions)[:2] == [("a", S.DONE), ("a2", S.QUEUED)]
    assert handed(decisions) == ["a2"]  # before c (2) and b (1)
    state.tell(ok("a2"), T)
    state.hand_out()
    assert handed(state.take()) == ["c"]  # c (2) before a3 (1) and b (1)


def test_a_stage_goes_out_when_its_last_dependency_succeeds_not_before():
    state = core({"a": set(), "b": set(), "c": {"a", "b"}})
    state.hand_out()
    assert sorted(handed(state.take())) == ["a", "b"]
    state.tell(ok("a"), T)
    state.hand_out()
    assert handed(state.take()) == []
    state.tell(ok("b"), T)
    state.hand_out()
    assert handed(state.take()) == ["c"]
    state.tell(ok("c"), T)
    assert state.left == 0


def test_a_retried_upstream_withdraws_and_hands_out_again_the_stages_behind_it():
    state = core({"a": set(), "b": {"a"}, "c": {"b"}}, pipelines=True, retries=1,
                 capacity=3)
    state.hand_out()
    decisions = state.take()
    assert handed(decisions) == ["a", "b", "c"]  # each behind the one it takes
    state.tell(Started("b", 1, "w2", T), T)  # a pipelining worker may start it waiting
    state.tell(failed("a"), T)
    decisions = state.take()
    assert Withdraw(frozenset({"b"})) in decisions and Withdraw(frozenset({"c"})) in decisions
    assert ("a", S.RETRYING) in statuses(decisions)
    assert {("b", S.PENDING), ("c", S.PENDING)} <= set(statuses(decisions))
    state.hand_out()
    assert handed(state.take()) == []  # the retry waits for its delay
    state.due(T + 4.9)
    assert state.take() == []
    state.due(T + 5.0)
    state.hand_out()
    decisions = state.take()
    assert [(d.key, d.attempt) for d in decisions if isinstance(d, Hand)] == [
        ("a", 2), ("b", 1), ("c", 1)]
    assert not state.tell(ok("a", attempt=1), T)  # late news of the first attempt: dropped
    state.tell(ok("a", attempt=2), T)
    state.tell(ok("b"), T)
    state.tell(ok("c"), T)
    assert state.left == 0 and all(s is S.DONE for s in state.status.values())


def test_a_failure_skips_everything_below_it_and_independent_branches_go_on():
    state = core({"a": set(), "b": {"a"}, "c": {"b"}, "x": set()})
    state.hand_out()
    state.take()
    state.tell(failed("a"), T)
    decisions = state.take()
    assert statuses(decisions) == [("a", S.FAILED), ("b", S.SKIPPED), ("c", S.SKIPPED)]
    error = decisions[0].error
    assert error.message == "a broke" and error.kind is ErrorKind.EXCEPTION
    state.tell(ok("x"), T)
    assert state.status["x"] is S.DONE and state.left == 0


def test_an_error_that_cannot_change_is_not_retried_and_the_last_error_names_every_attempt():
    state = core({"a": set(), "b": set()}, retries=2)
    state.hand_out()
    state.take()
    state.tell(failed("a", ErrorKind.UNSENDABLE), T)
    assert statuses(state.take()) == [("a", S.FAILED)]
    state.tell(failed("b", ErrorKind.TIMEOUT), T)
    state.due(T + 5)
    state.hand_out()
    state.tell(failed("b", ErrorKind.TIMEOUT, attempt=2), T)
    state.due(T + 10)
    state.hand_out()
    state.tell(failed("b", ErrorKind.TIMEOUT, attempt=3), T)
    final = [d for d in state.take() if isinstance(d, Status) and d.status is S.FAILED]
    assert final[0].error.message == "b broke (after 3 attempts)"
    assert "attempt 1 on w1: b broke" in final[0].error.traceback


def test_fail_fast_cancels_the_rest_at_the_first_failure():
    state = core({"a": set(), "b": set(), "c": set()}, fail_fast=True, capacity=2)
    state.hand_out()
    state.take()
    state.tell(failed("a"), T)
    decisions = state.take()
    assert Withdraw(frozenset({"b"})) in decisions
    assert set(statuses(decisions)) == {("a", S.FAILED), ("b", S.CANCELLED),
                                        ("c", S.CANCELLED)}
    assert state.left == 0 and not state.running and not state.ready


def test_a_maps_batches_grow_from_measured_item_times_and_a_crash_splits_them_to_the_culprit():
    state = core({"m": set()}, mapped={"m": [None]}, capacity=2)
    state.hand_out()
    assert state.take() == [Expand("m")]
    state.expanded("m", 1000, set(), str)
    state.hand_out()
    decisions = state.take()
    assert handed(decisions) == ["m[0]", "m[1]"]  # not timed yet: each item alone
    assert ItemStatus("m", range(0, 1), S.QUEUED) in decisions
    state.tell(Started("m[0]", 1, "w1", T), T)
    assert ("m", S.RUNNING) in statuses(state.take())
    state.tell(ok("m[0]", value=batch(1, 0.001)), T)
    state.hand_out()
    # 1 ms an item: 100 ms of work is 100 items (a quarter of a worker's share is 125)
    assert handed(state.take()) == ["m[2:102]"]
    state.tell(ok("m[1]", value=batch(1, 0.001)), T)
    state.tell(failed("m[2:102]", ErrorKind.CRASH), T)  # which item took it down?
    assert ItemStatus("m", range(2, 102), S.PENDING) in state.take()
    while state.running or state.ready:  # from now on every item goes alone
        state.hand_out()
        for key in handed(state.take()):
            assert ":" not in key, key
            outcome = failed(key, ErrorKind.CRASH) if key == "m[50]" else ok(
                key, value=batch(1, 0.001))
            state.tell(outcome, T)
    final = [d for d in state.take() if isinstance(d, Status)]
    assert [(d.stage, d.status) for d in final] == [("m", S.FAILED)]
    assert final[0].error.message.startswith("1 of 1000 items of stage 'm' failed: item 50 (50)")
    assert state.maps["m"].counts() == {S.DONE: 999, S.FAILED: 1}


def test_cancel_in_the_middle_of_a_map_ends_its_items_and_withdraws_its_batches():
    state = core({"m": set(), "after": {"m"}}, mapped={"m": [None]})
    state.hand_out()
    state.take()
    state.expanded("m", 10, set(), str)
    state.hand_out()
    state.tell(Started("m[0]", 1, "w1", T), T)
    state.take()
    state.cancel()
    decisions = state.take()
    assert Withdraw(frozenset({"m[0]", "m[1]"})) in decisions
    assert ItemStatus("m", range(0, 10), S.CANCELLED) in decisions
    assert set(statuses(decisions)) == {("m", S.CANCELLED), ("after", S.CANCELLED)}
    assert not state.tell(ok("m[0]", value=batch(1, 0.001)), T)  # too late: dropped
    assert state.left == 0


def test_a_resumed_map_hands_out_only_the_items_not_known():
    state = core({"m": set()}, mapped={"m": [None]})
    state.hand_out()
    state.take()
    state.expanded("m", 10, {0, 1, 2, 3, 5, 6, 7, 8}, str)
    decisions = state.take()
    assert ItemStatus("m", range(0, 4), S.CACHED) in decisions
    assert ItemStatus("m", range(5, 9), S.CACHED) in decisions
    state.hand_out()
    assert handed(state.take()) == ["m[4]", "m[9]"]
    state.tell(ok("m[4]", value=batch(1, 0.1)), T)
    state.tell(ok("m[9]", value=batch(1, 0.1)), T)
    assert statuses(state.take()) == [("m", S.DONE)]


def test_an_item_is_retried_alone_and_a_map_over_a_map_takes_each_item_as_it_is_done():
    state = core({"m": set(), "n": {"m"}}, mapped={"m": [None], "n": ["m"]}, retries=1,
                 capacity=1, priority={"m": 1, "n": 2})
    state.hand_out()
    state.take()
    state.expanded("m", 3, set(), str)
    state.hand_out()
    assert state.take()[-1] == Expand("n")  # n is known once m's items are
    state.expanded("n", 3, set(), str)
    state.hand_out()
    assert handed(state.take()) == ["m[0]"]
    state.tell(ok("m[0]", value=batch(1, 1.0, errors={})), T)
    state.hand_out()
    assert handed(state.take()) == ["n[0]"]  # its item 0 goes before m's next ones
    state.tell(ok("n[0]", value=batch(1, 1.0)), T)
    state.hand_out()
    assert handed(state.take()) == ["m[1]"]
    state.tell(ok("m[1]", value=batch(1, 1.0, errors={0: StageError(ErrorKind.EXCEPTION,
                                                                     "bad 1")})), T)
    decisions = state.take()
    assert ItemStatus("m", range(1, 2), S.RETRYING, decisions[-1].error) in decisions
    state.hand_out()
    assert handed(state.take()) == ["m[2]"]  # m[1] waits for its retry delay
    state.tell(ok("m[2]", value=batch(1, 1.0)), T)
    state.hand_out()
    assert handed(state.take()) == ["n[2]"]
    state.due(T + 5)
    state.hand_out()
    assert state.take() == []  # n[2] holds the one place
    state.tell(ok("n[2]", value=batch(1, 1.0)), T)
    state.hand_out()
    assert handed(state.take()) == ["m[1]"]
    assert state.batches["m[1]"][2] == 2  # its second attempt
    state.tell(ok("m[1]", attempt=2, value=batch(1, 1.0)), T)
    state.hand_out()
    decisions = state.take()
    assert statuses(decisions) == [("m", S.DONE)]
    assert handed(decisions) == ["n[1]"]  # n's item 1 once m's item 1 is done
    state.tell(ok("n[1]", value=batch(1, 1.0)), T)
    assert statuses(state.take()) == [("n", S.DONE)]

"""The garbage collector while runs go on: what existed before a run is frozen until the
last run going on ends; what a run makes is still collected."""

from __future__ import annotations

import gc
import threading
import weakref

import pytest

from pydags import Pipeline, heap, stage


class _Cycle:
    def __init__(self) -> None:
        self.me = self


@pytest.fixture(autouse=True)
def _no_run_left_frozen():
    yield
    assert gc.get_freeze_count() == 0


def _during_a_run(look):
    """A one-stage pipeline, run in this process, whose stage returns ``look()``."""
    return Pipeline("heap").add_stages(stage(look)().named("look")).start(num_cores=1)


def test_objects_made_before_a_run_stay_frozen_while_it_goes_on_and_thaw_after():
    assert gc.get_freeze_count() == 0

    def look() -> tuple[int, bool]:
        cycle = _Cycle()
        gone = weakref.ref(cycle)
        del cycle
        gc.collect()  # garbage made during the run is still collected
        return gc.get_freeze_count(), gone() is None

    frozen, collected = _during_a_run(look).results["look"]
    assert frozen > 0 and collected
    assert gc.get_freeze_count() == 0


def test_a_process_that_froze_its_own_objects_finds_them_frozen_after_a_run():
    mine = _Cycle()
    gc.freeze()
    try:
        _during_a_run(lambda: None)
        # a frozen object is in no generation the collector walks
        assert not any(o is mine for o in gc.get_objects())
    finally:
        gc.unfreeze()
    assert any(o is mine for o in gc.get_objects())


def test_the_heap_thaws_only_when_the_last_of_two_runs_going_on_at_once_ends():
    started = {name: threading.Event() for name in ("a", "b")}
    release = {name: threading.Event() for name in ("a", "b")}

    def hold(name: str) -> str:
        started[name].set()
        assert release[name].wait(60), "the test never released this stage"
        return name

    runs = {name: Pipeline(f"heap_{name}").add_stages(stage(hold)(name).named("hold"))
            .start(num_cores=1, block=False) for name in ("a", "b")}
    try:
        assert all(event.wait(60) for event in started.values())
        release["a"].set()
        runs["a"].wait(60)
        assert gc.get_freeze_count() > 0  # b still goes on
        release["b"].set()
        runs["b"].wait(60)
        assert gc.get_freeze_count() == 0
    finally:
        for event in release.values():
            event.set()
        for run in runs.values():
            run.wait(60)


_held: list[object] = []


def _let_go() -> None:
    _held.clear()


def _is_gone(gone) -> bool:
    return gone() is None


def test_garbage_among_the_frozen_objects_is_collected_as_a_long_run_goes_on(monkeypatch):
    monkeypatch.setattr(heap, "REFREEZE_SECONDS", 0.0)  # every turn of the loop
    _held.append(_Cycle())
    gone = weakref.ref(_held[0])
    let_go = stage(_let_go)().named("let_go")
    look = stage(_is_gone)(gone).named("look").after(let_go)
    run = Pipeline("refreeze").add_stages([let_go, look]).start(num_cores=1)
    assert run.results["look"]  # collected, though made before the run, and frozen

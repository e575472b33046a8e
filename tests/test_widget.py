"""The live view's state as the kernel pushes it, driven by real runs (no browser here)."""

from __future__ import annotations

import json
import threading
from array import array

import ipywidgets
import pytest
from conftest import assert_no_orphans
from workload import fails_for, needs_fix, sleepy

from pydags import StageStatus
from pydags.examples import tutorial
from pydags.pipeline import Pipeline
from pydags.stage import stage


@stage
def ok():
    return 1


@stage
def broken(x):
    print("about to fail")
    raise RuntimeError("broken on purpose")


@stage
def after(x):
    return x


@pytest.fixture(autouse=True)
def _no_leftovers(no_orphans):
    yield


def statuses(view) -> dict[str, str]:
    return {name: state["status"] for name, state in view.stages.items()}


def test_the_view_holds_each_stages_state_and_the_svg_names_every_stage():
    pipeline = Pipeline("w").add_stages(after(broken(ok())), ok().named("other"))
    view = pipeline.widget()
    assert view.drawn.wait(60), "the DAG was never drawn"
    for name in pipeline.graph:
        assert f'id="pydags-stage:{name}"' in view.svg
    seen = []
    view.observe(lambda change: seen.append(statuses(view)), names="stages")
    run = pipeline.prepare(num_cores=2, raise_on_error=False)
    view.attach(run)
    run.start()
    assert statuses(view) == {"ok": "done", "broken": "failed", "after": "skipped",
                              "other": "done"}
    assert len({tuple(sorted(s.items())) for s in seen}) >= 2  # it changed along the way
    assert "broken on purpose" in view.stages["broken"]["error"]
    assert view.stages["broken"]["output"] == "about to fail\n"
    assert "<pre>1</pre>" in view.stages["ok"]["result"]
    assert view.state == "finished" and view.clock["ended"] >= view.clock["started"]
    assert {bar[0] for bar in view.bars} == {"ok", "broken", "other"}


def test_cancel_from_the_view_stops_a_non_blocking_run():
    pipeline = Pipeline("sleepy").add_stages([sleepy(300).named(f"nap{i}") for i in range(5)])
    view = pipeline.widget(num_cores=2)
    view._on_action(view, {"action": "run"}, [])
    running = threading.Event()
    view.run.subscribe(lambda e: e.status is StageStatus.RUNNING and running.set())
    if StageStatus.RUNNING in view.run.status.values():
        running.set()
    assert running.wait(120), "no stage started"
    view._on_action(view, {"action": "cancel"}, [])
    view.run.wait(timeout=60)  # the view's last push happens before the run counts as ended
    assert set(statuses(view).values()) == {"cancelled"}
    assert_no_orphans()


def test_pushes_are_batched_not_one_per_event():
    @stage
    def tiny(*xs):
        return 1

    stages = []
    for i in range(500):
        stages.append(tiny(*stages[-2:]).named(f"t{i}"))
    pipeline = Pipeline("many").add_stages(stages)
    events = []
    view = pipeline.widget()
    run = pipeline.prepare(num_cores=1, on_event=events.append)
    view.attach(run)
    run.start()
    assert view.pushes < len(events) / 10
    assert set(statuses(view).values()) == {"done"}


def test_rerun_and_retry_from_the_inspector(tmp_path):
    flag = tmp_path / "fixed"

    pipeline = Pipeline("again").add_stages(needs_fix(ok(), flag).named("fix"),
                                            after(ok().named("base")).named("below"))
    view = pipeline.widget()
    first = pipeline.start(raise_on_error=False, show=False)
    view.attach(first)
    flag.write_text("yes")
    view._on_action(view, {"action": "retry"}, [])
    retried = view.run.wait(timeout=60)
    assert retried.status["fix"] is StageStatus.DONE and retried.status["ok"] is StageStatus.CACHED
    view._on_action(view, {"action": "rerun", "stage": "base"}, [])
    rerun = view.run.wait(timeout=60)
    assert rerun.status["base"] is StageStatus.DONE and rerun.status["below"] is StageStatus.DONE
    assert rerun.status["fix"] is StageStatus.CACHED


def test_the_static_form_shows_the_final_dag_and_a_row_per_stage():
    pipeline = tutorial.build()
    view = pipeline.widget()
    before = view.final_bundle()  # not run yet: the DAG alone
    assert before["text/plain"] == "Pipeline 'tutorial': 6 stages, not run yet"
    assert before["text/html"].count("data:image/svg+xml;base64,") == 1
    assert "6 stages, not run yet" in before["text/html"] and "<tr id=" not in before["text/html"]
    run = pipeline.prepare(num_cores=2)
    view.attach(run)
    run.start()
    bundle = view.final_bundle()
    page = bundle["text/html"]
    assert page.count("data:image/svg+xml;base64,") == 1 and page.count("<tr id=") == 6
    assert "6/6 done" in page and "<details><summary>output</summary>" in page
    assert bundle["text/plain"] == "Pipeline 'tutorial': 6/6 done"


def test_repeated_runs_leave_no_more_live_widgets_than_one(monkeypatch):
    import pydags.views.display

    monkeypatch.setattr(pydags.views.display, "in_notebook", lambda: True)
    shown = []
    monkeypatch.setattr("IPython.display.display",
                        lambda *a, **k: shown.append(a) or _FakeHandle())
    pipeline = Pipeline("again", [after(ok()), ok().named("other")])

    def live_widgets() -> int:
        return len(ipywidgets.widgets.widget._instances)

    pipeline.start(num_cores=2)
    after_one = live_widgets()
    for _ in range(4):
        pipeline.start(num_cores=2)
    assert live_widgets() <= after_one
    assert len(shown) == 5


def test_a_view_to_keep_is_html_bound_to_it_and_made_again_when_a_run_ends(monkeypatch):
    handle, shown = _FakeHandle(), []
    monkeypatch.setattr("IPython.display.display",
                        lambda bundle, **options: shown.append((bundle, options)) or handle)
    monkeypatch.delenv("VSCODE_PID", raising=False)
    view = tutorial.build().widget()
    view._ipython_display_()  # what a cell ending in ``pipeline.widget()`` does
    [(bundle, options)] = shown
    assert options == {"raw": True, "display_id": True}
    assert set(bundle) == {"text/html", "text/plain"}  # no widget: nothing a saved notebook
    page = bundle["text/html"]  # cannot show without its kernel
    assert "6 stages, not run yet" in page and page.count("data:image/svg+xml;base64,") == 1
    assert "mountFinal(holder" in page and json.dumps(view.view) in page  # bound to this view
    view._on_action(view, {"action": "run"}, [])  # the view's Run all button
    assert handle.updated.wait(120)
    assert "6/6 done" in handle.bundles[-1]["text/html"]
    assert view.comm is not None  # still live, for the next Run or Retry
    view.close()


class _FakeHandle:
    def __init__(self):
        self.bundles, self.updated = [], threading.Event()


    def update(self, bundle, raw=False):
        assert "text/html" in bundle
        self.bundles.append(bundle)
        self.updated.set()


def test_a_mapped_stage_sends_its_items_statuses_durations_errors_and_bars():
    squares = fails_for.map(range(6000), bad=(7, 4000))
    pipeline = Pipeline("items-view").add_stages(after(squares))
    view = pipeline.widget()
    run = pipeline.prepare(num_cores=2, raise_on_error=False)
    view.attach(run)
    run.start()
    items = view.items["fails_for"]
    assert items["count"] == 6000 and items["tally"] == {"done": 5998, "failed": 2}
    assert items["codes"][7] == items["codes"][4000] == "f" and items["codes"].count("d") == 5998
    seconds = array("f", items["seconds"])
    assert len(seconds) == 6000 and min(seconds) >= 0 and max(seconds) < 60
    assert {int(i) for i in items["errors"]} == {7, 4000}
    assert "ValueError: item 7 is bad" in items["errors"][7]
    assert statuses(view)["fails_for"] == "failed" and statuses(view)["after"] == "skipped"
    bars = [b for b in view.bars if b[6] == "fails_for"]
    covered = 0
    for label, *_ in bars:
        first, _, last = label[len("fails_for["):-1].partition("..")
        covered += int(last or first) - int(first) + 1
    assert covered == 6000 and len(bars) < 200  # each item in one bar; batches drawn whole


def test_retry_from_the_view_runs_the_way_the_run_shown_was_started(tmp_path):
    from pydags.store import DiskStore

    flag = tmp_path / "fixed"

    pipeline = Pipeline("options", store=DiskStore(tmp_path / "store")).add_stages(
        needs_fix(ok(), flag).named("fix"))
    first = pipeline.start(num_cores=2, cache=True, fail_fast=True, raise_on_error=False,
                           show=False)
    assert first.options.cache and first.options.fail_fast and first.options.num_cores == 2
    view = pipeline.widget()
    flag.write_text("yes")
    view._on_action(view, {"action": "retry"}, [])
    retried = view.run.wait(timeout=60)
    assert retried is not first and retried.ok
    assert retried.options.cache and retried.options.fail_fast and retried.options.resume
    assert retried.options.num_cores == 2
    assert retried.stage_records["fix"].worker.startswith("worker-")  # on workers, as before
    assert retried.stage_records["fix"].cache == "runs: no cached result yet"
    view._on_action(view, {"action": "run"}, [])
    again = view.run.wait(timeout=60)
    assert not again.options.cache and not again.options.resume and again.options.fail_fast
    view.close()

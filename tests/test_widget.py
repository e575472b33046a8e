"""The live widget, driven by real runs and read back from its ipywidgets models."""

from __future__ import annotations

import base64
import io
import threading
import time

import numpy as np
import pytest
from conftest import assert_no_orphans
from PIL import Image
from workload import sleepy

from pydags import StageStatus
from pydags.examples import tutorial
from pydags.pipeline import Pipeline
from pydags.stage import stage
from pydags.status import PALETTE


@stage
def ok():
    time.sleep(0.3)
    return 1


@stage
def broken(x):
    print("about to fail")
    raise RuntimeError("broken on purpose")


@stage
def after(x):
    return x


def colours_in(png: bytes, least: int = 40) -> set[str]:
    """Colours filling at least ``least`` pixels above the legend (no anti-aliasing strays)."""
    image = np.asarray(Image.open(io.BytesIO(bytes(png))).convert("RGB"))
    pixels = image[:-40].reshape(-1, 3)
    colours, counts = np.unique(pixels, axis=0, return_counts=True)
    return {"#{:02x}{:02x}{:02x}".format(*c) for c, n in zip(colours, counts, strict=True)
            if n >= least}


def test_images_change_as_the_run_goes_and_end_in_status_colours():
    pipeline = Pipeline("w").add_stages(after(broken(ok())), ok().named("other"))
    widget = pipeline.widget()
    images = []
    widget.image.observe(lambda change: images.append(bytes(change["new"])), names="value")
    run = pipeline.start(num_cores=2, show=False, block=False, raise_on_error=False)
    widget.attach(run)
    run.wait()
    assert len(set(images)) >= 2
    final = colours_in(widget.image.value)
    for status in (StageStatus.DONE, StageStatus.FAILED, StageStatus.SKIPPED):
        assert PALETTE[status].fill in final, status
    assert PALETTE[StageStatus.PENDING].fill not in final
    assert widget.progress.value == 4 == widget.progress.max
    assert "1 failed" in widget.counts.value and "2 done" in widget.counts.value
    widget.stage_picker.value = "broken"
    assert "broken on purpose" in widget.details.value
    assert "about to fail" in widget.details.value
    assert widget.cancel_button.disabled and not widget.run_button.disabled


def test_cancel_button_stops_a_non_blocking_run_and_leaves_no_process():
    pipeline = Pipeline("sleepy").add_stages([sleepy(300).named(f"nap{i}") for i in range(5)])
    widget = pipeline.widget(num_cores=2)
    widget.run_button.click()
    running = threading.Event()
    widget.run.subscribe(lambda e: e.status is StageStatus.RUNNING and running.set())
    if StageStatus.RUNNING in widget.run.status.values():
        running.set()
    assert running.wait(120), "no stage started"
    widget.cancel_button.click()
    widget.run.wait(timeout=60)  # the last redraw happens before the run counts as ended
    assert set(widget.run.status.values()) == {StageStatus.CANCELLED}
    assert_no_orphans()
    assert PALETTE[StageStatus.CANCELLED].fill in colours_in(widget.image.value)


def test_redraws_are_throttled_and_the_last_one_is_final():
    @stage
    def tiny(*xs):
        return 1

    stages = []
    for i in range(500):
        stages.append(tiny(*stages[-2:]).named(f"t{i}"))
    pipeline = Pipeline("many").add_stages(stages)
    events = []
    widget = pipeline.widget()
    run = pipeline.prepare(num_cores=1, on_event=events.append)
    widget.attach(run)
    run.start()
    assert widget.redraws < len(events) / 10
    assert widget._drawing.status == run.status
    assert widget.progress.value == 500


def test_static_fallback_has_a_png_and_a_text_summary():
    pipeline = tutorial.build()
    widget = pipeline.widget()
    bundle = widget._repr_mimebundle_()
    assert base64.b64decode(bundle["image/png"]).startswith(b"\x89PNG")
    assert bundle["text/plain"] == "Pipeline 'tutorial': 6 stages, not run yet"
    assert "application/vnd.jupyter.widget-view+json" in bundle


def test_rerunning_resets_the_widget_and_two_widgets_do_not_interfere():
    pipeline = Pipeline("again").add_stages(after(ok()))
    first, second = pipeline.widget(), Pipeline("x").add_stages(ok()).widget()
    run = pipeline.prepare()
    first.attach(run)
    run.start(block=False).wait()
    assert first.progress.value == 2 and second.progress.value == 0
    run2 = pipeline.prepare()
    first.attach(run2)
    run2.start(block=False).wait()
    assert first.run is run2 and first.progress.value == 2


@pytest.fixture(autouse=True)
def _no_leftovers(no_orphans):
    yield


def test_the_timeline_tab_grows_while_the_run_goes_on():
    @stage
    def slow(i):
        time.sleep(0.4)

    pipeline = Pipeline("tl").add_stages([slow(i).named(f"slow{i}") for i in range(4)])
    widget = pipeline.widget()
    widget.tabs.selected_index = 1
    pictures = []
    widget.timeline_image.observe(lambda c: pictures.append(bytes(c["new"])), names="value")
    run = pipeline.prepare(num_cores=2)
    widget.attach(run)
    run.start(block=False).wait()
    assert len(set(pictures)) >= 3  # drawn at the start, while running and at the end
    assert bytes(widget.timeline_image.value).startswith(b"\x89PNG")

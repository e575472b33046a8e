"""The live notebook view of a pipeline, built from stock ipywidgets.

The DAG is a PNG in an ``ipywidgets.Image`` (it renders wherever widgets do, and in
exported HTML), recoloured from the scheduler's events — never by polling. Redraws are
throttled and coalesced, with a final one when the run ends. Frontends without widget
support get the same picture as a static PNG plus a text summary.
"""

from __future__ import annotations

import base64
import html
import threading
import time
from contextvars import copy_context
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from pydags.draw import Drawing
from pydags.run import Run
from pydags.status import PALETTE, StageStatus

if TYPE_CHECKING:
    from pydags.pipeline import Pipeline

REDRAW_SECONDS = 0.15  # at most one redraw this often while a run goes on
DRAW_SHARE = 0.1  # and drawing takes at most this share of the time, so the run keeps pace
MAX_PIXELS = 1e6  # the live picture's size limit; larger DAGs are drawn at a lower dpi


class PipelineWidget(widgets.VBox):
    """DAG picture, progress, a stage inspector and Run / Cancel buttons for one pipeline."""

    def __init__(self, pipeline: Pipeline, num_cores: int = 2):
        self.pipeline = pipeline
        self.num_cores = num_cores
        self.run: Run | None = None
        self.redraws = 0
        self._drawing = Drawing(pipeline.graph, dpi=80, max_pixels=MAX_PIXELS, legend="all")
        self._lock = threading.Lock()
        self._last_draw = 0.0
        self._timer: threading.Timer | None = None
        self._display: Any = None
        self._interval = REDRAW_SECONDS
        self.image = widgets.Image(value=self._drawing.png(), format="png",
                                   layout=widgets.Layout(max_width="100%"))
        self.timeline_image = widgets.Image(format="png", layout=widgets.Layout(max_width="100%"))
        self.tabs = widgets.Tab(children=[self.image, self.timeline_image],
                                titles=("DAG", "Timeline"))
        self.tabs.observe(lambda _: self._draw_timeline(), names="selected_index")
        self.progress = widgets.IntProgress(value=0, min=0, max=len(pipeline),
                                            description="0%", bar_style="info")
        self.counts = widgets.HTML()
        self.stage_picker = widgets.Dropdown(options=[s.name for s in pipeline.stages],
                                             description="stage")
        self.details = widgets.HTML()
        self.run_button = widgets.Button(description="Run", icon="play")
        self.cancel_button = widgets.Button(description="Cancel", icon="stop", disabled=True,
                                            button_style="danger")
        self.run_button.on_click(lambda _: self.start())
        self.cancel_button.on_click(lambda _: self.cancel())
        self.stage_picker.observe(lambda _: self._show_stage(), names="value")
        buttons = widgets.HBox([self.run_button, self.cancel_button, self.progress, self.counts])
        super().__init__([buttons, self.tabs, widgets.HBox([self.stage_picker]), self.details])
        self._refresh_text()

    # --- driving runs ---------------------------------------------------------
    def attach(self, run: Run) -> None:
        """Follow ``run``: reset the view, then redraw from its events."""
        with self._lock:
            self.run = run
            self._drawing.update({name: StageStatus.PENDING for name in self._drawing.graph})
        run.subscribe(self._changed, on_finish=self._on_finish, on_output=self._changed)
        self.progress.bar_style = "info"
        self.cancel_button.disabled = False
        self.run_button.disabled = True
        self._redraw()

    def start(self, **options: Any) -> Run:
        """Start a non-blocking run of the pipeline shown here."""
        options.setdefault("num_cores", self.num_cores)
        run = self.pipeline.prepare(raise_on_error=False, **options)
        self.attach(run)
        return run.start(block=False)

    def cancel(self) -> None:
        """Cancel the run shown here."""
        if self.run is not None:
            self.run.cancel()

    # --- events -------------------------------------------------------------
    def _on_finish(self, run: Run) -> None:
        if run is not self.run:
            return
        self._redraw()
        if self._display is not None:  # the static fallback shows the final state too
            self._display.update(self)

    def _changed(self, *_: Any) -> None:
        """A status changed or a stage printed: redraw soon."""
        if self.run is None:
            return
        if self._timer is None:  # draw on a timer thread: the scheduler never waits for it
            wait = max(0.0, self._last_draw + self._interval - time.time())
            self._timer = threading.Timer(wait, copy_context().run, args=(self._redraw,))
            self._timer.daemon = True
            self._timer.start()

    def _redraw(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._last_draw = start = time.time()  # events during this draw wait for the next
            if self.run is not None:
                self._drawing.update(self.run.status)
            self.image.value = self._drawing.png()
            self.redraws += 1
            self._refresh_text()
            if self.tabs.selected_index == 1:
                self._draw_timeline()
            self._interval = max(REDRAW_SECONDS, (time.time() - start) / DRAW_SHARE)

    def _draw_timeline(self) -> None:
        """Redraw the run's timeline (only while its tab is shown: it is a full render)."""
        if self.run is None or self.tabs.selected_index != 1:
            return
        from pydags.draw import figure_png

        self.timeline_image.value = figure_png(self.run.timeline())

    def _refresh_text(self) -> None:
        run = self.run
        total = len(self.pipeline)
        if run is None:
            self.counts.value = f"{total} stages, not run yet"
            self.details.value = ""
            return
        counts = run.counts()
        finished = sum(n for s, n in counts.items() if s.finished)
        self.progress.value = finished
        self.progress.description = f"{round(100 * finished / max(total, 1))}%"
        if run.done() or finished == total:
            failed = counts[StageStatus.FAILED] or counts[StageStatus.CANCELLED]
            self.progress.bar_style = "danger" if failed else "success"
            self.cancel_button.disabled = True
            self.run_button.disabled = False
        chips = " ".join(
            f'<span style="background:{PALETTE[s].fill};padding:1px 5px;border-radius:3px">'
            f"{n} {s.value}</span>" for s, n in counts.items() if n)
        elapsed = run.wall_time or 0.0
        self.counts.value = f"{chips} &nbsp; {elapsed:.1f}s"
        self._show_stage()

    def _show_stage(self) -> None:
        if self.run is None or self.stage_picker.value is None:
            return
        record = self.run.stage_records[self.stage_picker.value]
        rows = [f"<b>{html.escape(record.name)}</b>: {record.status.value}"]
        if record.duration is not None:
            where = f" on {html.escape(record.worker)}" if record.worker else ""
            rows.append(f"{record.duration:.3f}s{where}")
        if len(record.attempts) > 1:
            rows.append(f"{len(record.attempts)} attempts")
        if record.cache:
            rows.append(html.escape(record.cache))
        parts = [" · ".join(rows)]
        if record.name in self.run.results:
            parts.append(_block("result", repr(self.run.results[record.name])[:2000]))
        if record.output:
            parts.append(_block("output", record.output[-5000:]))
        if record.error is not None:
            parts.append(_block("error", str(record.error)))
        self.details.value = "".join(parts)

    # --- static fallback -------------------------------------------------------
    def show(self) -> None:
        """Display the widget in the notebook; its static fallback follows the run's end."""
        from IPython.display import display

        self._display = display(self, display_id=True)

    def summary(self) -> str:
        """One line per status count, for frontends that cannot show widgets."""
        if self.run is None:
            return f"Pipeline {self.pipeline.name!r}: {len(self.pipeline)} stages, not run yet"
        counts = ", ".join(f"{n} {s.value}" for s, n in self.run.counts().items() if n)
        return f"Pipeline {self.pipeline.name!r}: {len(self.pipeline)} stages: {counts}"

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle = super()._repr_mimebundle_(**kwargs) or {}
        bundle["image/png"] = base64.b64encode(bytes(self.image.value)).decode("ascii")
        bundle["text/plain"] = self.summary()
        return bundle


def _block(title: str, text: str) -> str:
    return (f"<div><b>{title}</b><pre style='max-height:16em;overflow:auto;margin:2px 0'>"
            f"{html.escape(text)}</pre></div>")

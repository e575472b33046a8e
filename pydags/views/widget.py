"""The live notebook view of a pipeline, on anywidget.

matplotlib draws the DAG once, as SVG; from then on the kernel pushes only plain state —
each stage's status, times, worker, output so far, result preview and traceback, the
timeline's bars and the run's clock — and the front end (``widget.js``) recolours the
stages, ticks the clock and answers clicks by itself. That is why the view stays live
while a blocking run keeps the kernel busy: the kernel can send while it cannot listen.
Pushes are batched on a thread of their own, so the scheduler never waits for the view.

The view is shown in two ways. A run started with the view shown has it as a widget
output until the run ends; the output then becomes the view's HTML form
(``pydags.views.static``): the run's report, which a saved or exported notebook shows
with no kernel and no widget state, and which turns back into this view, as the user
left it, wherever the page runs scripts. That view's models are closed. A view to keep
(``pipeline.widget()``) is that HTML form from the start, bound to the live model while
the kernel lives, and made again, with the last run's report, each time a run ends.
"""

from __future__ import annotations

import functools
import itertools
import operator
import os
import sys
import threading
import time
import uuid
from array import array
from contextvars import copy_context
from pathlib import Path
from typing import Any

import anywidget
import networkx as nx
import traitlets

from pydags.recorder import Snapshot
from pydags.records import Event
from pydags.run import Run
from pydags.status import CODE, LOOKS, STATUSES, StageStatus
from pydags.views.draw import Drawing
from pydags.views.report import plan_html, run_html
from pydags.views.static import final_html
from pydags.views.timeline import Bar, bars, critical_path, figures, item_bars

PUSH_SECONDS = 0.2  # at most one push of new state this often while a run goes on
ITEMS_SECONDS = 1.0  # a large map's items are sent at most this often
OUTPUT_SHOWN = 5000  # characters of a stage's output the view holds
ERRORS_SHOWN = 1000  # failed items of a map whose errors the view holds
WAITING = (StageStatus.PENDING, StageStatus.QUEUED)
LETTERS = bytes.maketrans(bytes(range(len(STATUSES))), b"pqrydcfsx")  # a status code each


class PipelineWidget(anywidget.AnyWidget):
    """The DAG, progress, a stage inspector, a timeline and Run / Cancel for one pipeline."""

    _esm = Path(__file__).with_name("widget.js")
    _css = Path(__file__).with_name("widget.css")
    title = traitlets.Unicode("").tag(sync=True, shown=True)
    svg = traitlets.Unicode("").tag(sync=True, shown=True)
    looks = traitlets.Dict().tag(sync=True, shown=True)
    stages = traitlets.Dict().tag(sync=True, shown=True)
    bars = traitlets.List().tag(sync=True, shown=True)
    items = traitlets.Dict().tag(sync=True, shown=True)
    clock = traitlets.Dict().tag(sync=True, shown=True)
    # "4/6 done · 1 failed", during a run
    headline = traitlets.Unicode("").tag(sync=True, shown=True)
    # stage -> [run id, seconds] of recent runs
    recent = traitlets.Dict().tag(sync=True, shown=True)
    parents = traitlets.Dict().tag(sync=True, shown=True)  # stage -> the stages it waits for
    cores = traitlets.Int(1).tag(sync=True, shown=True)
    # wall, work, workers, efficiency, longest stage, critical path
    efficiency = traitlets.Dict().tag(sync=True, shown=True)
    state = traitlets.Unicode("idle").tag(sync=True, shown=True)
    actions = traitlets.Bool(True).tag(sync=True, shown=True)
    # the run shown holds the kernel
    blocking = traitlets.Bool(False).tag(sync=True, shown=True)
    # names what the user chose in the view (zoom, stage, tab), kept into its final form
    view = traitlets.Unicode("").tag(sync=True, shown=True)

    def __init__(self, pipeline: Any, num_cores: int = 2):  # a pydags Pipeline
        super().__init__(view=uuid.uuid4().hex)  # the front end finds its model by it
        self.pipeline = pipeline
        self.num_cores = num_cores
        self.run: Run | None = None
        self.pushes = 0
        self._dirty: set[str] = set()
        self._item_state: dict[str, tuple[int, float, list, dict]] = {}  # name -> version,
        # when, bars, detail: a map's items as last sent
        self._lock = threading.Lock()
        self._summarised = 0.0
        self._wake = threading.Event()
        self._display: Any = None  # the output of the run it was made for
        self._kept: list[Any] = []  # the outputs of a view to keep
        self.title = pipeline.name
        self.drawn = threading.Event()
        self.drawn_at = 0.0  # when the drawing was ready (perf_counter)
        threading.Thread(target=copy_context().run, args=(self._draw,), name="pydags-draw",
                         daemon=True).start()  # a large DAG takes a moment: show the rest now
        self.looks = {name: {"fill": look.fill, "edge": look.edge, "dash": look.linestyle,
                             "glyph": look.glyph, "text": look.text}
                      for name, look in LOOKS.items()}
        self.parents = {name: list(pipeline.graph.predecessors(name)) for name in pipeline.graph}
        self.cores = num_cores
        self.stages = {name: {"status": "pending"} for name in pipeline.graph}
        self.on_msg(self._on_action)

    def show_stale(self, reasons: dict[str, str | None]) -> None:
        """Before a run: draw each stage stale (it would run, and why) or fresh (its result
        is known), as ``pipeline.stale()`` says in ``reasons``."""
        self.stages = {name: {"status": "stale", "cache": reason} if reason else
                       {"status": "fresh", "cache": "result known: it would be cached"}
                       for name, reason in reasons.items()}

    def _draw(self) -> None:
        graph = self.pipeline.graph
        self.svg = drawn_svg(tuple(graph.nodes(data="mapped", default=False)),
                             tuple(graph.edges))
        self.recent = recent_times(self.pipeline.name)
        self.drawn_at = time.perf_counter()
        self.drawn.set()


    # --- driving runs ---------------------------------------------------------
    def attach(self, run: Run) -> None:
        """Follow ``run`` from now on (its state so far is shown at once)."""
        with self._lock:
            self.run = run
            self._dirty = set(run.stage_records)
        run.subscribe(self._changed, on_output=self._printed, on_finish=self._finished)
        self.state = "finished" if run.done() else "running"
        self._push()
        if not run.done():
            threading.Thread(target=copy_context().run, args=(self._keep_pushing, run),
                             name="pydags-view", daemon=True).start()

    def start(self, **options: Any) -> Run:
        """Start a non-blocking run of the pipeline shown here: the way the run shown was
        started (its cores or executor, cache, fail_fast, ...) but for ``options``; with no
        run shown, on ``num_cores`` cores."""
        if self.run is not None:
            run = self.run.again(block=False, show=False, raise_on_error=False, **options)
        else:
            options.setdefault("num_cores", self.num_cores)
            run = self.pipeline.start(block=False, show=False, raise_on_error=False, **options)
        self.blocking = False
        self.attach(run)
        return run

    def cancel(self) -> None:
        """Cancel the run shown here."""
        if self.run is not None:
            self.run.cancel()

    def _on_action(self, _: Any, message: dict, __: Any) -> None:
        # Browser messages arrive only while the kernel is free: never during a blocking run.
        action = message.get("action")
        if action == "cancel":
            self.cancel()
        elif self.run is None or self.run.done():
            fresh = {"resume": False, "rerun": ()}
            if action == "run":
                self.start(**fresh, cache=False)
            elif action == "run_stale":
                self.start(**fresh, cache=True)
            elif action == "retry":
                self.start(resume=True, rerun=())
            elif action == "rerun":
                self.start(resume=True, rerun=[message["stage"]])

    # --- news from the run ------------------------------------------------------
    def _changed(self, event: Event) -> None:
        with self._lock:
            self._dirty.add(event.stage)
        if event.status.finished or event.status is StageStatus.RUNNING:
            self._wake.set()

    def _printed(self, stage: str, _: str) -> None:
        with self._lock:
            self._dirty.add(stage)

    def _finished(self, run: Run) -> None:
        if run is not self.run:
            return
        with self._lock:
            self._dirty |= set(run.stage_records)
        self.state = "finished"
        self._push()
        if self._display is not None:
            self._display.update(self.final_bundle(), raw=True)
            self._display = None
            self.close()  # the static report took its place: its models can go
        elif self._kept:
            bundle = self.final_bundle()
            for handle in self._kept:
                handle.update(bundle, raw=True)

    def _keep_pushing(self, run: Run) -> None:
        while not run.done():
            self._wake.wait(PUSH_SECONDS)
            self._wake.clear()
            if run is not self.run:
                return
            self._push()
            time.sleep(PUSH_SECONDS / 2)  # a burst of events is sent as one push

    def _push(self) -> None:
        run = self.run
        if run is None:
            return
        with self._lock:
            dirty, self._dirty = self._dirty, set()
            snap = run.snapshot()
            changed = {name: self._stage(snap, name) for name in dirty
                       if name in snap.stage_records}
            items = {name: self._items(snap, name) for name in snap.items}
            stages = [_sent(bar) for bar in bars(snap, maps=False)]
            with self.hold_sync():
                self.stages = {**self.stages, **changed}
                self.bars = stages + [bar for shown, _ in items.values() for bar in shown]
                if items:
                    self.items = {name: detail for name, (_, detail) in items.items()}
                self.clock = {"started": snap.started, "ended": snap.ended, "now": snap.taken}
                self.headline = snap.summary
                if snap.ended is not None or snap.taken - self._summarised >= ITEMS_SECONDS:
                    self._summarised = snap.taken  # it reads every bar: once a second
                    self.efficiency = {**figures(snap), "critical": critical_path(snap)}
            self.pushes += 1

    def _items(self, run: Snapshot, name: str) -> tuple[list, dict]:
        """A map's timeline bars and its items' statuses, durations and errors; sent again
        once they change, but for a large map not more than every ``ITEMS_SECONDS``."""
        items, now = run.items[name], time.time()
        version, when, shown, detail = self._item_state.get(name, (-1, 0.0, [], {}))
        if version == items.version or (items.count > 5000 and run.ended is None
                                        and now - when < ITEMS_SECONDS):
            return shown, detail
        shown = [_sent(bar) for bar in item_bars(name, items, now)]
        errors = {i: e.message for i, e in itertools.islice(items.errors.items(), ERRORS_SHOWN)
                  if items.status[i] != CODE[StageStatus.DONE]}
        detail = {"count": items.count,
                  "tally": {s.value: n for s, n in items.counts().items()},
                  "codes": bytes(items.status).translate(LETTERS).decode(),
                  # seconds per item, sent as binary: a JSON list of 100,000 costs far more
                  "seconds": array("f", map(operator.sub, items.end, items.start)).tobytes(),
                  "errors": errors}
        self._item_state[name] = (items.version, now, shown, detail)
        return shown, detail

    def _stage(self, run: Snapshot, name: str) -> dict[str, Any]:
        record = run.stage_records[name]
        status = record.status.value
        if record.status in WAITING and record.cache and record.cache.startswith("runs"):
            status = "stale"  # it will run because it changed: say so until it starts
        state: dict[str, Any] = {"status": status, "start": record.start,
                                 "end": record.end, "worker": record.worker,
                                 "attempts": len(record.attempts), "cache": record.cache,
                                 "output": record.output[-OUTPUT_SHOWN:]}
        if record.error is not None:
            state["error"] = str(record.error)
        if record.status.succeeded:
            state["result"] = run.results.preview(name)  # "" once a later run let it go
        return state

    def close(self) -> None:
        """Close the view's models (its layout's too), in the kernel and the browser."""
        layout = self.layout
        super().close()
        layout.close()

    # --- showing ----------------------------------------------------------------
    def show(self) -> None:
        """Display the view; when its run ends, the output becomes the run's static report."""
        from IPython.display import display

        self._display = display(self._widget_bundle(), raw=True, display_id=True)

    def _ipython_display_(self) -> None:
        """Shown to keep (``pipeline.widget()``): as HTML bound to this live view, which a
        notebook saved and reopened without the kernel still shows (``final_bundle``)."""
        from IPython.display import display

        if widgets_only():
            display(self._widget_bundle(), raw=True)
        else:
            self._kept.append(display(self.final_bundle(), raw=True, display_id=True))

    def final_bundle(self) -> dict[str, Any]:
        """The view's HTML form: the report of its run (or the DAG of a pipeline not run
        yet), which becomes the view again where the page runs scripts
        (``pydags.views.static``), and a line of text."""
        self.drawn.wait()
        graph = self.pipeline.graph
        if self.run is None:
            status = {name: stage["status"] for name, stage in self.stages.items()}
            report = plan_html(graph, self.pipeline.name, status,
                               f"{len(graph)} stages, not run yet")
        else:
            report = run_html(graph, self.run.snapshot())
        state = {name: getattr(self, name) for name in self.trait_names(shown=True)}
        return {"text/html": final_html(report, state, self.view),
                "text/plain": self.summary()}

    def summary(self) -> str:
        """One line: the pipeline and how many stages are in each status."""
        if self.run is None:
            return f"Pipeline {self.pipeline.name!r}: {len(self.pipeline)} stages, not run yet"
        return f"Pipeline {self.pipeline.name!r}: {self.run.snapshot().summary}"

    def _widget_bundle(self) -> dict[str, Any]:
        bundle = self._repr_mimebundle_() or {}
        data = bundle[0] if isinstance(bundle, tuple) else bundle
        return {**data, "text/plain": self.summary()}


def widgets_only() -> bool:
    """True in front ends where an output's script may not reach a widget's model: Colab
    gives each output a frame of its own, VS Code draws widgets with a renderer of its
    own. There a view to keep is shown as a widget."""
    return "google.colab" in sys.modules or "VSCODE_PID" in os.environ


@functools.lru_cache(maxsize=8)
def drawn_svg(nodes: tuple[tuple[str, bool], ...], edges: tuple[tuple[str, str], ...]) -> str:
    """The view's SVG of a DAG: the same DAG shown again (the next run of a pipeline, a view
    of it kept beside) is drawn once."""
    graph = nx.DiGraph()
    graph.add_nodes_from((name, {"mapped": mapped}) for name, mapped in nodes)
    graph.add_edges_from(edges)
    return Drawing(graph, legend="all", glyphs=False).svg()


def recent_times(pipeline: str) -> dict[str, list[tuple[str, float]]]:
    """Each stage's seconds in the pipeline's last finished runs, as the journal has them
    (none when it cannot be read: the view goes on without)."""
    from pydags import journal
    from pydags.scribe import reading

    try:
        with reading() as db:
            return journal.recent_times(db, pipeline)
    except Exception:
        return {}


def _sent(bar: Bar) -> list[Any]:
    """A timeline bar as the browser takes it (no end while it runs)."""
    end = None if bar.status is StageStatus.RUNNING else bar.end
    return [bar.label, bar.worker, bar.start, end, bar.status.value, bar.attempt, bar.stage]

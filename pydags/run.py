"""A run of a pipeline, as its user holds it: statuses, results, errors, outputs, records,
timeline, and the handle to ``wait`` for it or ``cancel`` it. It only reads: the run's
recorder (``pydags.recorder``) writes, from the scheduler's loop."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import weakref
from collections.abc import Callable
from contextvars import copy_context
from typing import TYPE_CHECKING, Any

from pydags.heap import older_objects_frozen
from pydags.items import Items
from pydags.recorder import OutputSubscriber, Recorder, RunSubscriber, Snapshot, Subscriber
from pydags.records import Reading, RunOptions, StageRecord
from pydags.results import Results

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from pydags.scheduler import Scheduler

class Run(Reading):
    """A run of a pipeline: its result, and while it goes on, a handle to ``wait`` or ``cancel``.

    ``Pipeline.start()`` returns one; ``Pipeline.prepare()`` returns one not started yet, to
    ``subscribe()`` to before calling ``start()``.
    """

    def __init__(self, pipeline_name: str, stages: list[str], dependencies: dict[str, set[str]],
                 *, scheduler: Scheduler | None = None, options: RunOptions | None = None,
                 again: Callable[..., Run] | None = None, notes: dict[str, str] | None = None):
        self.pipeline_name = pipeline_name
        self.id: str | None = None  # in the journal, once it is journaled
        self.journaled: str | None = None  # read from the journal: the state it gives
        self.options = options or RunOptions()
        self.dependencies = dependencies
        self._recorder = Recorder(pipeline_name, stages, dependencies, notes)
        self._recorder.run = weakref.ref(self)
        self._dropped: str | None = None  # why the results are gone, once they are
        self._scheduler = scheduler
        self._again = again  # starts the pipeline again (None once it was let go)
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def raise_on_error(self) -> bool:
        return self.options.raise_on_error

    # --- what a user reads -------------------------------------------------
    @property
    def stage_records(self) -> dict[str, StageRecord]:
        """Stage name to everything the run knows of it (as it is now: ``snapshot()`` for
        copies that stay as they were)."""
        return self._recorder.records

    @property
    def items(self) -> dict[str, Items]:
        """Mapped stage name to its items, once it has them."""
        return self._recorder.items

    @property
    def started(self) -> float | None:
        """When the run began (``time.time()``), once it has."""
        return self._recorder.started

    @property
    def ended(self) -> float | None:
        """When the run ended, once it has."""
        return self._recorder.ended

    @property
    def left(self) -> int:
        """How many stages have not reached a final status."""
        return self._recorder.left

    def snapshot(self) -> Snapshot:
        """The run as it is now: copies of its records and items, safe to read on any
        thread while the run goes on."""
        return self._recorder.snapshot()

    @property
    def results(self) -> Results:
        """Stage name to its return value (stages DONE or CACHED; for a mapped stage, the
        list of its items' results, in order). A big result may still be in the worker
        process that made it: it comes here the first time it is read."""
        if self._dropped is not None:
            raise RuntimeError(self._dropped)
        return self._recorder.results

    def drop_results(self, why: str) -> None:
        """Let the results go (statuses, times and outputs stay); reading them raises
        ``RuntimeError(why)``. Results already let go stay so, with the first reason."""
        if self._dropped is None:
            self._dropped = why
            self._recorder.drop_results()

    @property
    def state(self) -> str:
        """running, ok, failed, cancelled; or, for a run read from the journal whose driver
        died, interrupted."""
        if self.journaled is not None and (self.journaled == "interrupted" or not self.done()):
            return self.journaled
        if not self.done():
            return "running" if self._scheduler is None else "not started"
        from pydags.scribe import final_state

        return final_state(self.status, self._recorder.interrupted)

    def records(self) -> list[dict[str, Any]]:
        """One plain dict per stage attempt (per item attempt for a mapped stage, with its
        ``item`` number): stage, attempt, worker, status, times, error, cache, item."""
        rows = []
        for rec in self.stage_records.values():
            if rec.name in self.items:
                rows.extend(self.items[rec.name].rows(rec.name, rec.queued, rec.cache))
                continue
            for attempt in rec.attempts:
                rows.append(dict(stage=rec.name, attempt=attempt.number, worker=attempt.worker,
                                 status=attempt.status.value, queued=rec.queued,
                                 start=attempt.start, end=attempt.end, error=attempt.error,
                                 cache=rec.cache, item=None))
        return rows

    def to_dataframe(self) -> Any:
        """``records()`` as a pandas DataFrame (needs pandas)."""
        try:
            import pandas
        except ImportError:
            raise ImportError("run.to_dataframe() needs pandas: pip install pandas") from None
        return pandas.DataFrame(self.records())

    def _repr_html_(self) -> str:
        import networkx as nx

        from pydags.views.report import run_html

        graph = nx.DiGraph()
        graph.add_nodes_from((name, {"mapped": name in self.items}) for name in self.stage_records)
        graph.add_edges_from((d, n) for n, deps in self.dependencies.items() for d in deps)
        return run_html(graph, self.snapshot())

    def timeline(self, ax: Any = None) -> Figure:
        """A Gantt chart of the run: one row per worker, one bar per stage attempt."""
        from pydags.views.timeline import draw_timeline

        return draw_timeline(self.snapshot(), ax=ax)

    # --- the handle ----------------------------------------------------------
    def again(self, *, block: bool = True, show: bool | None = None, **changes: Any) -> Run:
        """Start a new run of the same pipeline the way this one was started (``options``:
        cores or executor, cache, resume, fail_fast, ...), but for ``changes``; returns it,
        as ``Pipeline.start`` does."""
        if self._again is None:
            raise RuntimeError(f"this run of {self.pipeline_name!r} has no pipeline to run "
                               "again")
        options = {**dataclasses.asdict(self.options), **changes}
        return self._again(block=block, show=show, **options)

    def subscribe(self, on_event: Subscriber | None = None, *,
                  on_start: RunSubscriber | None = None,
                  on_finish: RunSubscriber | None = None,
                  on_output: OutputSubscriber | None = None,
                  items: bool = False) -> Run:
        """Call ``on_start(run)`` when the run starts, ``on_event(event)`` on every status
        change, ``on_output(stage, text)`` as a worker stage prints, and ``on_finish(run)``
        once the run has ended, all on the thread running it. With ``items=True``,
        ``on_event`` also hears of every item of a mapped stage (``event.item``)."""
        self._recorder.subscribe(on_event, on_start=on_start, on_finish=on_finish,
                                 on_output=on_output, items=items)
        return self

    def start(self, block: bool = True) -> Run:
        """Start a run made by ``Pipeline.prepare()``; with ``block=True`` wait for its end,
        as ``wait()`` does. Returns the run."""
        __tracebackhide__ = True  # IPython and pytest show the user's frames only
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is None:
            raise RuntimeError(f"this run of {self.pipeline_name!r} was started already; "
                               "prepare() or start() the pipeline again for another")
        if block:
            self._execute(scheduler)
            return self.wait()
        self._thread = threading.Thread(target=copy_context().run,
                                        args=(self._execute, scheduler),
                                        name=f"pydags-{self.pipeline_name}", daemon=True)
        self._thread.start()
        return self

    def _execute(self, scheduler: Scheduler) -> None:
        # what it raises, the recorder keeps for wait() to raise
        with contextlib.suppress(BaseException), older_objects_frozen():
            scheduler.execute(self._recorder, self._cancel)

    def done(self) -> bool:
        """True when the run has ended."""
        return self._recorder.finished.is_set()

    def cancel(self) -> None:
        """Stop the run: queued stages become CANCELLED, running ones are stopped."""
        self._cancel.set()

    @property
    def cancel_requested(self) -> bool:
        """True once ``cancel()`` was called."""
        return self._cancel.is_set()

    def wait(self, timeout: float | None = None) -> Run:
        """Block until the run ends; raises ``PipelineError`` as ``start()`` would."""
        __tracebackhide__ = True  # IPython and pytest show the user's frames only
        if self._scheduler is not None:
            raise RuntimeError(f"this run of {self.pipeline_name!r} was prepared but not "
                               "started; call run.start()")
        try:
            if not self._recorder.finished.wait(timeout):
                raise TimeoutError(f"the run of {self.pipeline_name!r} is still going")
        except KeyboardInterrupt:
            self.cancel()
            self._recorder.finished.wait()
            raise
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        if self._recorder.interrupted is not None:
            raise self._recorder.interrupted
        if self.raise_on_error:
            self.raise_for_failures()
        return self

    def raise_for_failures(self) -> None:
        """Raise ``PipelineError`` if a stage failed."""
        __tracebackhide__ = True  # IPython and pytest show the user's frames only
        from pydags.errors import PipelineError

        failed = self.failed()
        if failed:
            first = self.stage_records[failed[0]].error
            cause = first.exception if first is not None else None
            raise PipelineError(self, failed) from cause

    def __repr__(self) -> str:
        counts = ", ".join(f"{n} {s.value}" for s, n in self.counts().items() if n)
        state = ("finished" if self.done() else "not started" if self._scheduler is not None
                 else "running")
        named = f"; id {self.id}" if self.id else ""
        return f"<Run of {self.pipeline_name!r}, {state}: {counts}{named}>"

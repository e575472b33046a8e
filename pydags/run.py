"""A run of a pipeline: statuses, results, errors, timings, and the handle to wait or cancel."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
import warnings
import weakref
from collections.abc import Callable
from contextvars import copy_context
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from pydags.executors.attempt import OUTPUT_LIMIT
from pydags.items import CODE, Items
from pydags.mapping import ranges, succeeded
from pydags.protocol import Outcome, StageError
from pydags.results import Results
from pydags.status import StageStatus

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from pydags.executors.batch import BatchResult
    from pydags.pipeline import Pipeline
    from pydags.scheduler import Scheduler


class Event(NamedTuple):
    """A stage's status changed (or, with ``item``, that of one item of a mapped stage):
    what the scheduler tells its subscribers."""

    stage: str
    status: StageStatus
    time: float
    attempt: int = 1
    worker: str | None = None
    error: StageError | None = None
    item: int | None = None


@dataclass(slots=True)
class Attempt:
    """One try of a stage on one worker."""

    number: int
    worker: str
    start: float
    end: float | None = None
    status: StageStatus = StageStatus.RUNNING
    error: str | None = None


@dataclass(slots=True)
class StageRecord:
    """Everything a run knows about one stage."""

    name: str
    status: StageStatus = StageStatus.PENDING
    queued: float | None = None
    start: float | None = None
    end: float | None = None
    worker: str | None = None
    output: str = ""
    error: StageError | None = None
    attempts: list[Attempt] = field(default_factory=list)
    cache: str | None = None  # with cache=True: found, or why it runs again

    @property
    def duration(self) -> float | None:
        """Seconds from the start of the last attempt to its end."""
        if self.start is None or self.end is None:
            return None
        return self.end - self.start


@dataclass(frozen=True)
class RunOptions:
    """How a run was started: the options of ``Pipeline.start`` that ``Run.again`` reuses."""

    num_cores: int = 1
    executor: Any = None
    raise_on_error: bool = True
    fail_fast: bool = False
    resume: bool = False
    rerun: tuple[str, ...] = ()
    cache: bool = False


Subscriber = Callable[[Event], None]
RunSubscriber = Callable[["Run"], None]
OutputSubscriber = Callable[[str, str], None]


class Run:
    """A run of a pipeline: its result, and while it goes on, a handle to ``wait`` or ``cancel``.

    ``Pipeline.start()`` returns one; ``Pipeline.prepare()`` returns one not started yet, to
    ``subscribe()`` to before calling ``start()``.
    """

    def __init__(self, pipeline_name: str, stages: list[str], dependencies: dict[str, set[str]],
                 *, scheduler: Scheduler | None = None, raise_on_error: bool = True,
                 options: RunOptions | None = None, pipeline: Pipeline | None = None):
        self.pipeline_name = pipeline_name
        self.options = options or RunOptions(raise_on_error=raise_on_error)
        self._pipeline = weakref.ref(pipeline) if pipeline is not None else None
        self.dependencies = dependencies
        self.stage_records: dict[str, StageRecord] = {name: StageRecord(name) for name in stages}
        self.items: dict[str, Items] = {}  # mapped stage -> its items, once it has them
        self._results = Results()
        self._dropped: str | None = None  # why the results are gone, once they are
        self.left = len(stages)  # stages not finished yet
        self.started: float | None = None
        self.ended: float | None = None
        self.raise_on_error = raise_on_error
        self._scheduler = scheduler
        self._on_start: list[RunSubscriber] = []
        self._on_event: list[Subscriber] = []
        self._on_finish: list[RunSubscriber] = []
        self._on_output: list[OutputSubscriber] = []
        self._on_item: list[Subscriber] = []
        self._finished = threading.Event()
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self._interrupted: BaseException | None = None

    # --- what a user reads -------------------------------------------------
    @property
    def status(self) -> dict[str, StageStatus]:
        """Stage name to its status."""
        return {name: rec.status for name, rec in self.stage_records.items()}

    @property
    def results(self) -> Results:
        """Stage name to its return value (stages DONE or CACHED; for a mapped stage, the
        list of its items' results, in order). A big result may still be in the worker
        process that made it: it comes here the first time it is read."""
        if self._dropped is not None:
            raise RuntimeError(self._dropped)
        return self._results

    def drop_results(self, why: str) -> None:
        """Let the results go (statuses, times and outputs stay); reading them raises
        ``RuntimeError(why)``. Results already let go stay so, with the first reason."""
        if self._dropped is None:
            self._results, self._dropped = Results(), why
            for items in self.items.values():
                items.values = []

    @property
    def errors(self) -> dict[str, str]:
        """Failed stage name to the formatted traceback (or message) of its error."""
        return {n: str(r.error) for n, r in self.stage_records.items() if r.error is not None}

    @property
    def outputs(self) -> dict[str, str]:
        """Stage name to what it printed (stdout and stderr)."""
        return {n: r.output for n, r in self.stage_records.items() if r.output}

    @property
    def durations(self) -> dict[str, float]:
        """Stage name to seconds of its last attempt, for stages that ran."""
        return {n: d for n, r in self.stage_records.items() if (d := r.duration) is not None}

    @property
    def ok(self) -> bool:
        """True when every stage is DONE or CACHED."""
        return all(rec.status.succeeded for rec in self.stage_records.values())

    @property
    def wall_time(self) -> float | None:
        """Seconds from the start of the run to its end (or to now while it runs)."""
        if self.started is None:
            return None
        return (self.ended or time.time()) - self.started

    def counts(self) -> dict[StageStatus, int]:
        """How many stages are in each status."""
        counts = dict.fromkeys(StageStatus, 0)
        for rec in self.stage_records.values():
            counts[rec.status] += 1
        return counts

    def failed(self) -> list[str]:
        """Names of the FAILED stages, in the order they failed."""
        failed = [r for r in self.stage_records.values() if r.status is StageStatus.FAILED]
        return [r.name for r in sorted(failed, key=lambda r: r.end or 0.0)]

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

        from pydags.report import run_html

        graph = nx.DiGraph()
        graph.add_nodes_from((name, {"mapped": name in self.items}) for name in self.stage_records)
        graph.add_edges_from((d, n) for n, deps in self.dependencies.items() for d in deps)
        return run_html(graph, self)

    def timeline(self, ax: Any = None) -> Figure:
        """A Gantt chart of the run: one row per worker, one bar per stage attempt."""
        from pydags.timeline import draw_timeline

        return draw_timeline(self, ax=ax)

    # --- the handle ----------------------------------------------------------
    def again(self, *, block: bool = True, show: bool | None = None, **changes: Any) -> Run:
        """Start a new run of the same pipeline the way this one was started (``options``:
        cores or executor, cache, resume, fail_fast, ...), but for ``changes``; returns it,
        as ``Pipeline.start`` does."""
        pipeline = self._pipeline() if self._pipeline is not None else None
        if pipeline is None:
            raise RuntimeError(f"this run of {self.pipeline_name!r} has no pipeline to run "
                               "again (it was let go)")
        options = {**dataclasses.asdict(self.options), **changes}
        return pipeline.start(block=block, show=show, **options)

    def subscribe(self, on_event: Subscriber | None = None, *,
                  on_start: RunSubscriber | None = None,
                  on_finish: RunSubscriber | None = None,
                  on_output: OutputSubscriber | None = None,
                  items: bool = False) -> Run:
        """Call ``on_start(run)`` when the run starts, ``on_event(event)`` on every status
        change, ``on_output(stage, text)`` as a worker stage prints, and ``on_finish(run)``
        once the run has ended, all on the thread running it. With ``items=True``,
        ``on_event`` also hears of every item of a mapped stage (``event.item``)."""
        for hooks, hook in ((self._on_start, on_start), (self._on_event, on_event),
                            (self._on_finish, on_finish), (self._on_output, on_output)):
            if hook is not None:
                hooks.append(hook)
        if items and on_event is not None:
            self._on_item.append(on_event)
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
        with contextlib.suppress(BaseException):  # kept by mark_finished for wait() to raise
            scheduler.execute(self)

    def done(self) -> bool:
        """True when the run has ended."""
        return self._finished.is_set()

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
            if not self._finished.wait(timeout):
                raise TimeoutError(f"the run of {self.pipeline_name!r} is still going")
        except KeyboardInterrupt:
            self.cancel()
            self._finished.wait()
            raise
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        if self._interrupted is not None:
            raise self._interrupted
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
        return f"<Run of {self.pipeline_name!r}, {state}: {counts}>"

    # --- writing: for the scheduler only (as Future.set_result is for executors) ----------
    def mark_started(self) -> None:
        """The run begins: tell the ``on_start`` subscribers."""
        self.started = time.time()
        self._notify(self._on_start, self)

    def attempt_started(self, name: str, attempt: int, worker: str, when: float) -> None:
        """An attempt of stage ``name`` began on ``worker``."""
        record = self.stage_records[name]
        record.attempts.append(Attempt(attempt, worker, when))
        record.start, record.end, record.worker = when, None, worker
        record.output = ""

    def printed(self, name: str, text: str, *, keep: bool = True) -> None:
        """Stage ``name``, still running, printed ``text`` (kept with its output unless
        ``keep`` is False: a batch of items keeps its output when it ends)."""
        record = self.stage_records[name]
        if keep:
            record.output = (record.output + text)[-OUTPUT_LIMIT:]
        for subscriber in self._on_output:
            try:
                subscriber(name, text)
            except Exception as exc:  # a broken display must not break the run
                warnings.warn(f"pydags subscriber {subscriber!r} failed: {exc!r}", stacklevel=2)

    def attempt_ended(self, outcome: Outcome) -> None:
        """An attempt ended: keep its times, worker, output, error and result."""
        record = self.stage_records[outcome.name]
        if not record.attempts or record.attempts[-1].number != outcome.attempt:
            record.attempts.append(Attempt(outcome.attempt, outcome.worker, outcome.start))
        attempt = record.attempts[-1]
        attempt.start, attempt.end = outcome.start or attempt.start, outcome.end
        attempt.worker = outcome.worker or attempt.worker
        attempt.status = StageStatus.DONE if outcome.ok else StageStatus.FAILED
        attempt.error = None if outcome.error is None else outcome.error.message
        record.start, record.end, record.worker = attempt.start, attempt.end, attempt.worker
        record.output = outcome.output
        if outcome.ok:
            self._results[outcome.name] = outcome.value

    def set_result(self, name: str, value: Any) -> None:
        """Stage ``name``'s result is known without running it (resumed or cached)."""
        self._results[name] = value

    def set_status(self, name: str, status: StageStatus, *, attempt: int = 1,
                   worker: str | None = None, error: StageError | None = None) -> Event:
        """Stage ``name`` has a new status: record it, then tell the subscribers."""
        now = time.time()
        record = self.stage_records[name]
        if status.finished and not record.status.finished:
            self.left -= 1
        elif record.status.finished and not status.finished:
            self.left += 1  # it runs again: its result was lost
        record.status = status
        if status is StageStatus.QUEUED and record.queued is None:
            record.queued = now
        if error is not None:
            record.error = error
        if status.finished and name in self.items and record.start is not None:
            record.end = now  # a map ends with its last item
        if status is StageStatus.CANCELLED and record.attempts and record.attempts[-1].end is None:
            record.attempts[-1].end, record.attempts[-1].status = now, status
            record.start, record.end = record.attempts[-1].start, now
        event = Event(name, status, now, attempt, worker, error)
        self._notify(self._on_event, event)
        return event

    def mapped(self, name: str, items: Items) -> None:
        """Mapped stage ``name`` has its items (its arguments are known)."""
        self.items[name] = items

    def items_known(self, name: str, known: dict[int, Any]) -> None:
        """Items of mapped stage ``name`` whose results are known already (resumed,
        cached): CACHED."""
        items = self.items[name]
        for i, value in known.items():
            items.values[i] = value
        for part in ranges(sorted(known)):
            items.set(part, StageStatus.CACHED)
            self._item_events(name, part, StageStatus.CACHED, time.time(), "")

    def items_waiting(self, name: str, batch: range, status: StageStatus) -> None:
        """Items ``batch`` of mapped stage ``name`` are handed out (QUEUED), or wait to be
        again (PENDING)."""
        self.items[name].set(batch, status)

    def items_started(self, name: str, batch: range, worker: str, when: float) -> None:
        """Items ``batch`` of mapped stage ``name`` began on ``worker``."""
        self.items[name].started(batch, worker, when)
        record = self.stage_records[name]
        if record.start is None:
            record.start = when
        self._item_events(name, batch, StageStatus.RUNNING, when, worker)

    def items_ended(self, name: str, batch: range, result: BatchResult, worker: str,
                    output: str) -> None:
        """Items ``batch`` ran: those without an error in ``result`` are DONE."""
        items = self.items[name]
        items.ended(batch, result, worker)
        for part in succeeded(batch, result):  # the failed ones: as the scheduler decides
            items.set(part, StageStatus.DONE)
        record = self.stage_records[name]
        if output:
            record.output = (record.output + output)[-OUTPUT_LIMIT:]
        if self._on_item:
            for i in (i for part in succeeded(batch, result) for i in part):
                self._notify(self._on_item, Event(name, StageStatus.DONE, items.end[i],
                                                  worker=worker, item=i))

    def items_tried(self, name: str, batch: range, start: float, end: float,
                    worker: str) -> None:
        """Items ``batch`` went to ``worker`` as one job, which failed as a whole (a
        timeout, a crash): the scheduler gives each item its status next."""
        self.items[name].tried(batch, start, end, worker)

    def item_status(self, name: str, item: int, status: StageStatus, *,
                    error: StageError | None = None) -> None:
        """Item ``item`` of mapped stage ``name`` has a new status (``error``: why its
        attempt failed; RETRYING: it will have another)."""
        items = self.items[name]
        if error is not None:
            items.failed_attempt(item, error)
        if status is StageStatus.RETRYING:
            items.attempt[item] += 1
        items.set(range(item, item + 1), status)
        if self._on_item:
            self._notify(self._on_item, Event(name, status, time.time(),
                                              items.attempt[item], error=error, item=item))

    def items_finished(self, name: str, status: StageStatus) -> None:
        """The items of mapped stage ``name`` not finished yet never will: ``status``."""
        items = self.items.get(name)
        if items is None or not items.left:
            return
        unfinished = {CODE[s] for s in StageStatus if not s.finished}
        now = time.time()
        for part in ranges(i for i, code in enumerate(items.status) if code in unfinished):
            items.set(part, status)
            for i in part:
                if items.start[i] and not items.end[i]:
                    items.end[i] = now  # it was running
            self._item_events(name, part, status, now, "")

    def _item_events(self, name: str, batch: range, status: StageStatus, when: float,
                     worker: str) -> None:
        if self._on_item:
            for i in batch:
                self._notify(self._on_item, Event(name, status, when, worker=worker, item=i))

    def mark_finished(self, interrupted: BaseException | None = None) -> None:
        """The run has ended (``interrupted`` by Ctrl-C or an error of pydags' own, if given):
        tell the ``on_finish`` subscribers, then wake whoever waits."""
        self.ended = time.time()
        self._interrupted = interrupted
        self._notify(self._on_finish, self)
        for hooks in (self._on_start, self._on_event, self._on_finish, self._on_output,
                      self._on_item):  # they often hold the run: let it go with its results
            hooks.clear()
        self._finished.set()

    def _notify(self, subscribers: list[Callable[[Any], None]], news: Any) -> None:
        for subscriber in subscribers:
            try:
                subscriber(news)
            except Exception as exc:  # a broken display must not break the run
                warnings.warn(f"pydags subscriber {subscriber!r} failed: {exc!r}", stacklevel=3)

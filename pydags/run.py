"""A run of a pipeline: statuses, results, errors, timings, and the handle to wait or cancel."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from pydags.executors.base import StageError
from pydags.status import StageStatus

if TYPE_CHECKING:
    from matplotlib.figure import Figure


class Event(NamedTuple):
    """A stage's status changed: what the scheduler tells its subscribers."""

    stage: str
    status: StageStatus
    time: float
    attempt: int = 1
    worker: str | None = None
    error: StageError | None = None


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

    @property
    def duration(self) -> float | None:
        """Seconds from the start of the last attempt to its end."""
        if self.start is None or self.end is None:
            return None
        return self.end - self.start


Subscriber = Callable[[Event], None]


class Run:
    """The outcome of ``Pipeline.start()``; while it runs, a handle to ``wait`` or ``cancel``."""

    def __init__(self, pipeline_name: str, stages: list[str], dependencies: dict[str, set[str]]):
        self.pipeline_name = pipeline_name
        self.dependencies = dependencies
        self.stage_records: dict[str, StageRecord] = {name: StageRecord(name) for name in stages}
        self.results: dict[str, Any] = {}
        self.left = len(stages)  # stages not finished yet; counted down by the scheduler
        self.started: float | None = None
        self.ended: float | None = None
        self._subscribers: list[Subscriber] = []
        self._finished = threading.Event()
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self._raise_on_error = True
        self._interrupted: BaseException | None = None

    # --- what a user reads -------------------------------------------------
    @property
    def status(self) -> dict[str, StageStatus]:
        """Stage name to its status."""
        return {name: rec.status for name, rec in self.stage_records.items()}

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
        """One plain dict per stage attempt: stage, attempt, worker, status, times, error."""
        rows = []
        for rec in self.stage_records.values():
            for attempt in rec.attempts:
                rows.append(dict(stage=rec.name, attempt=attempt.number, worker=attempt.worker,
                                 status=attempt.status.value, queued=rec.queued,
                                 start=attempt.start, end=attempt.end, error=attempt.error))
        return rows

    def to_dataframe(self) -> Any:
        """``records()`` as a pandas DataFrame (needs pandas)."""
        try:
            import pandas
        except ImportError:
            raise ImportError("run.to_dataframe() needs pandas: pip install pandas") from None
        return pandas.DataFrame(self.records())

    def timeline(self, ax: Any = None) -> Figure:
        """A Gantt chart of the run: one row per worker, one bar per stage attempt."""
        from pydags.timeline import draw_timeline

        return draw_timeline(self, ax=ax)

    # --- the handle ----------------------------------------------------------
    def subscribe(self, subscriber: Subscriber) -> None:
        """Call ``subscriber(event)`` on every status change from now on."""
        self._subscribers.append(subscriber)

    def done(self) -> bool:
        """True when the run has ended."""
        return self._finished.is_set()

    def cancel(self) -> None:
        """Stop the run: queued stages become CANCELLED, running ones are stopped."""
        self._cancel.set()

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def wait(self, timeout: float | None = None) -> Run:
        """Block until the run ends; raises ``PipelineError`` as ``start()`` would."""
        try:
            if not self._finished.wait(timeout):
                raise TimeoutError(f"the run of {self.pipeline_name!r} is still going")
        except KeyboardInterrupt:
            self.cancel()
            self._finished.wait()
            raise
        if self._thread is not None:
            self._thread.join()
        if self._interrupted is not None:
            raise self._interrupted
        if self._raise_on_error:
            self.raise_for_failures()
        return self

    def raise_for_failures(self) -> None:
        """Raise ``PipelineError`` if a stage failed."""
        from pydags.errors import PipelineError

        failed = self.failed()
        if failed:
            first = self.stage_records[failed[0]].error
            cause = first.exception if first is not None else None
            raise PipelineError(self, failed) from cause

    def __repr__(self) -> str:
        counts = ", ".join(f"{n} {s.value}" for s, n in self.counts().items() if n)
        state = "finished" if self.done() else "running"
        return f"<Run of {self.pipeline_name!r}, {state}: {counts}>"

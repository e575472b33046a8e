"""The recorder: the one writer of what a run knows — stage records, item arrays, outputs,
results — under a lock, and the one place its news fans out to subscribers (the live view,
the terminal display, the cache, tests) and front ends take consistent snapshots from.

Only the scheduler's loop writes, on the one thread that runs it. Subscribers are called on
that thread after each write, outside the lock; a reader on any other thread takes a
``snapshot()``, a copy made under the lock.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydags.executors.attempt import OUTPUT_LIMIT
from pydags.executors.batch import BatchResult
from pydags.items import Items
from pydags.protocol import Outcome, StageError
from pydags.records import Attempt, Event, Reading, StageRecord
from pydags.results import Results
from pydags.status import StageStatus

Subscriber = Callable[[Event], None]
RunSubscriber = Callable[[Any], None]  # called with the run
OutputSubscriber = Callable[[str, str], None]


@dataclass(frozen=True)
class Snapshot(Reading):
    """A run as it was at one moment: copies of its records and items, safe to read on any
    thread while the run goes on. What every front end draws from."""

    pipeline_name: str
    dependencies: dict[str, set[str]]
    stage_records: dict[str, StageRecord]
    items: dict[str, Items]
    results: Results  # the run's own (not copied); empty once it let them go
    started: float | None
    ended: float | None

    def _now(self) -> float:
        return self.taken

    taken: float = 0.0  # when this was taken


class Recorder:
    """Everything one run knows, written as it goes."""

    def __init__(self, pipeline: str, stages: list[str], dependencies: dict[str, set[str]],
                 notes: dict[str, str] | None = None):
        self.pipeline, self.dependencies = pipeline, dependencies
        self.lock = threading.Lock()
        self.records = {name: StageRecord(name) for name in stages}
        for name, note in (notes or {}).items():  # with the cache: found, or why it runs
            self.records[name].cache = note
        self.items: dict[str, Items] = {}  # mapped stage -> its items, once it has them
        self.results = Results()
        self.left = len(stages)  # stages not finished yet
        self.started: float | None = None
        self.ended: float | None = None
        self.interrupted: BaseException | None = None  # by Ctrl-C or an error of pydags'
        self.finished = threading.Event()
        self.changed: set[str] = set()  # stages whose status changed, for the journal to take
        self.heard = 0.0  # when a stage's status last changed
        self.run: Callable[[], Any] = lambda: None  # the handle (weakly) that start and
        # finish subscribers are called with
        self._on_start: list[RunSubscriber] = []
        self._on_event: list[Subscriber] = []
        self._on_finish: list[RunSubscriber] = []
        self._on_output: list[OutputSubscriber] = []
        self._on_item: list[Subscriber] = []

    def subscribe(self, on_event: Subscriber | None = None, *,
                  on_start: RunSubscriber | None = None,
                  on_finish: RunSubscriber | None = None,
                  on_output: OutputSubscriber | None = None, items: bool = False) -> None:
        """See ``Run.subscribe``."""
        for hooks, hook in ((self._on_start, on_start), (self._on_event, on_event),
                            (self._on_finish, on_finish), (self._on_output, on_output)):
            if hook is not None:
                hooks.append(hook)
        if items and on_event is not None:
            self._on_item.append(on_event)

    def snapshot(self) -> Snapshot:
        """The run as it is now, copied under the lock."""
        with self.lock:
            return Snapshot(self.pipeline, self.dependencies,
                            {n: r.copy() for n, r in self.records.items()},
                            {n: i.copy() for n, i in self.items.items()},
                            self.results, self.started, self.ended, time.time())

    # --- the run --------------------------------------------------------------------------
    def mark_started(self) -> None:
        """The run begins: tell the ``on_start`` subscribers."""
        self.started = self.heard = time.time()  # busy from the start: stages go out
        self._notify(self._on_start, self.run())

    def mark_finished(self, interrupted: BaseException | None = None) -> None:
        """The run has ended: tell the ``on_finish`` subscribers, then wake whoever waits."""
        self.ended = time.time()
        self.interrupted = interrupted
        self._notify(self._on_finish, self.run())
        for hooks in (self._on_start, self._on_event, self._on_finish, self._on_output,
                      self._on_item):  # they often hold the run: let it go with its results
            hooks.clear()
        self.finished.set()

    def drop_results(self) -> None:
        """Let the results go (statuses, times and outputs stay)."""
        with self.lock:
            self.results = Results()
            for items in self.items.values():
                items.values = []

    # --- stages ---------------------------------------------------------------------------
    def known(self, name: str, value: Any) -> None:
        """Stage ``name``'s result is known without running it (resumed or cached)."""
        with self.lock:
            self.results[name] = value

    def attempt_started(self, name: str, attempt: int, worker: str, when: float) -> None:
        """An attempt of stage ``name`` began on ``worker``."""
        with self.lock:
            record = self.records[name]
            record.attempts.append(Attempt(attempt, worker, when))
            record.start, record.end, record.worker = when, None, worker
            record.output = ""

    def printed(self, name: str, text: str, *, keep: bool = True) -> None:
        """Stage ``name``, still running, printed ``text`` (kept with its output unless
        ``keep`` is False: a batch of items keeps its output when it ends)."""
        if keep:
            with self.lock:
                record = self.records[name]
                record.output = (record.output + text)[-OUTPUT_LIMIT:]
        for subscriber in self._on_output:
            try:
                subscriber(name, text)
            except Exception as exc:  # a broken display must not break the run
                warnings.warn(f"pydags subscriber {subscriber!r} failed: {exc!r}", stacklevel=2)

    def attempt_ended(self, outcome: Outcome) -> None:
        """An attempt ended: keep its times, worker, output, error and result."""
        with self.lock:
            record = self.records[outcome.name]
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
                self.results[outcome.name] = outcome.value

    def status(self, name: str, status: StageStatus, *, attempt: int = 1,
               worker: str | None = None, error: StageError | None = None) -> None:
        """Stage ``name`` has a new status: record it, then tell the subscribers."""
        now, finished = time.time(), status.finished
        with self.lock:
            record = self.records[name]
            was = record.status.finished
            if finished and not was:
                self.left -= 1
            elif was and not finished:
                self.left += 1  # it runs again: its result was lost
            record.status = status
            self.changed.add(name)
            self.heard = now
            if status is StageStatus.QUEUED and record.queued is None:
                record.queued = now
            if error is not None:
                record.error = error
            if finished and name in self.items and record.start is not None:
                record.end = now  # a map ends with its last item
            if status is StageStatus.CANCELLED and record.attempts \
                    and record.attempts[-1].end is None:
                last = record.attempts[-1]
                last.end, last.status = now, status
                record.start, record.end = last.start, now
        self._notify(self._on_event, Event(name, status, now, attempt, worker, error))

    def replay(self, records: list[StageRecord], items: dict[str, Items]) -> None:
        """A run followed from the journal (another process runs it): these records and
        maps are as it wrote them; the subscribers hear of each status that changed."""
        now, changed = time.time(), []
        with self.lock:
            for record in records:
                was = self.records.get(record.name)
                if was is None or was.status is not record.status:
                    changed.append(record)
                self.records[record.name] = record
            self.items.update(items)
            self.left = sum(not r.status.finished for r in self.records.values())
        for record in changed:
            attempt = record.attempts[-1].number if record.attempts else 1
            self._notify(self._on_event, Event(record.name, record.status, now, attempt,
                                               record.worker, record.error))

    # --- items of mapped stages -----------------------------------------------------------
    def mapped(self, name: str, values: list[Any]) -> None:
        """Mapped stage ``name`` has its items: as many as ``values`` (where their results
        go, shared with the loop that works with them)."""
        with self.lock:
            self.items[name] = Items(len(values), values)

    def items_started(self, name: str, batch: range, worker: str, when: float) -> None:
        """Items ``batch`` of mapped stage ``name`` began on ``worker``."""
        with self.lock:
            self.items[name].started(batch, worker, when)
            record = self.records[name]
            if record.start is None:
                record.start = when

    def items_ended(self, name: str, batch: range, result: BatchResult, worker: str,
                    output: str) -> None:
        """Items ``batch`` ran on ``worker``: their results, times and output."""
        with self.lock:
            self.items[name].ended(batch, result, worker)
            if output:
                record = self.records[name]
                record.output = (record.output + output)[-OUTPUT_LIMIT:]

    def items_tried(self, name: str, batch: range, start: float, end: float, worker: str,
                    output: str) -> None:
        """Items ``batch`` went to ``worker`` as one job, which failed as a whole (a
        timeout, a crash)."""
        with self.lock:
            self.items[name].tried(batch, start, end, worker)
        if output:
            self.printed(name, output)

    def item_status(self, name: str, batch: range, status: StageStatus,
                    error: StageError | None = None) -> None:
        """Items ``batch`` of mapped stage ``name`` have a new status (``error``: why the
        attempt of each failed; RETRYING: each will have another)."""
        now = time.time()
        with self.lock:
            items = self.items[name]
            if error is not None:
                for i in batch:
                    items.failed_attempt(i, error)
                    if status is StageStatus.RETRYING:
                        items.attempt[i] += 1
            if status is StageStatus.PENDING:  # to go again: not begun
                for i in batch:
                    items.start[i] = items.end[i] = 0.0
            elif status.finished and status is not StageStatus.DONE:
                for i in batch:
                    if items.start[i] and not items.end[i]:
                        items.end[i] = now  # it was running
            items.set(batch, status)
            if not self._on_item:
                return
            events = [Event(name, status, items.end[i] if status is StageStatus.DONE else now,
                            items.attempt[i], items.workers[items.worker[i]] or None, error,
                            item=i) for i in batch]
        for event in events:
            self._notify(self._on_item, event)

    def _notify(self, subscribers: list[Callable[[Any], None]], news: Any) -> None:
        for subscriber in subscribers:
            try:
                subscriber(news)
            except Exception as exc:  # a broken display must not break the run
                warnings.warn(f"pydags subscriber {subscriber!r} failed: {exc!r}", stacklevel=3)

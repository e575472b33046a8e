"""What a stage attempt does on a Dask worker: run, and report to the client.

A task tells the client how it ended through Dask's event topics: its failure, or its
result when small, comes with that report. A worker process's reports travel together
(``Messenger``): each event costs the worker, the scheduler and the client a message
apiece, more than a trivial stage costs to run.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from typing import Any

import cloudpickle
from dask._task_spec import Task
from distributed import get_worker

from pydags.executors.attempt import execute
from pydags.executors.batch import BatchResult, ItemBatch, place, portable, sendable
from pydags.protocol import ErrorKind, Job, Outcome, StageError
from pydags.results import preview

SMALL = 64 * 1024  # bytes of a pickled result sent to the client with its report
STARTED_AFTER = 0.02  # seconds a stage runs before its start is reported on its own
LINGER = 0.02  # seconds an end report may wait for others to go with it


class StageFailed(Exception):
    """A stage attempt failed on a Dask worker (its report says how). Dask gives the same
    exception to the tasks downstream, which ``key`` tells apart."""

    def __init__(self, key: str, error: StageError):
        super().__init__(error.message)
        self.key, self.error = key, error

    def __reduce__(self):
        return (StageFailed, (self.key, self.error))


class StageTask(Task):
    """The Dask task of one stage attempt. Dask tokenizes every task of a graph it is
    given, walking its arguments; the task's key, unique already, stands for it."""

    __slots__ = ()

    def __dask_tokenize__(self) -> str:
        return self.key


class Attempt:
    """What the Dask task of one stage attempt calls, with its keyword and positional
    arguments (Dask puts the upstream results in place); its start and end reported as
    events on ``topic``."""

    __slots__ = ("job", "key", "topic")

    def __init__(self, key: str, topic: str, job: Job):
        self.key, self.topic, self.job = key, topic, job

    def __reduce__(self) -> tuple:  # what the worker needs, as a tuple: a dataclass
        job = self.job  # pickles several times slower
        return _attempt, (self.key, self.topic, job.name, job.function, job.attempt,
                          job.timeout)

    def __call__(self, kwargs: dict, *args: Any) -> Any:
        return run_on_worker(self.topic, self.key, self.job, args, kwargs)


def _attempt(key: str, topic: str, name: str, function: Any, attempt: int,
             timeout: float | None) -> Attempt:
    return Attempt(key, topic, Job(name, function, (), {}, attempt, timeout))


class Messenger:
    """A Dask worker's reports to the client, sent as few events as keep them timely:
    - a stage's start, only once it has run ``STARTED_AFTER`` seconds: one that ends sooner
      says when it started in its end report, and the client makes its start up from that;
    - end reports at once after a quiet spell, else together with those that end within
      ``LINGER`` seconds of the last send.

    A thread sends what falls due while the stages run: it sleeps until the next report is
    due and is woken only when that comes sooner (a timer per stage would cost more than
    the events it saves)."""

    def __init__(self, worker: Any):
        self.worker = worker
        self._running: dict[str, tuple[float, str, dict]] = {}  # key -> due, topic, report
        self._outbox: dict[str, list[dict]] = {}  # topic -> reports not sent yet
        self._sent = -math.inf  # when reports were last sent (monotonic)
        self._wakes_at = math.inf  # when the thread next looks
        self._wake = threading.Condition()
        threading.Thread(target=self._serve, name="pydags-messenger", daemon=True).start()

    def started(self, key: str, topic: str, report: dict) -> None:
        with self._wake:
            due = time.monotonic() + STARTED_AFTER
            self._running[key] = (due, topic, report)
            self._rouse(due)

    def ended(self, key: str, topic: str, report: dict) -> None:
        with self._wake:
            report["announced"] = self._running.pop(key, None) is None
            self._outbox.setdefault(topic, []).append(report)
            now = time.monotonic()
            if now - self._sent >= LINGER:
                self._send(now)
            else:
                self._rouse(self._sent + LINGER)

    def _rouse(self, when: float) -> None:
        if when < self._wakes_at:
            self._wakes_at = when
            self._wake.notify()

    def _send(self, now: float) -> None:
        for topic, reports in self._outbox.items():
            self.worker.log_event(topic, reports)
        self._outbox = {}
        self._sent = now

    def _serve(self) -> None:
        with self._wake:
            while True:
                now = time.monotonic()
                for key, (due, topic, report) in list(self._running.items()):  # oldest first
                    if due > now:
                        break
                    del self._running[key]
                    self._outbox.setdefault(topic, []).append(report)
                if self._outbox and now - self._sent >= LINGER:
                    self._send(now)
                running = next(iter(self._running.values()), None)
                self._wakes_at = min(running[0] if running else math.inf,
                                     self._sent + LINGER if self._outbox else math.inf)
                self._wake.wait(None if self._wakes_at == math.inf else self._wakes_at - now)


_messengers: dict[str, Messenger] = {}  # worker address -> its messenger, made by its first stage


def run_on_worker(topic: str, key: str, job: Job, args: tuple, kwargs: dict) -> Any:
    """Run a stage attempt on a Dask worker, its start (if it runs long enough to be news)
    and its end (result or failure) reported as events on ``topic``."""
    worker = get_worker()
    messenger = _messengers.get(worker.address)
    if messenger is None or messenger.worker is not worker:
        messenger = _messengers[worker.address] = Messenger(worker)
    messenger.started(key, topic, dict(kind="started", key=key, name=job.name,
                                       attempt=job.attempt, worker=worker.address,
                                       time=time.time()))
    outcome = _with_timeout(dataclasses.replace(job, args=tuple(args), kwargs=kwargs))
    report = dict(kind="ended", key=key, name=job.name, attempt=job.attempt,
                  worker=worker.address, start=outcome.start, end=outcome.end,
                  output=outcome.output, value=None, error=None, preview="")
    if not outcome.ok:
        assert outcome.error is not None
        report["error"] = cloudpickle.dumps(portable(outcome.error))
        messenger.ended(key, topic, report)
        # Dask fails the tasks taking its result too: the scheduler skips their stages
        raise StageFailed(key, dataclasses.replace(outcome.error, exception=None))
    try:  # a small result rides along with the report: no round trip to fetch it
        small = cloudpickle.dumps(outcome.value)
    except Exception:
        small = None  # fetching it through the future gives Dask's own error
        if isinstance(job.function, ItemBatch):  # but only the bad items fail
            sendable(outcome.value, job.function.stage, job.function.first)
            small = cloudpickle.dumps(outcome.value)
    report["value"] = small if small and len(small) <= SMALL else None
    report["preview"] = preview(outcome.value)
    messenger.ended(key, topic, report)
    return outcome.value


def join_items(count: int, parts: list[tuple[int, int, BatchResult]]) -> list[Any]:
    """A map's results in order, from its batches' (later batches, retries, win)."""
    values: list[Any] = [None] * count
    for first, _, result in parts:
        place(values, first, result)
    return values


def take_items(start: int, stop: int, parts: list[tuple[int, int, BatchResult]]) -> list[Any]:
    """The results of items ``start`` to ``stop - 1`` of a map, from its batches'."""
    values: list[Any] = [None] * (stop - start)
    for first, count, result in parts:
        lo, hi = max(first, start), min(first + count, stop)
        window = BatchResult(result.values[lo - first:hi - first],
                             {p - (lo - first): e for p, e in result.errors.items()
                              if lo <= first + p < hi}, result.starts, result.end)
        place(values, lo - start, window)
    return values


def _with_timeout(job: Job) -> Outcome:
    if job.timeout is None:
        return execute(job)
    box: list[Outcome] = []
    thread = threading.Thread(target=lambda: box.append(execute(job)), daemon=True)
    start = time.time()
    thread.start()
    thread.join(job.timeout)
    if box:
        return box[0]
    return Outcome(job.name, job.attempt, False, start=start, end=time.time(), error=StageError(
        ErrorKind.TIMEOUT, f"stage {job.name!r} timed out after {job.timeout:g} s on Dask (the "
        "worker cannot stop it: its thread runs on and its result is dropped)"))

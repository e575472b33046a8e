"""Dynamic scheduling of a pipeline's stages on an executor, reported as events.

Algorithm
    A stage becomes ready the moment its last dependency succeeds (DONE or CACHED), not
    when a whole "level" is done. Ready stages go to the executor while it has free
    capacity; whenever an outcome comes back, the stages it unblocks become ready. A
    failed stage is retried after its delay while it has retries left; once it is
    FAILED for good, everything downstream of it is SKIPPED and independent branches go
    on. Stages whose result is already known (``resume``, ``cache``) start CACHED. An
    *eager* executor (a Dask cluster) instead gets every stage at once, with its upstream
    results as the executor's own handles (futures), and resolves them itself.

State (keyed by stage name; only this module changes it)
    waiting     name -> dependencies that have not succeeded yet
    dependents  name -> stages that wait for it
    ready       heap of (-priority, order, name): dependencies met, not submitted (QUEUED)
    running     stages handed to the executor whose outcome is not back yet
    retry_at    heap of (time, name): failed attempts waiting for their retry delay
    attempts    name -> number of the current attempt
    run.left    how many stages have not reached a final status

Policy
    Critical path first: among ready stages, the one with the most work still below it
    (its longest path to a sink, counting each stage's seconds in the previous run where
    known, else one second) goes first, so long chains start early.

Events
    Every status change is an ``Event`` passed to the run's subscribers (the live widget,
    the terminal display, tests) on the thread that runs the scheduler. The run record is
    updated before subscribers hear of it. Nothing else changes a stage's status.
"""

from __future__ import annotations

import heapq
import time
import warnings
from dataclasses import dataclass
from typing import Any

from pydags.executors.base import Executor, Job, Outcome, StageError, Started
from pydags.run import Attempt, Event, Run
from pydags.stage import Stage, resolve
from pydags.status import StageStatus

POLL_SECONDS = 0.1  # how often a waiting scheduler looks for a cancel request


@dataclass
class Plan:
    """What the scheduler needs from a pipeline: stages, dependencies, priorities."""

    stages: dict[str, Stage]
    dependencies: dict[str, set[str]]
    priority: dict[str, float]


class Scheduler:
    """Runs one plan on one executor, writing every change into ``run``."""

    def __init__(self, plan: Plan, executor: Executor, run: Run, *, fail_fast: bool = False,
                 cached: dict[str, Any] | None = None):
        self.plan, self.executor, self.run, self.fail_fast = plan, executor, run, fail_fast
        self.cached = cached or {}
        self.waiting = {name: set(deps) for name, deps in plan.dependencies.items()}
        self.dependents: dict[str, list[str]] = {name: [] for name in plan.stages}
        for name, deps in plan.dependencies.items():
            for dep in deps:
                self.dependents[dep].append(name)
        self.ready: list[tuple[float, int, str]] = []
        self.running: set[str] = set()
        self.retry_at: list[tuple[float, str]] = []
        self.attempts = dict.fromkeys(plan.stages, 1)
        self._order = 0

    # --- the loop ------------------------------------------------------------
    def execute(self) -> None:
        """Run every stage to a final status. On KeyboardInterrupt: cancel, clean up, re-raise."""
        self.run.started = time.time()
        try:
            self.executor.start()
            self._begin()
            while self.run.left:
                if self.run.cancel_requested:
                    self._cancel_all()
                    break
                self._submit_ready()
                if not self.running:
                    if not self.retry_at:
                        raise RuntimeError("pydags scheduler stalled: no stage can run")
                    time.sleep(max(0.0, min(POLL_SECONDS, self.retry_at[0][0] - time.time())))
                else:
                    for news in self.executor.poll(POLL_SECONDS):
                        self._handle(news)
                self._release_retries()
            self.run.ended = time.time()
        except BaseException:
            self._cancel_all()
            raise
        finally:
            self.executor.shutdown()
            self.run.ended = self.run.ended or time.time()

    def _begin(self) -> None:
        for name in self.plan.stages:
            if name in self.cached:
                self.run.results[name] = self.cached[name]
                self._finish(name, StageStatus.CACHED)
        for waiting in self.waiting.values():
            waiting.difference_update(self.cached)
        if self.executor.eager:
            self._submit_all()
        else:
            for name, deps in self.waiting.items():
                if not deps and name not in self.cached:
                    self._make_ready(name)

    # --- handing out work ----------------------------------------------------
    def _make_ready(self, name: str) -> None:
        self._order += 1
        heapq.heappush(self.ready, (-self.plan.priority.get(name, 0.0), self._order, name))
        self._emit(name, StageStatus.QUEUED)

    def _submit_ready(self) -> None:
        while self.ready and len(self.running) < self.executor.capacity:
            _, _, name = heapq.heappop(self.ready)
            self.running.add(name)
            self.executor.submit(self._job(name, self.run.results))

    def _submit_all(self) -> None:
        results = dict(self.run.results)
        for name in self.plan.stages:  # stages are kept in topological order
            if name not in self.cached:
                self._emit(name, StageStatus.QUEUED)
                self.running.add(name)
                job = self._job(name, results)
                job.upstream = tuple(d for d in self.plan.dependencies[name]
                                     if d not in self.cached)
                self.executor.submit(job)
                results[name] = self.executor.handle(name)

    def _job(self, name: str, results: dict[str, Any]) -> Job:
        stage = self.plan.stages[name]
        args, kwargs = stage.arguments
        return Job(name, stage.callable(), resolve(args, results), resolve(kwargs, results),
                   attempt=self.attempts[name], timeout=stage.timeout,
                   retries=stage.retries, retry_delay=stage.retry_delay)

    def _release_retries(self) -> None:
        now = time.time()
        while self.retry_at and self.retry_at[0][0] <= now:
            _, name = heapq.heappop(self.retry_at)
            self._make_ready(name)

    # --- news from the executor ---------------------------------------------
    def _handle(self, news: Started | Outcome) -> None:
        if news.name not in self.running:
            return  # cancelled or skipped meanwhile
        record = self.run.stage_records[news.name]
        if isinstance(news, Started):
            if news.attempt > 1 and self.executor.eager:
                self._emit(news.name, StageStatus.RETRYING, attempt=news.attempt - 1)
            record.attempts.append(Attempt(news.attempt, news.worker, news.time))
            record.start, record.end, record.worker = news.time, None, news.worker
            self._emit(news.name, StageStatus.RUNNING, attempt=news.attempt, worker=news.worker)
            return
        self.running.discard(news.name)
        if not record.attempts or record.attempts[-1].number != news.attempt:
            record.attempts.append(Attempt(news.attempt, news.worker, news.start))
        attempt = record.attempts[-1]
        attempt.start, attempt.end = news.start or attempt.start, news.end
        attempt.worker = news.worker or attempt.worker
        record.start, record.end, record.worker = attempt.start, attempt.end, attempt.worker
        record.output = news.output
        if news.ok:
            attempt.status = StageStatus.DONE
            self.run.results[news.name] = news.value
            self._finish(news.name, StageStatus.DONE)
            self._release_dependents(news.name)
            return
        assert news.error is not None
        attempt.status, attempt.error = StageStatus.FAILED, news.error.message
        stage = self.plan.stages[news.name]
        if not self.executor.eager and news.attempt <= stage.retries and news.error.kind != "send":
            self.attempts[news.name] += 1
            heapq.heappush(self.retry_at, (time.time() + stage.retry_delay, news.name))
            self._emit(news.name, StageStatus.RETRYING, attempt=news.attempt, error=news.error)
            return
        self._fail(news.name, _with_attempts(news.error, record.attempts))

    def _release_dependents(self, name: str) -> None:
        for dependent in self.dependents[name]:
            waiting = self.waiting[dependent]
            waiting.discard(name)
            if not waiting and not self.executor.eager and dependent not in self.cached:
                self._make_ready(dependent)

    def _fail(self, name: str, error: StageError) -> None:
        self._finish(name, StageStatus.FAILED, error=error)
        below, stack = [], list(self.dependents[name])
        while stack:
            dependent = stack.pop()
            if not self.run.stage_records[dependent].status.finished:
                self._finish(dependent, StageStatus.SKIPPED)
                below.append(dependent)
                stack.extend(self.dependents[dependent])
        if below and self.executor.eager:
            self.executor.cancel(set(below))
        if self.fail_fast:
            self._cancel_all()

    def _cancel_all(self) -> None:
        self.ready.clear()
        self.retry_at.clear()
        if self.running:
            self.executor.cancel(set(self.running))
        for name, record in self.run.stage_records.items():
            if not record.status.finished:
                self._finish(name, StageStatus.CANCELLED)

    # --- the one place a status changes ---------------------------------------
    def _finish(self, name: str, status: StageStatus, error: StageError | None = None) -> None:
        self.running.discard(name)
        self.run.left -= 1
        self._emit(name, status, error=error)

    def _emit(self, name: str, status: StageStatus, *, attempt: int | None = None,
              worker: str | None = None, error: StageError | None = None) -> None:
        now = time.time()
        record = self.run.stage_records[name]
        record.status = status
        if status is StageStatus.QUEUED and record.queued is None:
            record.queued = now
        if error is not None:
            record.error = error
        if status is StageStatus.CANCELLED and record.attempts and record.attempts[-1].end is None:
            record.attempts[-1].end, record.attempts[-1].status = now, status
            record.start, record.end = record.attempts[-1].start, now
        event = Event(name, status, now, attempt or self.attempts[name], worker, error)
        for subscriber in self.run._subscribers:
            try:
                subscriber(event)
            except Exception as exc:  # a broken display must not break the run
                warnings.warn(f"pydags event subscriber {subscriber!r} failed: {exc!r}",
                              stacklevel=2)


def _with_attempts(error: StageError, attempts: list[Attempt]) -> StageError:
    """Keep a one-line summary of every earlier attempt in the final error."""
    if len(attempts) < 2:
        return error
    lines = [f"attempt {a.number} on {a.worker}: {a.error}" for a in attempts]
    summary = f"failed after {len(attempts)} attempts:\n  " + "\n  ".join(lines)
    return StageError(error.kind, f"{error.message} (after {len(attempts)} attempts)",
                      f"{summary}\n\nLast attempt:\n{error.traceback or error.message}",
                      error.exception)

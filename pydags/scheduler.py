"""Dynamic scheduling of a pipeline's stages on an executor, reported as events.

Algorithm
    A stage becomes ready the moment its last dependency succeeds (DONE or CACHED), not
    when a whole "level" is done. Ready stages go to the executor while it has free
    capacity; whenever an outcome comes back, the stages it unblocks become ready. A
    failed stage is retried after its delay while it has retries left; once it is
    FAILED for good, everything downstream of it is SKIPPED and independent branches go
    on. Stages whose result is already known (``resume``, ``cache``) start CACHED.
    An executor that *pipelines* (Dask) may take a stage as soon as the stages whose
    results it takes as arguments are submitted (those it only runs ``.after()`` must
    succeed first), passing results from worker to worker; if such an upstream attempt
    fails and is retried, the stages handed out behind it are withdrawn (back to PENDING)
    and handed out again behind the retry. The rules are the same on every executor.

State (keyed by stage name; only this module changes it)
    blocked     name -> dependencies that keep it from being handed out: those not
                succeeded yet (for a pipelining executor, inputs: not submitted yet)
    dependents  name -> stages that wait for it
    ready       heap of (-priority, order, name): may be handed out, not yet (QUEUED)
    running     stages handed to the executor whose outcome is not back yet
    retry_at    heap of (time, name): failed attempts waiting for their retry delay
    attempts    name -> number of the current attempt
    run.left    how many stages have not reached a final status

Policy
    Critical path first: among ready stages, the one with the most work still below it
    (its longest path to a sink, counting each stage's seconds in the previous run where
    known, else one second) goes first, so long chains start early.

Events
    Every status change goes through ``Run.set_status``, which records it and passes an
    ``Event`` to the run's subscribers (the live view, the terminal display, the cache,
    tests) on the thread that runs the scheduler; ``Run.mark_started`` and
    ``Run.mark_finished`` bracket them. Nothing else changes a stage's status.
"""

from __future__ import annotations

import heapq
import time
from dataclasses import dataclass
from typing import Any

from pydags.executors.attempt import error_from_exception
from pydags.executors.base import Executor, Job, Outcome, Printed, StageError, Started
from pydags.run import Attempt, Run
from pydags.stage import Stage, resolve_arguments
from pydags.status import StageStatus

POLL_SECONDS = 0.1  # how often a waiting scheduler looks for a cancel request


@dataclass
class Plan:
    """What the scheduler needs from a pipeline: stages, dependencies, priorities."""

    stages: dict[str, Stage]
    dependencies: dict[str, set[str]]
    priority: dict[str, float]
    inputs: dict[str, set[str]]  # the dependencies whose results a stage takes as arguments


class Scheduler:
    """Runs one plan on one executor, writing every change into the run."""

    def __init__(self, plan: Plan, executor: Executor, *, fail_fast: bool = False,
                 cached: dict[str, Any] | None = None):
        self.plan, self.executor, self.fail_fast = plan, executor, fail_fast
        self.cached = cached or {}
        self.blocked = {name: set(deps) for name, deps in plan.dependencies.items()}
        self.dependents: dict[str, list[str]] = {name: [] for name in plan.stages}
        for name, deps in plan.dependencies.items():
            for dep in deps:
                self.dependents[dep].append(name)
        self.ready: list[tuple[float, int, str]] = []
        self.queued: dict[str, int] = {}  # name -> its entry's order in ``ready``
        self.running: set[str] = set()
        self.retry_at: list[tuple[float, str]] = []
        self.attempts = dict.fromkeys(plan.stages, 1)
        self._order = 0
        self.run: Run

    # --- the loop ------------------------------------------------------------
    def execute(self, run: Run) -> None:
        """Run every stage to a final status. On KeyboardInterrupt: cancel, clean up, re-raise."""
        self.run = run
        interrupted: BaseException | None = None
        run.mark_started()
        try:
            self.executor.start()
            self._begin()
            while run.left:
                if run.cancel_requested:
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
        except BaseException as exc:
            interrupted = exc
            self._cancel_all()
            raise
        finally:
            self.executor.shutdown()
            run.mark_finished(interrupted)

    def _begin(self) -> None:
        for name in self.plan.stages:
            if name in self.cached:
                self.run.set_result(name, self.cached[name])
                self._set(name, StageStatus.CACHED)
        for blocked in self.blocked.values():
            blocked.difference_update(self.cached)
        for name, deps in self.blocked.items():
            if not deps and name not in self.cached:
                self._make_ready(name)

    # --- handing out work ----------------------------------------------------
    def _make_ready(self, name: str) -> None:
        self._order += 1
        self.queued[name] = self._order
        heapq.heappush(self.ready, (-self.plan.priority.get(name, 0.0), self._order, name))
        self._set(name, StageStatus.QUEUED)

    def _submit_ready(self) -> None:
        while self.ready and len(self.running) < self.executor.capacity:
            _, order, name = heapq.heappop(self.ready)
            if self.queued.get(name) != order:
                continue  # withdrawn or finished since it was queued
            del self.queued[name]
            self.running.add(name)
            try:
                job = self._job(name)
            except Exception as exc:  # its edited module no longer imports, say
                self._handle(_unprepared(name, self.attempts[name], exc))
                continue
            self.executor.submit(job)
            if self.executor.pipelines:
                self._unblock(name, submitted=True)

    def _job(self, name: str) -> Job:
        stage = self.plan.stages[name]
        upstream = {d: self.executor.upstream(d, self.run.results)
                    for d in self.plan.dependencies[name]}
        args, kwargs = resolve_arguments(stage, upstream)
        return Job(name, stage.callable(), args, kwargs, attempt=self.attempts[name],
                   timeout=stage.timeout)

    def _unblock(self, name: str, submitted: bool = False) -> None:
        """``name`` succeeded (or was ``submitted``, for the stages taking its result through
        a pipelining executor): queue the dependents it no longer holds back."""
        for dependent in self.dependents[name]:
            blocked = self.blocked[dependent]
            if name in blocked and (not submitted or name in self.plan.inputs[dependent]):
                blocked.discard(name)
                if not blocked and self.run.stage_records[dependent].status is StageStatus.PENDING:
                    self._make_ready(dependent)

    def _release_retries(self) -> None:
        now = time.time()
        while self.retry_at and self.retry_at[0][0] <= now:
            _, name = heapq.heappop(self.retry_at)
            self._make_ready(name)

    # --- news from the executor ---------------------------------------------
    def _handle(self, news: Started | Printed | Outcome) -> None:
        if news.name not in self.running or news.attempt != self.attempts[news.name]:
            return  # cancelled, skipped or withdrawn meanwhile
        if isinstance(news, Printed):
            self.run.printed(news.name, news.text)
            return
        if isinstance(news, Started):
            self.run.attempt_started(news.name, news.attempt, news.worker, news.time)
            self._set(news.name, StageStatus.RUNNING, worker=news.worker)
            return
        self.running.discard(news.name)
        self.run.attempt_ended(news)
        if news.ok:
            self._set(news.name, StageStatus.DONE)
            self._unblock(news.name)
            return
        assert news.error is not None
        stage = self.plan.stages[news.name]
        if news.attempt <= stage.retries and news.error.kind != "send":
            self._withdraw_dependents(news.name)
            self._set(news.name, StageStatus.RETRYING, error=news.error)
            self.attempts[news.name] += 1
            heapq.heappush(self.retry_at, (time.time() + stage.retry_delay, news.name))
            return
        records = self.run.stage_records[news.name].attempts
        self._fail(news.name, _with_attempts(news.error, records))

    def _withdraw_dependents(self, name: str) -> None:
        """Take back the stages handed out behind ``name`` (a pipelining executor's): they
        wait for its next attempt."""
        stack = [name]
        while stack:
            upstream = stack.pop()
            for dependent in self.dependents[upstream]:
                status = self.run.stage_records[dependent].status
                if status not in (StageStatus.QUEUED, StageStatus.RUNNING):
                    continue
                self.blocked[dependent].add(upstream)
                self.queued.pop(dependent, None)
                if dependent in self.running:
                    self.running.discard(dependent)
                    self.executor.cancel({dependent})
                self._set(dependent, StageStatus.PENDING)
                stack.append(dependent)

    def _fail(self, name: str, error: StageError) -> None:
        self._set(name, StageStatus.FAILED, error=error)
        below, stack = set(), list(self.dependents[name])
        while stack:
            dependent = stack.pop()
            if not self.run.stage_records[dependent].status.finished:
                self._set(dependent, StageStatus.SKIPPED)
                below.add(dependent)
                stack.extend(self.dependents[dependent])
        handed_out = below & self.running
        if handed_out:  # a pipelining executor took them already
            self.running -= handed_out
            self.executor.cancel(handed_out)
        if self.fail_fast:
            self._cancel_all()

    def _cancel_all(self) -> None:
        self.ready.clear()
        self.queued.clear()
        self.retry_at.clear()
        if self.running:
            self.executor.cancel(set(self.running))
            self.running.clear()
        for name, record in self.run.stage_records.items():
            if not record.status.finished:
                self._set(name, StageStatus.CANCELLED)

    # --- the one place a status changes ---------------------------------------
    def _set(self, name: str, status: StageStatus, *, worker: str | None = None,
             error: StageError | None = None) -> None:
        if status.finished:
            self.running.discard(name)
            self.queued.pop(name, None)
        self.run.set_status(name, status, attempt=self.attempts[name], worker=worker,
                            error=error)


def _unprepared(name: str, attempt: int, exc: Exception) -> Outcome:
    """The failure of a stage whose job could not be made."""
    error = error_from_exception(exc)
    error.kind = "send"  # not retried: the same would happen again
    error.message = f"stage {name!r} could not be prepared: {error.message}"
    error.traceback = f"{error.message}\n\n{error.traceback}"
    now = time.time()
    return Outcome(name, attempt, False, error=error, start=now, end=now)


def _with_attempts(error: StageError, attempts: list[Attempt]) -> StageError:
    """Keep a one-line summary of every earlier attempt in the final error."""
    if len(attempts) < 2:
        return error
    lines = [f"attempt {a.number} on {a.worker}: {a.error}" for a in attempts]
    summary = f"failed after {len(attempts)} attempts:\n  " + "\n  ".join(lines)
    return StageError(error.kind, f"{error.message} (after {len(attempts)} attempts)",
                      f"{summary}\n\nLast attempt:\n{error.traceback or error.message}",
                      error.exception)

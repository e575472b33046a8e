"""Dynamic scheduling of a pipeline's stages on an executor, reported as events.

Algorithm
    A stage becomes ready the moment its last dependency succeeds (DONE or CACHED), not
    when a whole "level" is done. Ready stages go to the executor while it has free
    capacity; whenever an outcome comes back, the stages it unblocks become ready. A
    failed stage is retried after its delay while it has retries left; once it is
    FAILED for good, everything downstream of it is SKIPPED and independent branches go
    on. Stages whose result is already known (``resume``, ``cache``) start CACHED.
    A mapped stage, once its arguments are known, is its items: they go out in batches
    (``pydags.mapping`` sizes them), each item retried on its own, and the stage ends when
    every item has (FAILED if one failed, naming it). A map over a mapped stage takes
    each item as soon as the item it comes from is done.
    An executor that *pipelines* (Dask) may take a stage as soon as the stages whose
    results it takes as arguments are submitted (those it only runs ``.after()`` must
    succeed first), passing results from worker to worker; if such an upstream attempt
    fails and is retried, the stages handed out behind it are withdrawn (back to PENDING)
    and handed out again behind the retry. A job says whether its result may stay in the
    worker that makes it (at most one stage takes it); if such a result is lost with its
    worker before the stage taking it could start, its stage runs again first. The rules
    are the same on every executor.

State (keyed by stage name; only this module changes it)
    blocked     name -> dependencies that keep it from being handed out: those not
                succeeded yet (for a pipelining executor, inputs: not submitted yet)
    dependents  name -> stages that wait for it
    ready       heap of (-priority, order, name): may be handed out, not yet (QUEUED)
    running     jobs handed to the executor whose outcome is not back yet: a stage's name,
                or the key of a batch of items ("clean[3]", "clean[8:40]")
    batches     batch key -> (stage, items, attempt)
    maps        mapped stage -> its items waiting to go out (``MappedStage``)
    retry_at    heap of (time, name, item): failed attempts waiting for their retry delay
                (item -1 for a stage)
    attempts    name -> number of the current attempt
    results     name -> the result this run works with (its own: a later run of the
                pipeline may let the run's results go while this one goes on)
    run.left    how many stages have not reached a final status

Policy
    Critical path first: among ready stages, the one with the most work still below it
    (its longest path to a sink, counting each stage's seconds in the previous run where
    known, else one second) goes first, so long chains start early. A map over a map goes
    before the map it takes items from, so each item's chain ends early. A mapped stage
    with items to hand out stays in line, one batch per turn.

Interrupts
    On the main thread the first Ctrl-C interrupts the run: queued stages are CANCELLED,
    running ones stopped. Presses while it cleans up wait until it is done, so every stage
    ends with a final status whatever the timing.

Events
    Every status change goes through ``Run.set_status``, which records it and passes an
    ``Event`` to the run's subscribers (the live view, the terminal display, the cache,
    tests) on the thread that runs the scheduler; ``Run.mark_started`` and
    ``Run.mark_finished`` bracket them. Nothing else changes a stage's status. A mapped
    stage's items change through ``Run.items_*`` and ``Run.item_status``, which tell the
    subscribers that asked for items (``Event.item``).
"""

from __future__ import annotations

import contextlib
import heapq
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pydags.errors import LostResult, MapError
from pydags.executors.attempt import error_from_exception
from pydags.executors.base import Executor
from pydags.items import CODE, Items, shown
from pydags.mapping import SUCCEEDED, MappedStage, ranges, succeeded
from pydags.protocol import ErrorKind, Job, Outcome, Printed, StageError, Started
from pydags.results import Results
from pydags.run import Attempt, Run
from pydags.stage import Stage, items_of, mismatch, resolve_arguments
from pydags.status import StageStatus

POLL_SECONDS = 0.1  # how often a waiting scheduler looks for a cancel request


@dataclass
class Plan:
    """What the scheduler needs from a pipeline: stages, dependencies, priorities."""

    stages: dict[str, Stage]
    dependencies: dict[str, set[str]]
    priority: dict[str, float]
    inputs: dict[str, set[str]]  # the dependencies whose results a stage takes as arguments
    # mapped stage -> for each mapped argument, the mapped stage feeding it item by item
    # (None where the argument is given whole)
    linked: dict[str, list[str | None]] = field(default_factory=dict)
    # id of each stage -> its name when the run was planned (a stage renamed since keeps it)
    names: dict[int, str] = field(default_factory=dict)


class Scheduler:
    """Runs one plan on one executor, writing every change into the run."""

    def __init__(self, plan: Plan, executor: Executor, *, fail_fast: bool = False,
                 cached: dict[str, Any] | None = None, known_items: list[Any] = ()):
        self.plan, self.executor, self.fail_fast = plan, executor, fail_fast
        self.cached = cached or {}
        self.known_items = list(known_items)  # where items' results known already are kept
        self.blocked = {name: set(deps) for name, deps in plan.dependencies.items()}
        self.dependents: dict[str, list[str]] = {name: [] for name in plan.stages}
        for name, deps in plan.dependencies.items():
            for dep in deps:
                self.dependents[dep].append(name)
        self.ready: list[tuple[float, int, str]] = []
        self.queued: dict[str, int] = {}  # name -> its entry's order in ``ready``
        self.running: set[str] = set()
        self.batches: dict[str, tuple[str, range, int]] = {}
        self.maps: dict[str, MappedStage] = {}
        self.retry_at: list[tuple[float, str, int]] = []
        self.attempts = dict.fromkeys(plan.stages, 1)
        # The results this run works with: its own, whatever happens to the run's (a later
        # run of the pipeline may let those go while this one still runs).
        self.results = Results()
        self._order = 0
        self.run: Run

    # --- the loop ------------------------------------------------------------
    def execute(self, run: Run) -> None:
        """Run every stage to a final status. On KeyboardInterrupt: cancel, clean up, re-raise."""
        self.run = run
        interrupted: BaseException | None = None
        presses = _Interrupts()
        with presses.held():
            run.mark_started()
            try:
                self.executor.start()
                self._begin()
                self._loop()
            except BaseException as exc:
                presses.cleaning = True
                interrupted = exc
                self._cancel_all()
                raise
            finally:
                presses.cleaning = True
                self.executor.shutdown()
                run.mark_finished(interrupted)
        if presses.count and interrupted is None:  # pressed while the run was ending
            raise KeyboardInterrupt

    def _loop(self) -> None:
        run = self.run
        while run.left:
            if run.cancel_requested:
                self._cancel_all()
                break
            self._submit_ready()
            if not self.running:
                if not run.left:
                    break  # the last stages ended as they were handed out
                if not self.retry_at:
                    raise RuntimeError("pydags scheduler stalled: no stage can run")
                time.sleep(max(0.0, min(POLL_SECONDS, self.retry_at[0][0] - time.time())))
            else:
                for news in self.executor.poll(POLL_SECONDS):
                    self._handle(news)
            self._release_retries()

    def _begin(self) -> None:
        for name in self.plan.stages:
            if name in self.cached:
                value = self.cached[name]
                self._result(name, value)
                if name in self.plan.linked and isinstance(value, list):  # its items too
                    self.run.mapped(name, Items(len(value)))
                    self.run.items_known(name, dict(enumerate(value)))
                self._set(name, StageStatus.CACHED)
        for blocked in self.blocked.values():
            blocked.difference_update(self.cached)
        for name, deps in self.blocked.items():
            if not deps and name not in self.cached:
                self._make_ready(name)

    # --- handing out work ----------------------------------------------------
    def _make_ready(self, name: str) -> None:
        self._queue(name)
        self._set(name, StageStatus.QUEUED)

    def _queue(self, name: str) -> None:
        """Put ``name`` (a stage, or a mapped stage with items to hand out) in line."""
        self._order += 1
        self.queued[name] = self._order
        heapq.heappush(self.ready, (-self.plan.priority.get(name, 0.0), self._order, name))

    def _submit_ready(self) -> None:
        while self.ready and len(self.running) < self.executor.capacity:
            _, order, name = heapq.heappop(self.ready)
            if self.queued.get(name) != order:
                continue  # withdrawn or finished since it was queued
            del self.queued[name]
            if name in self.plan.linked:
                self._submit_items(name)
                continue
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
        upstream = {d: self.executor.upstream(d, self.results)
                    for d in self.plan.dependencies[name]}
        args, kwargs = resolve_arguments(stage, upstream, self.plan.names)
        takers = sum(name in self.plan.inputs[d] for d in self.dependents[name])
        inputs = {d: upstream[d] for d in self.plan.inputs[name]}
        return Job(name, stage.callable(), args, kwargs, attempt=self.attempts[name],
                   timeout=stage.timeout, inputs=inputs, keep=takers <= 1)

    def _unblock(self, name: str, submitted: bool = False, mapped: bool = False) -> None:
        """``name`` succeeded (or was ``submitted``, for the stages taking its result through
        a pipelining executor; or ``mapped``, for the maps over its items): queue the
        dependents it no longer holds back."""
        for dependent in self.dependents[name]:
            blocked = self.blocked[dependent]
            if name not in blocked:
                continue
            if submitted and (name not in self.plan.inputs[dependent]
                              or dependent in self.plan.linked):
                continue  # a map needs its arguments themselves, to know its items
            if mapped and name not in self.plan.linked.get(dependent, ()):
                continue
            blocked.discard(name)
            if not blocked and self.run.stage_records[dependent].status is StageStatus.PENDING:
                self._make_ready(dependent)

    def _release_retries(self) -> None:
        now = time.time()
        while self.retry_at and self.retry_at[0][0] <= now:
            _, name, item = heapq.heappop(self.retry_at)
            if item < 0:
                self._make_ready(name)
            elif name in self.maps:
                self._items_ready(name, [range(item, item + 1)])

    # --- mapped stages ---------------------------------------------------------
    def _submit_items(self, name: str) -> None:
        """Hand out the next batch of a mapped stage's items (knowing them first)."""
        mapped = self.maps.get(name) or self._expand(name)
        if mapped is None or not mapped.ready:
            return
        if mapped.out >= 2 * self.executor.parallelism:
            return  # enough in flight (a cluster takes any number): back in line as one ends
        batch = mapped.take(self.executor.parallelism)
        mapped.out += 1
        if mapped.ready:
            self._queue(name)
        attempt = self.run.items[name].attempt[batch.start] if len(batch) == 1 else 1
        key = f"{name}[{batch.start}]" if len(batch) == 1 else f"{name}[{batch.start}:{batch.stop}]"
        self.batches[key] = (name, batch, attempt)
        self.running.add(key)
        self.run.items_waiting(name, batch, StageStatus.QUEUED)
        work, sources = mapped.batch(batch, self.executor)
        self.executor.submit(Job(key, work, sources, {}, attempt=attempt,
                                 timeout=self.plan.stages[name].timeout))

    def _expand(self, name: str) -> MappedStage | None:
        """Know a mapped stage's items from its arguments; None if it ended there (no
        items, all known already, or arguments it cannot map over)."""
        stage, linked = self.plan.stages[name], self.plan.linked[name]
        feeding = [self.run.items[p] for p in set(linked) - {None} if p in self.run.items]
        try:
            results = {d: self.run.items[d].values if d in self.run.items and d in linked
                       else self.results[d]  # a map known whole (cached, resumed) too
                       for d in self.plan.inputs[name]}
            args, kwargs = resolve_arguments(stage, results, self.plan.names)
            sources = [items_of(v, f"stage {name!r}, mapped argument {p} (the result of "
                                f"{linked[p]!r})" if linked[p] else
                                f"stage {name!r}, mapped argument {p}")
                       for p, v in enumerate(args)]
            lengths = dict(enumerate(map(len, sources)))
            if len(set(lengths.values())) > 1:
                raise MapError(f"stage {name!r}: mapped arguments have different lengths: "
                                 + mismatch(lengths))
            function = stage.callable()
        except LostResult as exc:  # a result it takes went with the worker that kept it
            lost = tuple(d for d in self.plan.dependencies[name]
                         if getattr(self.results.held(d), "lost", False))
            if lost:
                self._recompute(name, lost)
            else:
                self._fail(name, _unmappable(name, exc))
            return None
        except Exception as exc:
            self._fail(name, _unmappable(name, exc))
            return None
        count = lengths[0]
        items = Items(count)
        self.run.mapped(name, items)
        mapped = MappedStage(name, function, sources, linked,
                             self.executor.share(kwargs) if kwargs else kwargs,
                             alone=stage.timeout is not None)
        self.maps[name] = mapped
        known: dict[int, Any] = {}
        for source in self.known_items:
            known |= source.find(name, mapped, count)
        self.run.items_known(name, known)
        self._unblock(name, mapped=True)
        if known or feeding:
            mapped.add(ranges(i for i in range(count) if i not in known
                              and all(f.status[i] in SUCCEEDED for f in feeding)))
        else:
            mapped.add([range(count)])
        if not items.left:
            self._map_finished(name)
            return None
        return mapped

    def _items_ready(self, name: str, parts: list[range]) -> None:
        mapped = self.maps[name]
        mapped.add(parts)
        if mapped.ready and name not in self.queued:
            self._queue(name)

    def _handle_items(self, news: Started | Printed | Outcome) -> None:
        name, batch, attempt = self.batches[news.name]
        if news.name not in self.running or news.attempt != attempt:
            return
        if isinstance(news, Printed):
            self.run.printed(name, news.text, keep=False)
            return
        if isinstance(news, Started):
            self.run.items_started(name, batch, news.worker, news.time)
            if self.run.stage_records[name].status is StageStatus.QUEUED:
                self._set(name, StageStatus.RUNNING)
            return
        self.running.discard(news.name)
        del self.batches[news.name]
        mapped, stage = self.maps[name], self.plan.stages[name]
        mapped.out -= 1
        if mapped.ready and name not in self.queued:
            self._queue(name)
        if news.ok:
            self.run.items_ended(name, batch, news.value, news.worker, news.output)
            mapped.timing(news.value)
            failed = {batch.start + p: e for p, e in news.value.errors.items()}
            self._items_done(name, succeeded(batch, news.value))
        elif news.error.kind is ErrorKind.CRASH and len(batch) > 1:
            # Which item took its worker down is unknown: each goes again in a batch of its own.
            mapped.alone = True
            self.run.items_waiting(name, batch, StageStatus.PENDING)
            self._items_ready(name, [range(i, i + 1) for i in batch])
            return
        else:
            self.run.items_tried(name, batch, news.start, news.end, news.worker)
            if news.output:
                self.run.printed(name, news.output, keep=True)
            failed = dict.fromkeys(batch, news.error)
        items = self.run.items[name]
        for item, error in failed.items():
            if items.attempt[item] <= stage.retries and error.kind.retryable:
                self.run.item_status(name, item, StageStatus.RETRYING, error=error)
                heapq.heappush(self.retry_at, (time.time() + stage.retry_delay, name, item))
            else:
                self.run.item_status(name, item, StageStatus.FAILED, error=error)
                if self.fail_fast:  # the map fails now, and with it the run
                    self._drop_items({name}, StageStatus.CANCELLED)
        if not items.left:
            self._map_finished(name)

    def _items_done(self, name: str, parts: list[range]) -> None:
        """Items ``parts`` of ``name`` are done: the maps over them may take theirs."""
        for source in self.known_items:
            source.keep(name, self.run.items[name], parts)
        for dependent in self.dependents[name]:
            if name not in self.plan.linked.get(dependent, ()) or dependent not in self.maps:
                continue
            if self.run.stage_records[dependent].status.finished:
                continue
            feeding = [self.run.items[p] for p in set(self.plan.linked[dependent]) - {None}
                       if p in self.run.items]
            waiting = self.run.items[dependent].status
            pending = CODE[StageStatus.PENDING]
            self._items_ready(dependent, ranges(
                i for part in parts for i in part
                if waiting[i] == pending and all(f.status[i] in SUCCEEDED for f in feeding)))

    def _map_finished(self, name: str) -> None:
        items = self.run.items[name]
        failed = [i for i, e in items.errors.items()
                  if items.status[i] == CODE[StageStatus.FAILED]]
        if failed:
            self._fail(name, _items_error(name, items, sorted(failed), self.maps[name]))
            return
        self._result(name, items.values)
        self._set(name, StageStatus.DONE)
        self._unblock(name)

    def _drop_items(self, names: set[str], status: StageStatus) -> None:
        """Mapped stages among ``names`` ended early: stop their batches, end their items."""
        batches = {key for key, (name, _, _) in self.batches.items() if name in names}
        for key in batches:
            del self.batches[key]
        if batches & self.running:
            self.executor.cancel(batches & self.running)
            self.running -= batches
        for name in names & set(self.maps):
            self.run.items_finished(name, status)

    # --- news from the executor ---------------------------------------------
    def _handle(self, news: Started | Printed | Outcome) -> None:
        if news.name in self.batches:
            self._handle_items(news)
            return
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
        if news.lost:
            self._recompute(news.name, news.lost)
            return
        self.run.attempt_ended(news)
        if news.ok:
            self.results[news.name] = news.value
            self._set(news.name, StageStatus.DONE)
            self._unblock(news.name)
            return
        assert news.error is not None
        stage = self.plan.stages[news.name]
        if news.attempt <= stage.retries and news.error.kind.retryable:
            self._withdraw_dependents(news.name)
            self._set(news.name, StageStatus.RETRYING, error=news.error)
            self.attempts[news.name] += 1
            heapq.heappush(self.retry_at, (time.time() + stage.retry_delay, news.name, -1))
            return
        records = self.run.stage_records[news.name].attempts
        self._fail(news.name, _with_attempts(news.error, records))

    def _recompute(self, name: str, lost: tuple[str, ...]) -> None:
        """``name`` could not start: the results of ``lost`` went with a worker that died.
        They run again (a new attempt), then it does."""
        self.blocked[name].update(lost)
        self._set(name, StageStatus.PENDING)
        for upstream in lost:
            if self.run.stage_records[upstream].status.succeeded:
                self.attempts[upstream] += 1
                self._make_ready(upstream)

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
        self._drop_items(below, StageStatus.SKIPPED)
        if self.fail_fast:
            self._cancel_all()

    def _cancel_all(self) -> None:
        self.ready.clear()
        self.queued.clear()
        self.retry_at.clear()
        if self.running:
            self.executor.cancel(set(self.running))
            self.running.clear()
        self.batches.clear()
        for name in self.maps:
            self.run.items_finished(name, StageStatus.CANCELLED)
        for name, record in self.run.stage_records.items():
            if not record.status.finished:
                self._set(name, StageStatus.CANCELLED)

    def _result(self, name: str, value: Any) -> None:
        """Stage ``name``'s result is known without an attempt of its own here."""
        self.results[name] = value
        self.run.set_result(name, value)

    # --- the one place a status changes ---------------------------------------
    def _set(self, name: str, status: StageStatus, *, worker: str | None = None,
             error: StageError | None = None) -> None:
        if status.finished:
            self.running.discard(name)
            self.queued.pop(name, None)
        self.run.set_status(name, status, attempt=self.attempts[name], worker=worker,
                            error=error)


class _Interrupts:
    """Ctrl-C during a run on the main thread: the first press interrupts it; a press while
    it cleans up after that (or while it ends) waits until it is done, since a cleanup cut
    short would leave stages RUNNING and the run never finished."""

    def __init__(self) -> None:
        self.count = 0
        self.cleaning = False

    def _pressed(self, number: int, frame: Any) -> None:
        self.count += 1
        if self.count == 1 and not self.cleaning:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield  # Ctrl-C reaches the main thread only
            return
        previous = signal.getsignal(signal.SIGINT)
        if previous is signal.SIG_IGN:
            yield  # the host ignores Ctrl-C: so does the run
            return
        signal.signal(signal.SIGINT, self._pressed)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous if previous is not None
                          else signal.default_int_handler)


def _unprepared(name: str, attempt: int, exc: Exception) -> Outcome:
    """The failure of a stage whose job could not be made."""
    error = error_from_exception(exc, ErrorKind.UNSENDABLE, f"stage {name!r} could not be "
                                 "prepared")  # not retried: the same would happen again
    now = time.time()
    return Outcome(name, attempt, False, error=error, start=now, end=now)


def _unmappable(name: str, exc: Exception) -> StageError:
    """Why a mapped stage could not be made into items (not retried: it would not change)."""
    if isinstance(exc, MapError):  # pydags' own words: no traceback
        return StageError(ErrorKind.UNSENDABLE, str(exc), str(exc), exc)
    return error_from_exception(exc, ErrorKind.UNSENDABLE, f"stage {name!r} could not be mapped")


def _items_error(name: str, items: Items, failed: list[int], mapped: MappedStage) -> StageError:
    """The error of a map whose items ``failed``: which ones, and their tracebacks."""
    def label(item: int) -> str:
        text = shown(mapped.arguments(item))
        return f"item {item} ({text})" if text else f"item {item}"

    named = ", ".join(label(i) for i in failed[:10]) + (", ..." if len(failed) > 10 else "")
    first = items.errors[failed[0]]
    message = (f"{len(failed)} of {items.count} items of stage {name!r} failed: {named}; "
               f"first error: {first.message}")
    parts = [message]
    for item in failed[:10]:
        error = items.errors[item]
        attempts = items.attempt[item]
        tried = f" (after {attempts} attempts)" if attempts > 1 else ""
        parts.append(f"--- {label(item)}{tried} ---\n{error.traceback or error.message}")
    return StageError(first.kind, message, "\n\n".join(parts), first.exception)


def _with_attempts(error: StageError, attempts: list[Attempt]) -> StageError:
    """Keep a one-line summary of every earlier attempt in the final error."""
    if len(attempts) < 2:
        return error
    lines = [f"attempt {a.number} on {a.worker}: {a.error}" for a in attempts]
    summary = f"failed after {len(attempts)} attempts:\n  " + "\n  ".join(lines)
    return StageError(error.kind, f"{error.message} (after {len(attempts)} attempts)",
                      f"{summary}\n\nLast attempt:\n{error.traceback or error.message}",
                      error.exception)

"""The scheduling core: what each piece of news means for every stage and item, and which
job goes out next. It does no I/O and reads no clock: it is told the news (started, printed,
an outcome, the time for retries, cancel) and answers with decisions, which the loop
(``pydags.scheduler``) carries out — as ``graphlib.TopologicalSorter`` and the state part of
``dask.local`` do — so every rule can be tested step by step without a process.

Algorithm
    A stage becomes ready the moment its last dependency succeeds (DONE or CACHED). Ready
    stages are handed out while the executor has room; whenever an outcome comes back, the
    stages it unblocks become ready. A failed stage is retried after its delay while it has
    retries left (and its error's kind may be retried); once it is FAILED for good,
    everything below it is SKIPPED and independent branches go on. Stages whose result is
    known already (``resume``, ``cache``) start CACHED.
    A mapped stage, once its arguments are known (``Expand``), is its items: they go out in
    batches (``pydags.mapstate`` sizes them), each item retried on its own, and the stage
    ends when every item has (FAILED if one failed, naming it). A batch whose worker died
    is split: each item goes again alone until only the culprit fails. A map over a mapped
    stage takes each item as soon as the item it comes from is done.
    An executor that *chains* (worker processes) takes, with a stage, the stages after it
    that wait for it alone, in a line, to run on its worker right after it; if it fails,
    they are withdrawn.
    An executor that *pipelines* (Dask) may take a stage as soon as the stages whose
    results it takes are handed out; if such an upstream attempt fails and is retried, the
    stages handed out behind it are withdrawn (back to PENDING) and handed out again behind
    the retry. A stage whose upstream result was lost with its worker runs again after it.

State (keyed by stage name; only this module changes it)
    status      each stage's status, as decided here
    blocked     name -> dependencies that keep it from being handed out
    dependents  name -> stages that wait for it
    ready       heap of (-priority, order, name): may be handed out (QUEUED)
    running     keys of jobs handed out whose outcome is not back: a stage's name, or a
                batch of items ("clean[3]", "clean[8:40]")
    batches     batch key -> (stage, items, attempt)
    maps        mapped stage -> its items (``MapState``)
    retry_at    heap of (time, order, name, item): failed attempts waiting for their delay
    attempts    name -> number of the current attempt; ``tries``: each one's worker, error

Policy
    Critical path first: among ready stages, the one with the most work below it goes first
    (``Plan.priority``). A mapped stage with items to hand out stays in line, one batch per
    turn, with at most two batches per worker out at once.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

from pydags.decisions import Decision, Expand, Hand, ItemStatus, Status, Withdraw
from pydags.mapstate import MapState, ranges
from pydags.plan import Plan
from pydags.protocol import ErrorKind, Outcome, Printed, StageError, Started
from pydags.status import StageStatus

WAITING = (StageStatus.QUEUED, StageStatus.RUNNING)
CHAIN = 32  # stages handed out at once behind the one they wait for (``Core._chain``)


class Core:
    """The state of one run's scheduling, changed only by the news it is told."""

    def __init__(self, plan: Plan, *, capacity: int, parallelism: int, pipelines: bool,
                 fail_fast: bool = False, chains: bool = False):
        self.plan, self.fail_fast = plan, fail_fast
        self.capacity, self.parallelism, self.pipelines = capacity, parallelism, pipelines
        self.chains = chains
        self.status = dict.fromkeys(plan.stages, StageStatus.PENDING)
        self.left = len(plan.stages)
        self.blocked = {name: set(deps) for name, deps in plan.dependencies.items()}
        self.dependents: dict[str, list[str]] = {name: [] for name in plan.stages}
        for name, deps in plan.dependencies.items():
            for dep in deps:
                self.dependents[dep].append(name)
        self.takers = dict.fromkeys(plan.stages, 0)  # how many stages take its result
        for taken in plan.inputs.values():
            for name in taken:
                self.takers[name] += 1
        self.ready: list[tuple[float, int, str]] = []
        self.queued: dict[str, int] = {}  # name -> its entry's order in ``ready``
        self.running: set[str] = set()
        self.batches: dict[str, tuple[str, range, int]] = {}
        self.maps: dict[str, MapState] = {}
        self.retry_at: list[tuple[float, int, str, int]] = []
        self.attempts = dict.fromkeys(plan.stages, 1)
        self.tries: dict[str, list[tuple[int, str, str]]] = {name: [] for name in plan.stages}
        self.out: list[Decision] = []
        self._order = 0

    def take(self) -> list[Decision]:
        """The decisions made since the last call, in order."""
        out, self.out = self.out, []
        return out

    @property
    def wakeup(self) -> float | None:
        """When the next retry is due, if any waits."""
        return self.retry_at[0][0] if self.retry_at else None

    # --- news --------------------------------------------------------------------------
    def begin(self, cached: set[str]) -> None:
        """The run starts; the results of ``cached`` are known already."""
        for name in self.plan.stages:
            if name in cached:
                self._set(name, StageStatus.CACHED)
        for blocked in self.blocked.values():
            blocked.difference_update(cached)
        for name, deps in self.blocked.items():
            if not deps and name not in cached:
                self._make_ready(name)

    def hand_out(self) -> None:
        """Decide the jobs that go out now, while the executor has room; stops after an
        ``Expand`` (hand out again once ``expanded`` was told)."""
        while self.ready and len(self.running) < self.capacity:
            _, order, name = heapq.heappop(self.ready)
            if self.queued.get(name) != order:
                continue  # withdrawn or finished since it was queued
            del self.queued[name]
            if name in self.plan.linked:
                if name not in self.maps:
                    self.out.append(Expand(name))
                    return
                self._hand_items(name)
                continue
            self.running.add(name)
            self.out.append(Hand(name, name, self.attempts[name],
                                 keep=self.takers[name] <= 1))
            if self.pipelines:
                self._unblock(name, submitted=True)
            elif self.chains:
                self._chain(name)

    def expanded(self, name: str, count: int, known: set[int], label: Callable[[int], str],
                 ) -> None:
        """Mapped stage ``name`` has ``count`` items, those in ``known`` CACHED already
        (``label(i)``: how an error names item ``i``)."""
        state = MapState(count, alone=self.plan.stages[name].timeout is not None, label=label)
        self.maps[name] = state
        if known:
            parts = ranges(sorted(known))
            state.mark(parts, StageStatus.CACHED)
            self.out.extend(ItemStatus(name, part, StageStatus.CACHED) for part in parts)
        self._unblock(name, mapped=True)
        feeding = self._feeding(name)
        if known or feeding:
            state.add(ranges(i for i in range(count) if i not in known
                             and all(f.succeeded(i) for f in feeding)))
        else:
            state.add([range(count)])
        if not state.left:
            self._map_finished(name)
        elif state.ready:
            self._queue(name)

    def known_whole(self, name: str, count: int) -> None:
        """Mapped stage ``name``, CACHED as a whole, has ``count`` items, all CACHED."""
        self.maps[name] = state = MapState(count, alone=False, label=str)
        state.mark([range(count)], StageStatus.CACHED)
        self.out.append(ItemStatus(name, range(count), StageStatus.CACHED))

    def unmappable(self, name: str, error: StageError) -> None:
        """Mapped stage ``name``'s arguments could not be made into items."""
        self._fail(name, error)

    def lost(self, name: str, lost: tuple[str, ...]) -> None:
        """``name`` could not start: the results of ``lost`` went with a worker that died.
        They run again (a new attempt), then it does."""
        self._withdraw_dependents(name)  # those handed out behind it, in a chain
        self.running.discard(name)
        self.blocked[name].update(lost)
        self._set(name, StageStatus.PENDING)
        for upstream in lost:
            if self.status[upstream].succeeded:
                self.attempts[upstream] += 1
                self._make_ready(upstream)

    def tell(self, news: Started | Printed | Outcome, now: float) -> bool:
        """News from the executor; False if it is about a job no longer wanted (cancelled,
        skipped or withdrawn meanwhile), which the loop then drops."""
        if news.name in self.batches:
            return self._tell_items(news, now)
        if news.name not in self.running or news.attempt != self.attempts[news.name]:
            return False
        if isinstance(news, Printed):
            return True
        if isinstance(news, Started):
            self._set(news.name, StageStatus.RUNNING, worker=news.worker)
            return True
        self.running.discard(news.name)
        if news.lost:
            self.lost(news.name, news.lost)
            return True
        error = news.error
        message = "" if error is None else error.message
        self.tries[news.name].append((news.attempt, news.worker, message))
        if news.ok:
            self._set(news.name, StageStatus.DONE)
            self._unblock(news.name)
            return True
        assert error is not None
        stage = self.plan.stages[news.name]
        if news.attempt <= stage.retries and error.kind.retryable:
            self._withdraw_dependents(news.name)
            self._set(news.name, StageStatus.RETRYING, error=error)
            self.attempts[news.name] += 1
            self._retry(now + stage.retry_delay, news.name, -1)
            return True
        self._fail(news.name, error.after(self.tries[news.name]))
        return True

    def due(self, now: float) -> None:
        """The time is ``now``: the retries due go back in line."""
        while self.retry_at and self.retry_at[0][0] <= now:
            _, _, name, item = heapq.heappop(self.retry_at)
            if item < 0:
                self._make_ready(name)
            elif name in self.maps and not self.status[name].finished:
                self._items_ready(name, [range(item, item + 1)])

    def cancel(self) -> None:
        """Stop: nothing more goes out; what is unfinished is CANCELLED."""
        self.ready.clear()
        self.queued.clear()
        self.retry_at.clear()
        if self.running:
            self.out.append(Withdraw(frozenset(self.running)))
            self.running.clear()
        self.batches.clear()
        for name in self.maps:
            self._end_items(name, StageStatus.CANCELLED)
        for name, status in self.status.items():
            if not status.finished:
                self._set(name, StageStatus.CANCELLED)

    # --- mapped stages -------------------------------------------------------------------
    def _hand_items(self, name: str) -> None:
        state = self.maps[name]
        if not state.ready or state.out >= 2 * self.parallelism:
            return  # enough in flight: back in line as one ends
        batch = state.take(self.parallelism)
        state.out += 1
        if state.ready:
            self._queue(name)
        attempt = state.attempt[batch.start] if len(batch) == 1 else 1
        key = f"{name}[{batch.start}]" if len(batch) == 1 else f"{name}[{batch.start}:{batch.stop}]"
        self.batches[key] = (name, batch, attempt)
        self.running.add(key)
        state.mark([batch], StageStatus.QUEUED)
        self.out.append(ItemStatus(name, batch, StageStatus.QUEUED))
        self.out.append(Hand(key, name, attempt, items=batch))

    def _tell_items(self, news: Started | Printed | Outcome, now: float) -> bool:
        name, batch, attempt = self.batches[news.name]
        if news.name not in self.running or news.attempt != attempt:
            return False
        state = self.maps[name]
        if isinstance(news, Printed):
            return True
        if isinstance(news, Started):
            state.mark([batch], StageStatus.RUNNING)
            self.out.append(ItemStatus(name, batch, StageStatus.RUNNING))
            if self.status[name] is StageStatus.QUEUED:
                self._set(name, StageStatus.RUNNING)
            return True
        self.running.discard(news.name)
        del self.batches[news.name]
        state.out -= 1
        if state.ready and name not in self.queued:
            self._queue(name)
        if news.ok:
            state.timing(news.value.end - news.value.starts[0], len(news.value.starts))
            failed = {batch.start + p: e for p, e in news.value.errors.items()}
            done = ranges(i for i in batch if i not in failed) if failed else [batch]
            state.mark(done, StageStatus.DONE)
            self.out.extend(ItemStatus(name, part, StageStatus.DONE) for part in done)
            self._items_done(name, done)
        elif news.error.kind is ErrorKind.CRASH and len(batch) > 1:
            # Which item took its worker down is unknown: each goes again in a batch of its own.
            state.alone = True
            state.mark([batch], StageStatus.PENDING)
            self.out.append(ItemStatus(name, batch, StageStatus.PENDING))
            self._items_ready(name, [range(i, i + 1) for i in batch])
            return True
        else:
            failed = dict.fromkeys(batch, news.error)
        stage = self.plan.stages[name]
        for item, error in failed.items():
            state.errors[item] = error
            if state.attempt[item] <= stage.retries and error.kind.retryable:
                state.attempt[item] += 1
                state.mark([range(item, item + 1)], StageStatus.RETRYING)
                self.out.append(ItemStatus(name, range(item, item + 1), StageStatus.RETRYING,
                                           error))
                self._retry(now + stage.retry_delay, name, item)
            else:
                state.mark([range(item, item + 1)], StageStatus.FAILED)
                self.out.append(ItemStatus(name, range(item, item + 1), StageStatus.FAILED,
                                           error))
                if self.fail_fast:  # the map fails now, and with it the run
                    self._drop_items({name}, StageStatus.CANCELLED)
        if not state.left:
            self._map_finished(name)
        return True

    def _feeding(self, name: str) -> list[MapState]:
        """The item states of the maps feeding mapped stage ``name`` item by item."""
        return [self.maps[p] for p in set(self.plan.linked[name]) - {None} if p in self.maps]

    def _items_ready(self, name: str, parts: list[range]) -> None:
        state = self.maps[name]
        state.add(parts)
        if state.ready and name not in self.queued:
            self._queue(name)

    def _items_done(self, name: str, parts: list[range]) -> None:
        """Items ``parts`` of ``name`` are done: the maps over them may take theirs."""
        for dependent in self.dependents[name]:
            if name not in self.plan.linked.get(dependent, ()) or dependent not in self.maps:
                continue
            if self.status[dependent].finished:
                continue
            feeding, waiting = self._feeding(dependent), self.maps[dependent]
            self._items_ready(dependent, ranges(
                i for part in parts for i in part
                if waiting.pending(i) and all(f.succeeded(i) for f in feeding)))

    def _map_finished(self, name: str) -> None:
        state = self.maps[name]
        failed = state.failed()
        if failed:
            self._fail(name, state.error(name, failed))
            return
        self._set(name, StageStatus.DONE)
        self._unblock(name)

    def _drop_items(self, names: set[str], status: StageStatus) -> None:
        """Mapped stages among ``names`` ended early: stop their batches, end their items."""
        batches = {key for key, (name, _, _) in self.batches.items() if name in names}
        for key in batches:
            del self.batches[key]
        if batches & self.running:
            self.out.append(Withdraw(frozenset(batches & self.running)))
            self.running -= batches
        for name in names & set(self.maps):
            self._end_items(name, status)

    def _end_items(self, name: str, status: StageStatus) -> None:
        """The unfinished items of ``name`` never will finish: ``status``."""
        parts = self.maps[name].unfinished()
        self.maps[name].mark(parts, status)
        self.out.extend(ItemStatus(name, part, status) for part in parts)

    # --- the rest of the rules -------------------------------------------------------------
    def _make_ready(self, name: str) -> None:
        self._queue(name)
        self._set(name, StageStatus.QUEUED)

    def _queue(self, name: str) -> None:
        """Put ``name`` (a stage, or a mapped stage with items to hand out) in line."""
        self._order += 1
        self.queued[name] = self._order
        heapq.heappush(self.ready, (-self.plan.priority.get(name, 0.0), self._order, name))

    def _retry(self, when: float, name: str, item: int) -> None:
        self._order += 1
        heapq.heappush(self.retry_at, (when, self._order, name, item))

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
            if not blocked and self.status[dependent] is StageStatus.PENDING:
                self._make_ready(dependent)

    def _chain(self, name: str) -> None:
        """``name`` was handed out to an executor that ``chains``: the stages after it
        that wait for it alone, one after the other, go too (up to ``CHAIN``), to run on
        its worker as soon as it ends, with no round trip to the driver between them."""
        for _ in range(CHAIN):
            followers = self.dependents[name]
            if len(followers) != 1:
                return
            follower = followers[0]
            if self.blocked[follower] != {name} or follower in self.plan.linked \
                    or self.status[follower] is not StageStatus.PENDING:
                return
            self.blocked[follower].clear()
            self._set(follower, StageStatus.QUEUED)
            self.running.add(follower)
            self.out.append(Hand(follower, follower, self.attempts[follower],
                                 keep=self.takers[follower] <= 1, after=name))
            name = follower

    def _withdraw_dependents(self, name: str) -> None:
        """Take back the stages handed out behind ``name`` (a pipelining executor's): they
        wait for its next attempt."""
        stack = [name]
        while stack:
            upstream = stack.pop()
            for dependent in self.dependents[upstream]:
                if self.status[dependent] not in WAITING:
                    continue
                self.blocked[dependent].add(upstream)
                self.queued.pop(dependent, None)
                if dependent in self.running:
                    self.running.discard(dependent)
                    self.out.append(Withdraw(frozenset({dependent})))
                self._set(dependent, StageStatus.PENDING)
                stack.append(dependent)

    def _fail(self, name: str, error: StageError) -> None:
        self._set(name, StageStatus.FAILED, error=error)
        below, stack = set(), list(self.dependents[name])
        while stack:
            dependent = stack.pop()
            if not self.status[dependent].finished:
                self._set(dependent, StageStatus.SKIPPED)
                below.add(dependent)
                stack.extend(self.dependents[dependent])
        handed_out = below & self.running
        if handed_out:  # a pipelining executor took them already
            self.running -= handed_out
            self.out.append(Withdraw(frozenset(handed_out)))
        self._drop_items(below, StageStatus.SKIPPED)
        if self.fail_fast:
            self.cancel()

    def _set(self, name: str, status: StageStatus, *, worker: str | None = None,
             error: StageError | None = None) -> None:
        """The one place a stage's status changes."""
        old = self.status[name]
        if status.finished:
            self.running.discard(name)
            self.queued.pop(name, None)
            self.left -= not old.finished
        elif old.finished:
            self.left += 1  # it runs again: its result was lost
        self.status[name] = status
        self.out.append(Status(name, status, self.attempts[name], worker, error))

"""The scheduler's loop: the one thread that moves work between the scheduling core
(``pydags.core``, which decides) and an executor (which runs), and writes what happens
into the run's recorder (``pydags.recorder``, which users read).

Each turn it asks the core which jobs go out, makes each job from the results this run
works with (kept here: a later run of the pipeline may let the run's own go while this one
goes on), hands it to the executor, then tells the core every piece of news the executor
has, and the time, for retries. Each decision the core makes is carried out in order: a
status goes to the recorder (which tells the subscribers), a withdrawal to the executor,
an ``Expand`` makes a mapped stage's items from its arguments.

Interrupts
    On the main thread the first Ctrl-C interrupts the run: queued stages are CANCELLED,
    running ones stopped. Presses while it cleans up wait until it is done, so every stage
    ends with a final status whatever the timing.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

from pydags import heap
from pydags.arguments import items_of, mismatch, resolve_arguments
from pydags.core import Core
from pydags.decisions import Expand, Hand, ItemStatus, Status, Withdraw
from pydags.errors import LostResult, MapError
from pydags.executors.attempt import error_from_exception
from pydags.executors.base import Executor
from pydags.known import Keeper
from pydags.mapping import MappedStage, shown
from pydags.plan import Plan
from pydags.protocol import ErrorKind, Job, Outcome, Printed, StageError, Started
from pydags.recorder import Recorder
from pydags.results import Results
from pydags.status import StageStatus

POLL_SECONDS = 0.1  # how often a waiting loop looks for a cancel request

__all__ = ["Plan", "Scheduler"]


class Scheduler:
    """Runs one plan on one executor, writing every change into the run's recorder."""

    def __init__(self, plan: Plan, executor: Executor, *, fail_fast: bool = False,
                 cached: dict[str, Any] | None = None, known_items: list[Any] = (),
                 keeper: Keeper | None = None):
        self.plan, self.executor, self.keeper = plan, executor, keeper
        self.cached = cached or {}
        self.known_items = list(known_items)  # where items' results known already are kept
        # only maps' batches are sized by it, and a cluster is asked for it with a round trip
        parallelism = executor.parallelism if plan.linked else 1
        self.core = Core(plan, capacity=executor.capacity, parallelism=parallelism,
                         pipelines=executor.pipelines, fail_fast=fail_fast,
                         chains=executor.chains)
        self.results = Results()  # what this run works with: its own
        self.maps: dict[str, MappedStage] = {}  # how to make each mapped stage's batches
        self.values: dict[str, list[Any]] = {}  # each mapped stage's items' results
        self.recorder: Recorder

    # --- the loop ------------------------------------------------------------------------
    def execute(self, recorder: Recorder, cancelled: threading.Event) -> None:
        """Run every stage to a final status. On KeyboardInterrupt: cancel, clean up, re-raise."""
        self.recorder = recorder
        interrupted: BaseException | None = None
        presses = _Interrupts()
        with presses.held():
            recorder.mark_started()
            try:
                self.executor.start()
                self._begin()
                self._loop(cancelled)
            except BaseException as exc:
                presses.cleaning = True
                interrupted = exc
                self.core.cancel()
                self._apply()
                raise
            finally:
                presses.cleaning = True
                if self.keeper is not None:  # it stores what it has, then ends
                    self.keeper.finish()
                self.executor.shutdown()
                recorder.mark_finished(interrupted)
        if presses.count and interrupted is None:  # pressed while the run was ending
            raise KeyboardInterrupt

    def _loop(self, cancelled: threading.Event) -> None:
        core = self.core
        while core.left:
            if cancelled.is_set():
                core.cancel()
                self._apply()
                break
            self._hand_out()
            if not core.running:
                if not core.left:
                    break  # the last stages ended as they were handed out
                if core.wakeup is None:
                    raise RuntimeError("pydags scheduler stalled: no stage can run")
                time.sleep(max(0.0, min(POLL_SECONDS, core.wakeup - time.time())))
            else:
                for news in self.executor.poll(POLL_SECONDS):
                    self._tell(news)
            if core.retry_at:
                core.due(time.time())
            heap.refresh()
            self._apply()

    def _begin(self) -> None:
        for name, value in self.cached.items():
            self.results[name] = value
            self.recorder.known(name, value)
            if name in self.plan.linked and isinstance(value, list):  # its items too
                self.values[name] = list(value)
                self.recorder.mapped(name, self.values[name])
                self.core.known_whole(name, len(value))
        self.core.begin(set(self.cached))
        self._apply()

    def _hand_out(self) -> None:
        while True:
            self.core.capacity = self.executor.capacity  # short jobs: more per worker
            self.core.hand_out()
            if not self._apply():
                return

    def _apply(self) -> bool:
        """Carry out the core's decisions, in order; True if one was to expand a map (the
        core then has more to hand out)."""
        if not self.core.out:
            return False
        expanded = False
        for decision in self.core.take():
            if isinstance(decision, Status):
                self._status(decision)
            elif isinstance(decision, Hand):
                self._submit(decision)
            elif isinstance(decision, ItemStatus):
                self.recorder.item_status(decision.stage, decision.items, decision.status,
                                          decision.error)
            elif isinstance(decision, Withdraw):
                self.executor.cancel(set(decision.keys))
            elif isinstance(decision, Expand):
                self._expand(decision.stage)
                expanded = True
        return expanded

    def _status(self, decision: Status) -> None:
        name, status = decision.stage, decision.status
        if status is StageStatus.DONE and name in self.maps:
            self.results[name] = self.values[name]
            self.recorder.known(name, self.values[name])
        if status is StageStatus.DONE and self.keeper is not None:
            self.keeper.keep(name, self.results.held(name))
        self.recorder.status(name, status, attempt=decision.attempt, worker=decision.worker,
                             error=decision.error)

    # --- jobs -----------------------------------------------------------------------------
    def _submit(self, hand: Hand) -> None:
        if hand.items is not None:
            mapped = self.maps[hand.stage]
            work, sources = mapped.batch(hand.items, self.executor)
            self.executor.submit(Job(hand.key, work, sources, {}, attempt=hand.attempt,
                                     timeout=self.plan.stages[hand.stage].timeout))
            return
        try:
            job = self._job(hand)
        except Exception as exc:  # an argument it takes cannot be read, say
            self._tell(_unprepared(hand.key, hand.attempt, exc))
            return
        self.executor.submit(job)

    def _job(self, hand: Hand) -> Job:
        name = hand.stage
        stage = self.plan.stages[name]
        upstream = {d: self.executor.upcoming(d) if d == hand.after
                    else self.executor.upstream(d, self.results)
                    for d in self.plan.dependencies[name]}
        args, kwargs = self._arguments(name, upstream)
        inputs = {d: upstream[d] for d in self.plan.inputs[name]}
        return Job(name, _function(self.plan, name), args, kwargs, attempt=hand.attempt,
                   timeout=stage.timeout, inputs=inputs, keep=hand.keep, after=hand.after)

    def _arguments(self, name: str, results: dict[str, Any]) -> tuple[tuple, dict]:
        """Stage ``name``'s arguments, the stages in them replaced by their ``results``;
        with none in them (the plan walked them), as they are: a map's million items are
        not walked again."""
        stage = self.plan.stages[name]
        if not self.plan.inputs[name]:
            args, kwargs = stage.arguments
            return args, dict(kwargs)
        return resolve_arguments(stage, results, self.plan.names)

    def _tell(self, news: Started | Printed | Outcome) -> None:
        """Tell the core; if the news is about a job it still wants, record its facts."""
        core, recorder, now = self.core, self.recorder, time.time()
        batch = core.batches.get(news.name)  # (stage, items, attempt) of a batch of items
        if self.keeper is not None:
            self.keeper.last_news = now  # it writes in the run's pauses
        if not core.tell(news, now):
            return
        if batch is None:
            if isinstance(news, Printed):
                recorder.printed(news.name, news.text)
            elif isinstance(news, Started):
                recorder.attempt_started(news.name, news.attempt, news.worker, news.time)
            elif not news.lost:
                recorder.attempt_ended(news)
                if news.ok:
                    self.results[news.name] = news.value
        else:
            self._tell_items(news, *batch[:2])

    def _tell_items(self, news: Started | Printed | Outcome, name: str, items: range) -> None:
        if isinstance(news, Printed):
            self.recorder.printed(name, news.text, keep=False)
        elif isinstance(news, Started):
            self.recorder.items_started(name, items, news.worker, news.time)
        elif news.ok:
            self.recorder.items_ended(name, items, news.value, news.worker, news.output)
            if self.known_items:
                errors = news.value.errors
                done = [i for i in items if i - items.start not in errors] if errors else items
                for source in self.known_items:
                    source.keep(name, self.values[name], done)
        else:
            self.recorder.items_tried(name, items, news.start, news.end, news.worker,
                                      news.output)

    # --- mapped stages ---------------------------------------------------------------------
    def _expand(self, name: str) -> None:
        """Know mapped stage ``name``'s items from its arguments, and tell the core."""
        linked = self.plan.linked[name]
        try:
            results = {d: self.values[d] if d in self.values and d in linked
                       else self.results[d]  # a map known whole (cached, resumed) too
                       for d in self.plan.inputs[name]}
            args, kwargs = self._arguments(name, results)
            sources = [items_of(v, f"stage {name!r}, mapped argument {p} (the result of "
                                f"{linked[p]!r})" if linked[p] else
                                f"stage {name!r}, mapped argument {p}")
                       for p, v in enumerate(args)]
            lengths = dict(enumerate(map(len, sources)))
            if len(set(lengths.values())) > 1:
                raise MapError(f"stage {name!r}: mapped arguments have different lengths: "
                               + mismatch(lengths))
            function = _function(self.plan, name)
        except LostResult as exc:  # a result it takes went with the worker that kept it
            lost = tuple(d for d in self.plan.dependencies[name]
                         if getattr(self.results.held(d), "lost", False))
            if lost:
                self.core.lost(name, lost)
            else:
                self.core.unmappable(name, _unmappable(name, exc))
            return
        except Exception as exc:
            self.core.unmappable(name, _unmappable(name, exc))
            return
        count = lengths[0]
        mapped = MappedStage(name, function, sources, linked,
                             self.executor.share(kwargs) if kwargs else kwargs)
        self.maps[name] = mapped
        self.values[name] = [None] * count
        self.recorder.mapped(name, self.values[name])
        known: dict[int, Any] = {}
        for source in self.known_items:
            known |= source.find(name, mapped, count)
        for i, value in known.items():
            self.values[name][i] = value
        self.core.expanded(name, count, set(known), lambda i: shown(mapped.arguments(i)))


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


def _function(plan: Plan, name: str) -> Any:
    """The function stage ``name``'s worker calls, as planned; raises what kept it from
    being made (its edited module no longer imports, say)."""
    function = plan.functions[name]
    if isinstance(function, Exception):
        raise function
    return function


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

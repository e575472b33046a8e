"""Worker processes on this machine, one job at a time each, the next ones queued when short.

Each worker is an interpreter of its own (``pydags.executors.worker``) in its own process
group, talking over two pipes, taken from this process's pool of warm workers and given
back at the end of the run. Because pydags knows which worker runs which stage, a timeout,
a cancel or a crash stops or blames exactly that stage: its worker is killed (with
anything it started) and replaced, and the other stages go on."""

from __future__ import annotations

import contextlib
import itertools
import pickle
import select
import time
from collections.abc import Collection
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from pydags.calls import SentFunction, StageCall
from pydags.executors import buffers, kept, pool
from pydags.executors.base import Executor
from pydags.executors.link import describe_exit
from pydags.executors.slots import Sent, Slot, Upcoming, Waiting, behind, kind_of, plainly
from pydags.executors.worker import (
    CONTEXT,
    DROP,
    JOBS,
    NEXT,
    OUTPUT,
    STARTED,
    context,
)
from pydags.protocol import ErrorKind, Job, Outcome, Printed, StageError, Started

if TYPE_CHECKING:
    from pydags.results import Results


BUDGET_SECONDS = 0.002  # of short jobs queued on a worker: hides the round trip to it
MOST_QUEUED = 32  # jobs on one worker at once
LIVENESS_SECONDS = 0.05  # how often busy workers that said nothing are checked for life


class ProcessExecutor(Executor):
    """Run jobs in ``workers`` worker processes.

    A worker runs one job at a time. When this run's jobs turn out short, a worker is given
    the next ones before its current one ends (up to ``BUDGET_SECONDS`` of expected work, in
    one message), so it never waits for the driver between them; a job of unknown or long
    duration goes alone, and nothing waits behind it.
    """

    chains = True  # a line of stages goes to one worker at once (``Core._chain``)

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._slots: list[Slot] = []
        self._news: list[Started | Printed | Outcome] = []
        self._context: tuple | None = None  # the driver's working directory, environment, path
        # (id of a stage function, by reference?) -> (a call of it, kept so that the id stays
        # its own; its bytes)
        self._sent: dict[tuple[int, bool], tuple[StageCall, SentFunction]] = {}
        self._numbers = itertools.count(1)
        self._seconds: dict[Any, float] = {}  # kind of job -> its recent duration
        self._typical: float | None = None  # the recent duration of any job
        self._given: dict[str, Sent] = {}  # stage -> its job, given to a worker, not ended
        self._checked = 0.0  # when the busy workers were last seen alive

    @property
    def capacity(self) -> int:  # type: ignore[override]
        if not self._slots:
            return self.workers
        return sum(len(s.queued) + (s.running is not None) + self._room(s)
                   for s in self._slots)

    @property
    def parallelism(self) -> int:
        return self.workers

    def upcoming(self, name: str) -> Any:
        return Upcoming(self._given.get(name))

    def start(self) -> None:
        self._context = context()  # warm workers take the driver's as it is now
        self._slots = [Slot(f"worker-{i + 1}", worker)
                       for i, worker in enumerate(pool.POOL.take(self.workers))]

    def submit(self, job: Job) -> None:
        inputs = {name: v for name, v in job.inputs.items() if isinstance(v, kept.Kept)}
        function = job.function
        if isinstance(function, StageCall):  # a run's jobs share their function's bytes
            key = (id(function.function), function.by_reference)  # stages of one function too
            if key not in self._sent:
                self._sent[key] = (function, SentFunction(function))
            function = self._sent[key][1]
        keep = kept.new_key() if job.keep else None
        after = self._given.get(job.after) if job.after else None
        if job.after and after is None:  # it failed to go out: it takes it back
            self._news.append(_lost(job, {job.after: None}))
            return
        slot = self._place(list(inputs.values())) if after is None else self._holding(after)
        files: list[str] = []
        try:
            # a job goes as a tuple (``worker.job_from``): a dataclass pickles far slower
            if isinstance(function, SentFunction) and plainly(job.args) \
                    and plainly(job.kwargs.values()):  # the C pickler will do
                payload = pickle.dumps((job.name, function.data, job.args, job.kwargs,
                                        job.attempt, job.timeout, keep), protocol=5)
            else:
                with kept.sending_to(slot.worker) if inputs else contextlib.nullcontext():
                    payload = buffers.dumps((job.name, function, job.args, job.kwargs,
                                             job.attempt, job.timeout, keep), files)
        except Exception as exc:
            buffers.delete(files)
            lost = isinstance(exc, kept.LostResult)
            self._news.append(_lost(job, inputs) if lost else _unsendable(job, exc))
            return
        kind = kind_of(job.function)
        self._given[job.name] = sent_job = Sent(next(self._numbers), job, payload, files, kind,
                                                 self._seconds.get(kind), bool(inputs), after)
        slot.queued.append(sent_job)
        slot.worker.busy = True  # from now on, it drops no result it kept

    def _holding(self, sent: Sent) -> Slot:
        """The slot whose worker runs or will run ``sent``."""
        return next(s for s in self._slots if s.running is sent or sent in s.queued)

    def _room(self, slot: Slot) -> int:
        """How many more jobs ``slot`` may take now."""
        if slot.running is None and not slot.queued:
            return 1
        if self._typical is None or len(slot.queued) >= MOST_QUEUED - 1:
            return 0
        ahead = slot.ahead
        if ahead >= BUDGET_SECONDS:
            return 0
        return min(MOST_QUEUED - 1 - len(slot.queued),
                   int((BUDGET_SECONDS - ahead) / max(self._typical, 1e-6)))

    def _place(self, inputs: Collection[kept.Kept]) -> Slot:
        """A worker with room: the one keeping most of the job's inputs if one does; else
        the least busy, leaving the workers keeping results free for the stages taking them
        (with no room anywhere, the one whose work ends soonest: never behind a long job)."""
        free = [s for s in self._slots if self._room(s)]
        if len(free) < 2:
            return free[0] if free else min(self._slots, key=lambda s: s.ahead)
        if inputs:
            return max(free, key=lambda s: sum(k.nbytes for k in inputs if k.on(s.worker)))
        return min(free, key=lambda s: (s.busy + len(s.queued), len(s.worker.kept)))

    def _flush(self) -> bool:
        """Send every worker the jobs given to it since, in one message each; True if one
        had died (its jobs went to its replacement, to be sent)."""
        died = False
        for slot in self._slots:
            if not (unsent := slot.queued.unsent()):
                continue
            try:
                if slot.worker.context is not self._context:
                    if slot.worker.context != self._context:
                        slot.worker.send(CONTEXT + pickle.dumps(self._context))
                    slot.worker.context = self._context
                slot.worker.send(
                    JOBS + pickle.dumps([(s.number, s.after.number if s.after else 0,
                                          s.payload) for s in unsent]))
            except OSError:  # it died since: while it ran a job, or idle since the last run
                self._died(slot)
                died = True
                continue
            for sent in unsent:
                sent.sent = True
        return died

    def share(self, value: Any) -> Any:
        """``value`` with its large buffers written to shared memory once and mapped here:
        every job that gets it then carries a reference to those pages, not a copy."""
        written: list[str] = []
        try:
            data = buffers.dumps(value, written)
        except Exception:  # submit() says why it cannot be sent
            return value
        return buffers.loads(data) if written else value

    def upstream(self, name: str, results: Results) -> Any:
        return results.held(name)  # a result a worker keeps stays there until needed

    def poll(self, timeout: float) -> list[Started | Printed | Outcome]:
        for _ in range(3):  # jobs of a worker that died go to its replacement
            if not self._flush():
                break
        if self._news:
            news, self._news = self._news, []
            return news
        busy = {s.worker.outbox: s for s in self._slots if s.busy}
        deadlines = [s.deadline for s in busy.values() if s.deadline is not None]
        if deadlines:
            timeout = max(0.0, min(timeout, min(deadlines) - time.time()))
        readable = self._wait(busy, timeout)
        for conn in readable:
            if busy[conn].worker.outbox is conn:  # not replaced meanwhile
                self._receive(busy[conn])
        now = time.time()
        checking = now - self._checked >= LIVENESS_SECONDS  # a system call per worker
        self._checked = now if checking else self._checked
        for conn, slot in busy.items():
            if not slot.busy or slot.worker.outbox is not conn:
                continue
            if checking and conn not in readable and not slot.worker.alive():
                # Dead, though its pipe is open: something it forked holds the pipe.
                self._died(slot)
            elif slot.deadline is not None and now >= slot.deadline:
                self._timed_out(slot, now)
        news, self._news = self._news, []
        return news

    def _wait(self, busy: dict[Connection, Slot], timeout: float) -> set[Connection]:
        """The outboxes of ``busy`` with news, waited for up to ``timeout`` seconds while
        what waits to be sent to any worker is written."""
        # select.poll, not multiprocessing's wait(): that builds a selector each time
        writing = {s.worker.inbox.fileno(): s for s in self._slots if s.worker.unsent}
        poller = select.poll()
        reading = {conn.fileno(): conn for conn in busy}
        for fd in reading:
            poller.register(fd, select.POLLIN)
        for fd in writing:
            poller.register(fd, select.POLLOUT)
        readable = set()
        for fd, _ in poller.poll(timeout * 1000):
            if fd in reading:
                readable.add(reading[fd])
            elif writing[fd].worker.inbox.fileno() == fd:
                try:
                    writing[fd].worker.write()
                except OSError:  # it died
                    self._died(writing[fd])
        return readable

    def _receive(self, slot: Slot) -> None:
        worker = slot.worker
        try:
            messages = worker.messages()
        except (EOFError, OSError):
            self._died(slot)
            return
        for data in messages:
            if slot.worker is not worker:
                return  # replaced meanwhile: the rest was its, and is void
            self._handle(slot, data)

    def _handle(self, slot: Slot, data: bytes) -> None:
        if data.startswith(OUTPUT):
            if slot.running is not None:  # not what a thread of it printed between jobs
                text = data[len(OUTPUT):].decode("utf-8", "replace")
                slot.printed.append(text)
                self._news.append(Printed(slot.running.job.name, slot.running.job.attempt, text))
        elif data.startswith(STARTED):
            self._started(slot, int(data[len(STARTED):]))
        elif data.startswith(NEXT):
            number, _, data = data[len(NEXT):].partition(b"\x00")
            self._ended(slot, data)
            self._started(slot, int(number))
        else:
            self._ended(slot, data)

    def _started(self, slot: Slot, number: int) -> None:
        while slot.queued and slot.queued[0].number != number and slot.queued[0].after:
            self._forget(slot.queued.popleft())  # chained behind a job that failed: skipped
        if number in slot.dropped or not slot.queued or slot.queued[0].number != number:
            # It began a job withdrawn meanwhile: that job must not run.
            self._replace(slot, "was stopped when a stage given to it was withdrawn",
                          rescue=True)
            return
        slot.running = sent = slot.queued.popleft()
        job = sent.job
        # the timeout counts from now, not from when the job was sent
        slot.started = now = time.time()
        slot.deadline = now + job.timeout if job.timeout else None
        slot.printed = []
        self._news.append(Started(job.name, job.attempt, slot.label, now))

    def _ended(self, slot: Slot, data: bytes) -> None:
        sent, slot.running, slot.deadline = slot.running, None, None
        if sent is None:
            return  # the job of a worker replaced meanwhile
        self._given.pop(sent.job.name, None)
        job = sent.job
        try:
            outcome = buffers.loads(data)
            if type(outcome) is tuple:  # plain, as ``worker.encode`` sends it
                outcome = Outcome(*outcome)
        except Exception as exc:  # the result's own unpickling failed, not the worker
            outcome = Outcome(job.name, job.attempt, False, start=slot.started, end=time.time(),
                              error=StageError(
                                  ErrorKind.RESULT, f"the result of stage {job.name!r} could "
                                  f"not be loaded here: {type(exc).__name__}: {exc}"))
        finally:
            buffers.delete(sent.files)
        outcome.name, outcome.attempt, outcome.worker = job.name, job.attempt, slot.label
        sent.ok = outcome.ok
        if not outcome.ok:  # the worker skips the jobs chained behind it
            for follower in behind(slot.queued, {sent}):
                slot.queued.remove(follower)
                self._forget(follower)
        if not slot.busy:
            slot.worker.busy = False
            kept.drop(slot.worker)
        if isinstance(outcome.value, kept.Kept):
            outcome.value.attach(slot.worker, job.name, slot.label)
        self._learn(sent.kind, outcome.end - outcome.start)
        self._news.append(outcome)

    def _learn(self, kind: Any, seconds: float) -> None:
        """A job of ``kind`` took ``seconds``: what the next ones are expected to take."""
        old = self._seconds.get(kind)
        self._seconds[kind] = seconds if old is None else 0.7 * old + 0.3 * seconds
        typical = self._typical
        self._typical = seconds if typical is None else 0.9 * typical + 0.1 * seconds

    def _timed_out(self, slot: Slot, now: float) -> None:
        sent = slot.running
        assert sent is not None
        job = sent.job
        self._drain(slot)
        label, output, started = slot.label, slot.output(), slot.started
        self._replace(slot, f"was stopped when stage {job.name!r} timed out", rescue=True)
        self._news.append(Outcome(
            job.name, job.attempt, False, worker=label, start=started, end=now, output=output,
            error=StageError(ErrorKind.TIMEOUT, f"stage {job.name!r} timed out after "
                             f"{job.timeout:g} s; its worker was stopped")))

    def _died(self, slot: Slot) -> None:
        """The worker died: blame the job it ran (or was loading), and replace it."""
        code, worker = slot.worker.process.wait(), slot.worker
        with contextlib.suppress(EOFError, OSError):  # what it said before it died counts
            while slot.worker is worker and worker.outbox.poll(0):
                for data in worker.messages():
                    if slot.worker is worker:
                        self._handle(slot, data)
        if slot.worker is not worker:
            return  # replaced meanwhile
        label, output, started = slot.label, slot.output(), slot.started or time.time()
        sent = slot.running
        if sent is None and slot.queued and slot.queued[0].sent:  # it died loading that one
            sent = slot.queued.popleft()
            buffers.delete(sent.files)
        self._replace(slot, f"died ({describe_exit(code)})")  # with what the stage started
        if sent is not None:
            self._news.append(Outcome(
                sent.job.name, sent.job.attempt, False, worker=label, start=started,
                end=time.time(), output=output,
                error=StageError(ErrorKind.CRASH, f"worker died ({describe_exit(code)})")))

    def _drain(self, slot: Slot) -> None:
        """Keep what a worker about to be killed printed but the driver has not read yet."""
        worker = slot.worker
        with contextlib.suppress(EOFError, OSError):
            for _ in range(1000):  # it may still be printing: read what is there, not more
                if not worker.outbox.poll(0):
                    return
                slot.printed.extend(data[len(OUTPUT):].decode("utf-8", "replace")
                                    for data in worker.messages() if data.startswith(OUTPUT))

    def _forget(self, sent: Sent) -> None:
        """A job given to a worker that will never run there."""
        buffers.delete(sent.files)
        if self._given.get(sent.job.name) is sent:
            del self._given[sent.job.name]

    def cancel(self, names: set[str]) -> None:
        for slot in self._slots:
            withdrawn = [sent for sent in slot.queued if sent.job.name in names]
            for sent in withdrawn:
                slot.queued.remove(sent)
                self._forget(sent)
            if slot.running is not None and slot.running.job.name in names:
                self._replace(slot, f"was stopped when stage {slot.running.job.name!r} was "
                              "cancelled", rescue=True)
                continue
            numbers = [sent.number for sent in withdrawn if sent.sent]
            if numbers:
                slot.dropped.update(numbers)
                try:
                    slot.worker.send(DROP + pickle.dumps(numbers))
                except OSError:
                    self._died(slot)

    def _replace(self, slot: Slot, why: str, rescue: bool = False) -> None:
        """Kill the slot's worker (and all it started; ``rescue``: fetching what it keeps
        first); a new one takes its place, and the jobs given to it. What it kept is lost,
        ``why``."""
        if rescue:
            kept.rescue(slot.worker, why)
        pool.kill(slot.worker, why)
        if slot.running is not None:
            self._forget(slot.running)
        slot.worker, slot.running, slot.deadline = pool.spawn(), None, None
        slot.dropped, slot.printed, slot.started = set(), [], 0.0
        queued, slot.queued, again = slot.queued, Waiting(), []
        for sent in queued:
            if sent.after is not None and sent.after not in slot.queued:
                # The job it was chained behind ran there: if it ended well, its result
                # went with the worker, and runs again; else it is withdrawn anyway.
                self._forget(sent)
                if sent.after.ok:
                    self._news.append(_lost(sent.job, {sent.after.job.name: None}))
            elif sent.keeps:  # its pickle named the results the worker kept
                self._forget(sent)
                again.append(sent.job)
            else:
                sent.sent = False
                slot.queued.append(sent)
        slot.worker.busy = slot.busy
        for job in again:
            self.submit(job)

    def shutdown(self) -> None:
        idle = []
        self._given.clear()
        for slot in self._slots:
            for sent in slot.queued:
                buffers.delete(sent.files)
            if slot.running is not None or slot.dropped or any(s.sent for s in slot.queued):
                # interrupted mid-stage, or given jobs it may yet start: not fit to reuse
                kept.rescue(slot.worker, "was stopped when the run was interrupted")
                pool.kill(slot.worker, "was stopped when the run was interrupted")
                if slot.running is not None:
                    buffers.delete(slot.running.files)
            else:
                idle.append(slot.worker)
        pool.POOL.give_back(idle)
        self._slots = []


def _lost(job: Job, inputs: dict[str, kept.Kept]) -> Outcome:
    """A job that cannot start: results it takes went with a worker that died."""
    now = time.time()
    lost = tuple(name for name, handle in inputs.items() if handle is None or handle.lost)
    return Outcome(job.name, job.attempt, False, start=now, end=now, lost=lost, error=StageError(
        ErrorKind.LOST, f"stage {job.name!r} could not start: the results of {', '.join(lost)} "
        "were lost with the worker that kept them"))


def _unsendable(job: Job, exc: Exception) -> Outcome:
    now = time.time()
    return Outcome(job.name, job.attempt, False, start=now, end=now, error=StageError(
        ErrorKind.UNSENDABLE, f"stage {job.name!r} could not be sent to a worker process: {exc}. "
        "Its function and arguments must be picklable (cloudpickle); "
        "use num_cores=1 to run it in this process"))

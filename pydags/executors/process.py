"""Worker processes on this machine, one job at a time each.

Each worker is an interpreter of its own (``pydags.executors.worker``) in its own process
group, talking over two pipes, taken from this process's pool of warm workers and given
back at the end of the run. Because pydags knows which worker runs which stage, a
timeout, a cancel or a crash stops or blames exactly that stage: its worker is killed
(with anything it started) and replaced, and the other stages go on.
"""

from __future__ import annotations

import contextlib
import pickle
import signal
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from typing import TYPE_CHECKING, Any

from pydags.calls import StageCall
from pydags.executors import buffers, kept, pool
from pydags.executors.attempt import OUTPUT_LIMIT
from pydags.executors.base import Executor
from pydags.executors.link import Worker
from pydags.executors.worker import CONTEXT, OUTPUT, STARTED, SentFunction, context
from pydags.protocol import ErrorKind, Job, Outcome, Printed, StageError, Started

if TYPE_CHECKING:
    from pydags.results import Results


@dataclass(eq=False)
class _Slot:
    name: str  # "worker-N": a replaced worker takes the slot of the one it replaces
    worker: Worker
    job: Job | None = None
    started: float = 0.0  # when the worker began the job (0 until it says so)
    deadline: float | None = None
    printed: list[str] = field(default_factory=list)  # by the job so far
    files: list[str] = field(default_factory=list)  # shared buffers written for the job

    def output(self) -> str:
        """What the job printed so far (kept when its worker is killed)."""
        return "".join(self.printed)[-OUTPUT_LIMIT:]

    @property
    def label(self) -> str:
        """How runs name this worker: its slot and process id."""
        return f"{self.name} (pid {self.worker.pid})"


class ProcessExecutor(Executor):
    """Run jobs in ``workers`` worker processes."""

    def __init__(self, workers: int) -> None:
        self.capacity = workers
        self._slots: list[_Slot] = []
        self._news: list[Started | Printed | Outcome] = []
        self._context: tuple | None = None  # the driver's working directory, environment, path
        # (id of a stage function, by reference?) -> (a call of it, kept so that the id stays
        # its own; its bytes)
        self._sent: dict[tuple[int, bool], tuple[StageCall, SentFunction]] = {}

    def start(self) -> None:
        self._context = context()  # warm workers take the driver's as it is now
        self._slots = [_Slot(f"worker-{i + 1}", worker)
                       for i, worker in enumerate(pool.POOL.take(self.capacity))]

    def submit(self, job: Job) -> None:
        inputs = {name: v for name, v in job.inputs.items() if isinstance(v, kept.Kept)}
        function = job.function
        if isinstance(function, StageCall):  # a run's jobs share their function's bytes
            key = (id(function.function), function.by_reference)  # stages of one function too
            if key not in self._sent:
                self._sent[key] = (function, SentFunction(function))
            function = self._sent[key][1]
        sent = Job(job.name, function, job.args, job.kwargs, job.attempt, job.timeout, {},
                   job.keep)  # not dataclasses.replace: a job each, by the thousand
        keep = kept.new_key() if job.keep else None
        for _ in range(3):  # an idle worker may have died since its last job
            slot = self._place(list(inputs.values()))
            slot.worker.busy = True  # from now on, it drops no result it kept
            files: list[str] = []
            try:
                with kept.sending_to(slot.worker) if inputs else contextlib.nullcontext():
                    payload = buffers.dumps((sent, keep), files)
            except Exception as exc:
                buffers.delete(files)
                slot.worker.busy = False
                lost = isinstance(exc, kept.LostResult)
                self._news.append(_lost(job, inputs) if lost else _unsendable(job, exc))
                return
            try:
                if slot.worker.context is not self._context:
                    if slot.worker.context != self._context:
                        slot.worker.inbox.send_bytes(CONTEXT + pickle.dumps(self._context))
                    slot.worker.context = self._context
                slot.worker.inbox.send_bytes(payload)
            except OSError:
                buffers.delete(files)
                self._replace(slot, "died")
                continue
            slot.job, slot.started, slot.deadline, slot.printed = job, 0.0, None, []
            slot.files, slot.worker.busy = files, True
            return
        self._news.append(Outcome(job.name, job.attempt, False, start=time.time(),
                                  end=time.time(), error=StageError(
                                      ErrorKind.CRASH, "no worker process could be started")))

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

    def _place(self, inputs: Collection[kept.Kept]) -> _Slot:
        """A free worker: the one keeping most of the job's inputs if one does."""
        free = [s for s in self._slots if s.job is None]
        if not inputs:  # leave the workers keeping results free for the stages taking them
            return min(free, key=lambda s: len(s.worker.kept)) if len(free) > 1 else free[0]
        return max(free, key=lambda s: sum(k.nbytes for k in inputs if k.on(s.worker)))

    def poll(self, timeout: float) -> list[Started | Printed | Outcome]:
        if self._news:
            news, self._news = self._news, []
            return news
        busy = {s.worker.outbox: s for s in self._slots if s.job is not None}
        deadlines = [w.deadline for w in busy.values() if w.deadline is not None]
        if deadlines:
            timeout = max(0.0, min(timeout, min(deadlines) - time.time()))
        readable = wait(list(busy), timeout)
        for conn in readable:
            slot = busy[conn]
            self._news.append(self._receive(slot))
            while slot.job is not None and conn.poll(0):  # the outcome often follows at once
                self._news.append(self._receive(slot))
        now = time.time()
        for conn, slot in busy.items():
            if slot.job is None:
                continue
            if conn not in readable and not slot.worker.alive():
                # Dead, though its pipe is open: something it forked holds the pipe.
                self._news.append(self._died(slot))
            elif slot.deadline is not None and now >= slot.deadline:
                self._news.append(self._timed_out(slot, now))
        news, self._news = self._news, []
        return news

    def _receive(self, slot: _Slot) -> Started | Printed | Outcome:
        job = slot.job
        assert job is not None
        try:
            data = slot.worker.outbox.recv_bytes()
        except (EOFError, OSError):
            return self._died(slot)
        if data.startswith(OUTPUT):
            text = data[len(OUTPUT):].decode("utf-8", "replace")
            slot.printed.append(text)
            return Printed(job.name, job.attempt, text)
        if data == STARTED:  # the timeout counts from now, not from when the job was sent
            slot.started = now = time.time()
            slot.deadline = now + job.timeout if job.timeout else None
            return Started(job.name, job.attempt, slot.label, now)
        slot.job, slot.worker.busy = None, False
        kept.drop(slot.worker)
        try:
            outcome: Outcome = buffers.loads(data)
        except Exception as exc:  # the result's own unpickling failed, not the worker
            return Outcome(job.name, job.attempt, False, worker=slot.label,
                           start=slot.started, end=time.time(), error=StageError(
                               ErrorKind.RESULT, f"the result of stage {job.name!r} could not be "
                               f"loaded here: {type(exc).__name__}: {exc}"))
        finally:
            buffers.delete(slot.files)
        outcome.name, outcome.attempt, outcome.worker = job.name, job.attempt, slot.label
        if isinstance(outcome.value, kept.Kept):
            outcome.value.attach(slot.worker, job.name, slot.label)
        return outcome

    def _timed_out(self, slot: _Slot, now: float) -> Outcome:
        job = slot.job
        assert job is not None
        self._drain(slot)
        label, output = slot.label, slot.output()
        self._replace(slot, f"was stopped when stage {job.name!r} timed out", rescue=True)
        return Outcome(job.name, job.attempt, False, worker=label, start=slot.started, end=now,
                       output=output,
                       error=StageError(ErrorKind.TIMEOUT, f"stage {job.name!r} timed out after "
                                        f"{job.timeout:g} s; its worker was stopped"))

    def _died(self, slot: _Slot) -> Outcome:
        job = slot.job
        assert job is not None
        code = slot.worker.process.wait()
        self._drain(slot)
        label, output = slot.label, slot.output()
        self._replace(slot, f"died ({_describe_exit(code)})")  # with what the stage started
        return Outcome(job.name, job.attempt, False, worker=label, start=slot.started,
                       end=time.time(), output=output,
                       error=StageError(ErrorKind.CRASH, f"worker died ({_describe_exit(code)})"))

    def _drain(self, slot: _Slot) -> None:
        """Keep what a worker about to be killed printed but the driver has not read yet."""
        outbox = slot.worker.outbox
        with contextlib.suppress(EOFError, OSError):
            for _ in range(1000):  # it may still be printing: read what is there, not more
                if not outbox.poll(0):
                    return
                data = outbox.recv_bytes()
                if data.startswith(OUTPUT):
                    slot.printed.append(data[len(OUTPUT):].decode("utf-8", "replace"))

    def cancel(self, names: set[str]) -> None:
        for slot in self._slots:
            if slot.job is not None and slot.job.name in names:
                self._replace(slot, f"was stopped when stage {slot.job.name!r} was cancelled",
                              rescue=True)

    def _replace(self, slot: _Slot, why: str, rescue: bool = False) -> None:
        """Kill the slot's worker (and all it started; ``rescue``: fetching what it keeps
        first); a new one takes its place. What it kept is lost, ``why``."""
        if rescue:
            kept.rescue(slot.worker, why)
        pool.kill(slot.worker, why)
        buffers.delete(slot.files)
        slot.worker, slot.job, slot.deadline = pool.spawn(), None, None

    def shutdown(self) -> None:
        busy = [s for s in self._slots if s.job is not None]
        for slot in busy:  # interrupted mid-stage: not fit to reuse
            kept.rescue(slot.worker, "was stopped when the run was interrupted")
            pool.kill(slot.worker, "was stopped when the run was interrupted")
        pool.POOL.give_back([s.worker for s in self._slots if s.job is None])
        self._slots = []


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _lost(job: Job, inputs: dict[str, kept.Kept]) -> Outcome:
    """A job that cannot start: results it takes went with a worker that died."""
    now = time.time()
    lost = tuple(name for name, handle in inputs.items() if handle.lost)
    return Outcome(job.name, job.attempt, False, start=now, end=now, lost=lost, error=StageError(
        ErrorKind.LOST, f"stage {job.name!r} could not start: the results of {', '.join(lost)} "
        "were lost with the worker that kept them"))


def _unsendable(job: Job, exc: Exception) -> Outcome:
    now = time.time()
    return Outcome(job.name, job.attempt, False, start=now, end=now, error=StageError(
        ErrorKind.UNSENDABLE, f"stage {job.name!r} could not be sent to a worker process: {exc}. "
        "Its function and arguments must be picklable (cloudpickle); "
        "use num_cores=1 to run it in this process"))

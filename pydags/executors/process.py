"""Worker processes on this machine, one job at a time each.

Each worker is a fresh interpreter (``pydags.executors.worker``) in its own process
group, talking over two pipes. Because pydags knows which worker runs which stage, a
timeout, a cancel or a crash stops or blames exactly that stage: its worker is killed
(with anything it started) and replaced, and the other stages go on.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait

import cloudpickle

from pydags.executors.base import Executor, Job, Outcome, StageError, Started
from pydags.executors.worker import STARTED


@dataclass
class _Worker:
    slot: str  # "worker-N": a replaced worker takes the slot of the one it replaces
    process: subprocess.Popen
    inbox: Connection  # parent writes jobs
    outbox: Connection  # parent reads outcomes
    job: Job | None = None
    started: float = 0.0  # when the worker began the job (0 until it says so)
    deadline: float | None = None

    @property
    def label(self) -> str:
        """How runs name this worker: its slot and process id."""
        return f"{self.slot} (pid {self.process.pid})"


class ProcessExecutor(Executor):
    """Run jobs in ``workers`` worker processes."""

    def __init__(self, workers: int) -> None:
        self.capacity = workers
        self._workers: list[_Worker] = []
        self._news: list[Started | Outcome] = []

    def start(self) -> None:
        self._workers = [self._spawn(f"worker-{i + 1}") for i in range(self.capacity)]

    def _spawn(self, slot: str) -> _Worker:
        job_read, job_write = os.pipe()
        out_read, out_write = os.pipe()
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        process = subprocess.Popen(
            [sys.executable, "-m", "pydags.executors.worker", str(job_read), str(out_write)],
            pass_fds=(job_read, out_write),
            start_new_session=True,
            env=env,
            cwd=os.getcwd(),
        )
        os.close(job_read)
        os.close(out_write)
        return _Worker(slot, process, Connection(job_write, readable=False),
                       Connection(out_read, writable=False))

    def submit(self, job: Job) -> None:
        try:
            payload = cloudpickle.dumps(job)
        except Exception as exc:
            self._news.append(_unsendable(job, exc))
            return
        for _ in range(3):  # an idle worker may have died since its last job
            worker = next(w for w in self._workers if w.job is None)
            try:
                worker.inbox.send_bytes(payload)
            except OSError:
                self._replace(worker)
                continue
            worker.job, worker.started, worker.deadline = job, 0.0, None
            return
        self._news.append(Outcome(job.name, job.attempt, False, start=time.time(),
                                  end=time.time(), error=StageError(
                                      "crash", "no worker process could be started")))

    def poll(self, timeout: float) -> list[Started | Outcome]:
        if self._news:
            news, self._news = self._news, []
            return news
        busy = {w.outbox: w for w in self._workers if w.job is not None}
        deadlines = [w.deadline for w in busy.values() if w.deadline is not None]
        if deadlines:
            timeout = max(0.0, min(timeout, min(deadlines) - time.time()))
        for conn in wait(list(busy), timeout):
            self._news.append(self._receive(busy[conn]))
        now = time.time()
        for worker in busy.values():
            if worker.job is not None and worker.deadline is not None and now >= worker.deadline:
                self._news.append(self._timed_out(worker, now))
        news, self._news = self._news, []
        return news

    def _receive(self, worker: _Worker) -> Started | Outcome:
        job = worker.job
        assert job is not None
        try:
            data = worker.outbox.recv_bytes()
        except (EOFError, OSError):
            code = worker.process.wait()
            self._replace(worker)
            return Outcome(job.name, job.attempt, False, worker=worker.label,
                           start=worker.started, end=time.time(),
                           error=StageError("crash", f"worker died ({_describe_exit(code)})"))
        if data == STARTED:  # the timeout counts from now, not from when the job was sent
            worker.started = now = time.time()
            worker.deadline = now + job.timeout if job.timeout else None
            return Started(job.name, job.attempt, worker.label, now)
        worker.job = None
        try:
            outcome: Outcome = cloudpickle.loads(data)
        except Exception as exc:  # the result's own unpickling failed, not the worker
            return Outcome(job.name, job.attempt, False, worker=worker.label,
                           start=worker.started, end=time.time(), error=StageError(
                               "result", f"the result of stage {job.name!r} could not be "
                               f"loaded here: {type(exc).__name__}: {exc}"))
        outcome.name, outcome.attempt, outcome.worker = job.name, job.attempt, worker.label
        return outcome

    def _timed_out(self, worker: _Worker, now: float) -> Outcome:
        job = worker.job
        assert job is not None
        self._replace(worker)
        return Outcome(job.name, job.attempt, False, worker=worker.label,
                       start=worker.started, end=now, error=StageError(
                           "timeout", f"stage {job.name!r} timed out after {job.timeout:g} s; "
                           "its worker was stopped"))

    def cancel(self, names: set[str]) -> None:
        for worker in self._workers:
            if worker.job is not None and worker.job.name in names:
                self._replace(worker)

    def _replace(self, worker: _Worker) -> None:
        _kill(worker)
        index = self._workers.index(worker)
        self._workers[index] = self._spawn(worker.slot)

    def shutdown(self) -> None:
        for worker in self._workers:
            worker.inbox.close()  # an idle worker exits when its inbox closes
        end = time.time() + 1.0
        open_pipes = [w.outbox for w in self._workers if w.job is None]
        while open_pipes and time.time() < end:  # a pipe reads EOF once its worker exited
            for conn in wait(open_pipes, max(0.0, end - time.time())):
                open_pipes.remove(conn)
        for worker in self._workers:
            _kill(worker)
        self._workers = []


def _kill(worker: _Worker) -> None:
    """Kill a worker and everything it started (its process group)."""
    worker.job = None
    # The process group also holds anything the stage started.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(worker.process.pid, signal.SIGKILL)
    worker.process.wait()
    for conn in (worker.inbox, worker.outbox):
        conn.close()


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _unsendable(job: Job, exc: Exception) -> Outcome:
    now = time.time()
    return Outcome(job.name, job.attempt, False, start=now, end=now, error=StageError(
        "send", f"stage {job.name!r} could not be sent to a worker process: {exc}. "
        "Its function and arguments must be picklable (cloudpickle); "
        "use num_cores=1 to run it in this process"))

"""The warm worker processes of this driver, shared by its runs.

A worker outlives the run that started it: the next ``start()`` takes it back with the
modules its stages imported still loaded, so a run's fixed cost is a few milliseconds,
not an interpreter start per worker. Workers idle for ``IDLE_SECONDS`` (environment
variable ``PYDAGS_IDLE_SECONDS``, default 300) exit, and so do all of them at interpreter
exit or on ``pydags.shutdown()``. A worker that ran a stage which timed out, was cancelled
or crashed is never reused: it is killed with everything it started. A worker may keep
results of the runs it served (``kept``); those are fetched before it is stopped. A worker
whose driver is gone cleans up after it and stops at once, busy or idle.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import fcntl
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from multiprocessing.connection import Connection, wait

from pydags.executors import buffers, kept, reaping
from pydags.executors.link import Worker
from pydags.executors.worker import STOP

IDLE_SECONDS = float(os.environ.get("PYDAGS_IDLE_SECONDS", "300"))
PIPE_BYTES = 1 << 20  # of each pipe to a worker: the most Linux gives by default
_spawned: weakref.WeakSet[Worker] = weakref.WeakSet()  # every worker not forgotten yet


def spawn() -> Worker:
    """Start a worker: a fresh interpreter in its own process group."""
    buffers.folder()  # made before the worker starts, so that it knows where it is
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    opened: list[int] = []
    try:
        job_read, job_write = os.pipe()
        opened += (job_read, job_write)
        out_read, out_write = os.pipe()
        opened += (out_read, out_write)
        ours, theirs = socket.socketpair()
        request_ours, request_theirs = ours.detach(), theirs.detach()
        opened += (request_ours, request_theirs)
        given = (job_read, out_write, request_theirs)  # the worker's ends
        process = subprocess.Popen(
            [sys.executable, "-m", "pydags.executors.worker", *map(str, given),
             str(os.getpid())],
            pass_fds=given, start_new_session=True, env=env, cwd=os.getcwd(),
            stdin=subprocess.DEVNULL)
    except OSError as exc:
        for fd in opened:
            os.close(fd)
        raise OSError(exc.errno, f"pydags could not start a worker process: {exc.strerror}"
                      + ("; this process has too many files open (see `ulimit -n`)"
                         if exc.errno == errno.EMFILE else "")) from exc
    for fd in given:
        os.close(fd)
    os.set_blocking(job_write, False)  # the driver never waits on a worker (Worker.send)
    if hasattr(fcntl, "F_SETPIPE_SZ"):  # Linux: a map's batches and results in fewer,
        for fd in (job_write, out_read):  # larger writes and reads
            with contextlib.suppress(OSError):  # more than the system allows
                fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    worker = Worker(process, Connection(job_write, readable=False),
                    Connection(out_read, writable=False), Connection(request_ours))
    _spawned.add(worker)
    return worker


def kill(worker: Worker, why: str = "was stopped") -> None:
    """Kill a worker and everything it started (its process group, and what left it); what
    it kept is lost."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(worker.pid, signal.SIGSTOP)  # nothing in it starts anything more
    reaping.stop_below(worker.pid)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(worker.pid, signal.SIGKILL)
    worker.process.wait()
    kept.lose(worker, why)
    for connection in (worker.inbox, worker.outbox, worker.requests):
        connection.close()


class Pool:
    """Idle workers waiting for the next run of this process."""

    def __init__(self) -> None:
        self._idle: list[Worker] = []
        self._lock = threading.Lock()
        self._owner = os.getpid()
        self._reaper: threading.Thread | None = None

    @property
    def idle(self) -> list[int]:
        """The process ids of the idle workers."""
        with self._lock:
            return [w.pid for w in self._idle]

    def take(self, count: int) -> list[Worker]:
        """``count`` workers: warm ones first, new ones for the rest."""
        with self._lock:
            self._forget_if_forked()
            taken = []
            while self._idle and len(taken) < count:
                worker = self._idle.pop()
                if worker.alive():
                    taken.append(worker)
                else:
                    kill(worker, "died")
        return taken + [spawn() for _ in range(count - len(taken))]

    def give_back(self, workers: list[Worker]) -> None:
        """Keep these idle workers for the next run."""
        now = time.time()
        with self._lock:
            self._forget_if_forked()
            for worker in workers:
                worker.idle_since, worker.busy = now, False
                kept.drop(worker)
            self._idle.extend(workers)
            if self._reaper is None:
                self._reaper = threading.Thread(target=self._reap, name="pydags-idle-workers",
                                                daemon=True)
                self._reaper.start()

    def close(self, rescue: bool = True) -> None:
        """Stop every idle worker now (``rescue``: fetching the results they keep first);
        with no worker left, the shared folder goes too if no result here maps it."""
        with self._lock:
            self._forget_if_forked()
            workers, self._idle = self._idle, []
        stop(workers, rescue=rescue)
        if not any(worker.alive() for worker in _spawned):
            buffers.release()

    def _reap(self) -> None:
        while True:
            time.sleep(min(IDLE_SECONDS, 5.0))
            cutoff = time.time() - IDLE_SECONDS
            with self._lock:
                old = [w for w in self._idle if w.idle_since <= cutoff]
                self._idle = [w for w in self._idle if w.idle_since > cutoff]
            stop(old)

    def _forget_if_forked(self) -> None:
        # A forked child shares its parent's pipes: those workers are not its own.
        if os.getpid() != self._owner:
            self._idle, self._owner, self._reaper = [], os.getpid(), None


def stop(workers: list[Worker], grace: float = 1.0, rescue: bool = True) -> None:
    """Ask idle workers to exit, then kill those still there (``rescue``: fetching the
    results they keep first)."""
    for worker in workers:
        if rescue:
            kept.rescue(worker, "exited")
        with contextlib.suppress(OSError):
            worker.inbox.send_bytes(STOP)
        worker.inbox.close()
    end = time.time() + grace
    open_pipes = {w.outbox: w for w in workers if w.alive()}
    while open_pipes and time.time() < end:  # a pipe reads EOF once its worker exited
        for conn in wait(list(open_pipes), max(0.0, end - time.time())):
            del open_pipes[conn]
    for worker in workers:
        kill(worker)


POOL = Pool()
atexit.register(POOL.close, rescue=False)  # nobody reads results any more

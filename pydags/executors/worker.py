"""A worker process: reads jobs from one pipe, runs them, writes outcomes to another.

Started by ``pool.spawn`` as ``python -m pydags.executors.worker IN OUT REQUESTS DRIVER``
(three file descriptors and the driver's process id): a fresh interpreter, so it works
the same whatever the multiprocessing start method is, and never re-imports the user's
``__main__``. Jobs arrive pickled by cloudpickle, so
functions defined in a notebook, in ``__main__``, by ``exec`` or as lambdas all run here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import io
import os
import pickle
import select
import shutil
import signal
import sys
import threading
import time
from collections import deque
from multiprocessing.connection import Connection

from pydags.calls import loaded_function
from pydags.executors import base, buffers, kept, reaping
from pydags.executors.attempt import capture_for_good, error_from_exception, execute
from pydags.executors.batch import BatchResult, ItemBatch, portable, sendable
from pydags.protocol import ErrorKind, Job, Outcome, StageError

# Messages other than outcomes start with NUL, which an outcome's pickle never does.
STARTED = b"\x00started"  # followed by a job's number: it begins
NEXT = b"\x00next"  # a job's number, NUL, the outcome of the one before: one ended, it begins
OUTPUT = b"\x00output"  # followed by what the stage printed since the last such message
STOP = b"\x00stop"  # from the driver: exit
CONTEXT = b"\x00context"  # from the driver: its working directory, environment and sys.path
JOBS = b"\x00jobs"  # from the driver: (number, after, pickle) of jobs to run in this order
DROP = b"\x00drop"  # from the driver: the numbers of jobs sent but withdrawn: skip them
FLUSH_SECONDS = 0.1  # what a stage prints reaches the driver at least this often
REAP_EVERY = 64  # jobs between collecting ended child processes, and whenever idle


class _Sender(io.TextIOBase):
    """What a stage prints, sent on to the driver while the stage runs."""

    def __init__(self, outbox: Connection, lock: threading.Lock):
        self.outbox, self.lock = outbox, lock
        self.parts: list[str] = []

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.parts.append(text)  # list.append is atomic: stage threads may print too
        return len(text)

    def flush(self) -> None:
        with self.lock:
            parts, self.parts = self.parts, []
            if parts:
                with contextlib.suppress(OSError):  # the driver is gone: serve() sees it too
                    self.outbox.send_bytes(OUTPUT + "".join(parts).encode("utf-8", "replace"))

    def keep_flushing(self) -> None:
        while True:
            time.sleep(FLUSH_SECONDS)
            self.flush()


def job_from(sent: tuple) -> tuple[Job, int | None]:
    """The job a driver sent (``ProcessExecutor.submit``), and the key to keep its result
    under: its function comes as the bytes of a ``SentFunction``, or as itself."""
    name, function, args, kwargs, attempt, timeout, keep = sent
    if type(function) is bytes:
        function = loaded_function(function)
    return Job(name, function, args, kwargs, attempt, timeout), keep


def encode(outcome: Outcome, batch: ItemBatch | None = None) -> bytes:
    """Pickle an outcome; an unpicklable result or exception becomes a clear failure (for
    a ``batch`` of items, the failure of the items whose results cannot be pickled)."""
    if outcome.error is None and type(outcome.value) in buffers.PLAIN:  # as a tuple: a
        return pickle.dumps((outcome.name, outcome.attempt, outcome.ok, outcome.value, None,
                             outcome.output, outcome.worker, outcome.start, outcome.end,
                             outcome.lost), protocol=5)  # dataclass pickles far slower
    if outcome.error is not None:
        outcome.error = portable(outcome.error)
    outcome.value = buffers.out_of_band(outcome.value)
    try:
        return buffers.dumps(outcome)
    except Exception as exc:
        if outcome.ok and batch is not None and isinstance(outcome.value, BatchResult):
            sendable(outcome.value, batch.stage, batch.first)
        elif outcome.ok:
            kind = type(outcome.value)
            outcome.ok, outcome.value = False, None
            outcome.error = StageError(
                ErrorKind.RESULT,
                f"stage {outcome.name!r} returned a {kind.__module__}.{kind.__qualname__} "
                f"that cannot be sent back from the worker ({exc}); return plain data, "
                "or write it to a store and return its key",
            )
        elif outcome.error is not None:
            # the traceback text still says what happened
            outcome.error = dataclasses.replace(outcome.error, exception=None)
        try:
            return buffers.dumps(outcome)
        except Exception:
            return buffers.dumps(Outcome(outcome.name, outcome.attempt, False,
                                             error=outcome.error, start=outcome.start,
                                             end=outcome.end))


def context() -> tuple[str | None, dict[str, str], list[str]]:
    """What a stage running in the driver would see around it: the working directory, the
    environment and ``sys.path`` (sent to a warm worker when they changed since)."""
    try:
        cwd: str | None = os.getcwd()
    except OSError:  # the driver's working directory was deleted
        cwd = None
    return cwd, dict(os.environ), list(sys.path)


def adopt(driver: tuple[str | None, dict[str, str], list[str]]) -> None:
    """Take the driver's working directory, environment and ``sys.path`` as this worker's."""
    cwd, environment, path = driver
    if cwd is not None:
        with contextlib.suppress(OSError):
            os.chdir(cwd)
    own = {k: os.environ[k] for k in (buffers.FOLDER_VARIABLE, "MPLBACKEND") if k in os.environ}
    os.environ.clear()
    os.environ.update(environment)
    os.environ.update(own)
    sys.path[:] = path
    importlib.invalidate_caches()


def serve(inbox: _Inbox, outbox: Connection) -> bool:
    """Run jobs until the driver says ``STOP`` (True) or the inbox closes without it (False:
    the driver is gone). Jobs come in order, several at a time when stages are short, each
    with its number and the key under which to keep its result here, if it may (``kept``).
    When a job ends with the next one here already, one message says both."""
    lock = threading.Lock()  # one message at a time on the outbox
    sender = _Sender(outbox, lock)
    threading.Thread(target=sender.keep_flushing, daemon=True).start()
    capture_for_good()
    # (number, number of the job it runs right after or 0, pickle) of the jobs sent, in order
    queue: deque[tuple[int, int, bytes]] = deque()
    told = 0  # the number of the job the driver knows started (with the last outcome)
    ran = 0  # jobs taken from the queue
    while True:
        if not queue or ran % REAP_EVERY == 0:
            reaping.reap()
        if not queue or inbox.waiting():  # a withdrawal may concern the next job
            stopped = _read(inbox, queue, wait=not queue)
            if stopped is not None:
                return stopped
            if not queue:
                continue
        number, after, data = queue.popleft()
        ran += 1
        if after and after not in kept.chained:
            continue  # the job it runs after failed: it does not run (the driver knows)
        start, job, value = time.time(), None, None
        kept.idle.clear()  # its writes wait: they must not slow the stage down
        base.loading_stages = True  # a module's top level may start a pipeline: refuse that
        try:
            job, keep = job_from(buffers.loads(data))
        except Exception as exc:
            error = error_from_exception(exc, ErrorKind.UNSENDABLE,
                                         "the worker could not load the stage")
            outcome = Outcome(getattr(exc, "stage", "?"), 0, False, error=error,
                              start=start, end=time.time())
            keep = None
        base.loading_stages = False
        if number != told and not _send(outbox, lock, STARTED + b"%d" % number):
            return False
        if job is not None:
            outcome = execute(job, interrupt_fails=True, stream=sender)
            value = outcome.value
            if keep is not None and outcome.ok:
                outcome.value = kept.keep(outcome.value, keep)
        kept.chained.pop(after, None)
        sys.stdout.flush()
        batch = getattr(job, "function", None)
        data = encode(outcome, batch if isinstance(batch, ItemBatch) else None)
        if number in inbox.followed:
            inbox.followed.discard(number)
            if outcome.ok:
                kept.chained[number] = value  # for the job chained behind it
        sender.flush()
        stopped = _read(inbox, queue, wait=False)
        while queue and queue[0][1] and queue[0][1] not in kept.chained:
            queue.popleft()  # chained behind a job that failed
        told = queue[0][0] if queue and stopped is None else 0
        if not _send(outbox, lock, NEXT + b"%d\x00" % told + data if told else data):
            return False
        if stopped is not None:
            return stopped
        if not queue:
            kept.idle.set()
        # Let the job's arguments go now, not when the next job comes: unmapping a big
        # buffer takes a while.
        job = outcome = data = batch = value = None


class _Inbox:
    """The pipe from the driver, and the numbers of the jobs it sent that others run after.
    Polled with one ``select.poll`` object kept for the worker's life: ``Connection.poll``
    builds a selector each time, which costs more than a trivial stage."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.poller = select.poll()
        self.poller.register(connection.fileno(), select.POLLIN)
        self.followed: set[int] = set()

    def waiting(self) -> bool:
        """Whether a message waits (or the pipe closed)."""
        return bool(self.poller.poll(0))

    def recv_bytes(self) -> bytes:
        return self.connection.recv_bytes()


def _read(inbox: _Inbox, queue: deque[tuple[int, int, bytes]], wait: bool) -> bool | None:
    """Take in the driver's messages waiting (``wait``: at least one): jobs join ``queue``,
    withdrawn ones leave it. True: told to stop; False: the driver is gone."""
    while wait or inbox.waiting():
        wait = False
        try:
            data = inbox.recv_bytes()
        except (EOFError, OSError):
            return False
        if data == STOP:
            kept.flush_writes()  # the results it was asked to store, before it goes
            return True
        if data.startswith(CONTEXT):
            adopt(pickle.loads(data[len(CONTEXT):]))
        elif data.startswith(DROP):
            dropped = set(pickle.loads(data[len(DROP):]))
            kept_jobs = [entry for entry in queue if entry[0] not in dropped]
            queue.clear()
            queue.extend(kept_jobs)
            inbox.followed = {entry[1] for entry in queue if entry[1]}
            for number in set(kept.chained) - inbox.followed:
                del kept.chained[number]  # no job is chained behind it any more
        else:
            jobs = pickle.loads(data[len(JOBS):])
            queue.extend(jobs)
            inbox.followed.update(entry[1] for entry in jobs if entry[1])
    return None


def _send(outbox: Connection, lock: threading.Lock, data: bytes) -> bool:
    """Send ``data`` to the driver; False if it is gone (a broken pipe)."""
    try:
        with lock:
            outbox.send_bytes(data)
    except OSError:
        return False
    return True


def watch_driver(driver: int, every: float = 0.1) -> None:
    """Stop this worker and everything it started (its process group) once the driver
    process is gone (killed, crashed, ended), so no stage outlives the run's owner."""
    while os.getppid() == driver:
        time.sleep(every)
    buffers.closed = True  # this worker writes no more shared files
    folder = os.environ.get(buffers.FOLDER_VARIABLE)
    if folder is not None and buffers.owner(folder) == driver:  # not one of a driver above
        # The driver cannot any more. Its other workers may still be writing there until
        # they too see it gone (a file added while the folder is deleted keeps it): again
        # until it is gone, as each of them does.
        end = time.time() + 5.0
        shutil.rmtree(folder, ignore_errors=True)
        while os.path.exists(folder) and time.time() < end:
            time.sleep(every / 4)
            shutil.rmtree(folder, ignore_errors=True)
    reaping.stop_below(os.getpid())
    os.killpg(0, signal.SIGKILL)


def main(argv: list[str]) -> None:
    buffers.in_worker = True
    reaping.become_subreaper()  # what a stage starts stays below this worker, daemons too
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when workers stop
    # A thread, not PR_SET_PDEATHSIG: that signal follows the driver's thread that started
    # the worker, not the driver process, and it would not reach what the stage started.
    driver = int(argv[3])  # not getppid(): the driver may have died while this one started
    threading.Thread(target=watch_driver, args=(driver,), daemon=True).start()
    inbox = _Inbox(Connection(int(argv[0]), writable=False))
    outbox = Connection(int(argv[1]), readable=False)
    threading.Thread(target=kept.answer, args=(Connection(int(argv[2])),), daemon=True).start()
    os.environ.setdefault("MPLBACKEND", "Agg")
    if not serve(inbox, outbox):
        watch_driver(driver)  # it is dying: clean up after it
    reaping.stop_below(os.getpid())  # told to stop: what its stages started stops too


if __name__ == "__main__":
    main(sys.argv[1:])

"""Results kept in the worker process that made them, so big data moves only when it must.

A stage whose result holds large buffers (``buffers.THRESHOLD`` bytes or more) and that at
most one other stage takes keeps its result in its worker: the driver gets a ``Kept``
handle (size and preview), and the stage taking the result is sent to that worker, where
it gets the very object, as in one process (data locality, as in Dask and Ray). Reading
the result in the driver, or sending it to a stage on another worker, fetches it: the
worker writes it to shared memory once (``buffers``) and the driver maps it.

Lifetimes: the worker keeps a result until its handle is gone or has fetched it; it then
forgets it as soon as it has no job (a job sent to it may still name it). Before a worker
is stopped (timeout, cancel, idle, ``pydags.shutdown()``), what it keeps for handles still
alive is fetched. A worker that dies takes its kept results with it: reading one raises
``LostResult``, and a stage that needs one makes the scheduler run its stage again.
"""

from __future__ import annotations

import contextlib
import itertools
import pickle
import queue
import threading
import time
import weakref
from collections.abc import Iterator
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

import cloudpickle

from pydags.errors import LostResult
from pydags.executors import buffers
from pydags.results import Remote, preview

if TYPE_CHECKING:
    from pydags.executors.link import Worker

FETCH_SECONDS = 60.0  # a worker answers a fetch between two bytecodes of its stage: soon
STORE_SECONDS = 600.0  # a worker writing a result it keeps to a store: a big one may be slow
RESCUE_SECONDS = 2.0  # at most this long fetching from a worker about to be stopped
_MISSING = object()
_keys = itertools.count(1)
_target = threading.local()  # the worker a job is being pickled for

# --- in a worker -------------------------------------------------------------
store: dict[int, Any] = {}  # key -> a result kept in this worker


def keep(value: Any, key: int) -> Any:
    """In a worker: keep ``value`` here if it holds large buffers and give its handle; else
    give it pickled already (so that it is not pickled twice), or as it is."""
    if type(value) in buffers.PLAIN:
        return value
    if type(value) in (bytes, bytearray):  # pickle would copy them: counted here
        if len(value) < buffers.THRESHOLD:
            return value
        store[key] = value
        return Kept(key, len(value), preview(value))
    size = 0

    def count(buffer: pickle.PickleBuffer) -> bool:
        nonlocal size
        nbytes = buffer.raw().nbytes
        size += nbytes if nbytes >= buffers.THRESHOLD else 0
        return nbytes < buffers.THRESHOLD  # the large ones out of band: not copied

    try:
        data = cloudpickle.dumps(value, protocol=5, buffer_callback=count)
    except Exception:  # cannot be sent: the outcome says so
        return value
    if not size:
        return _Pickled(data)
    store[key] = value
    return Kept(key, size, preview(value))


class _Pickled:
    """A value already pickled: unpickled as the value itself."""

    __slots__ = ("data",)

    def __init__(self, data: bytes):
        self.data = data

    def __reduce__(self) -> tuple:
        return pickle.loads, (self.data,)


chained: dict[int, Any] = {}  # job number -> its result, for the job chained behind it


def chained_result(number: int) -> Any:
    """In a worker: the result of job ``number``, which ran here just before (the argument
    of the job chained behind it)."""
    try:
        return chained[number]
    except KeyError:
        raise LostResult(f"this worker holds no result of job {number}") from None


def held(key: int) -> Any:
    """In a worker: the result kept under ``key`` (a job's argument pickled as a reference)."""
    try:
        return store[key]
    except KeyError:
        raise LostResult(f"this worker keeps no result under key {key}") from None


idle = threading.Event()  # set while the worker has no job (the main loop says)
idle.set()
_writes: queue.Queue[tuple[Any, Any, str, str]] = queue.Queue()
_failures: list[str] = []  # why results given to be stored were not, since the last flush
_writer: list[threading.Thread] = []


def _start_writing() -> None:
    if not _writer:
        _writer.append(threading.Thread(target=_write, name="pydags-writer", daemon=True))
        _writer[0].start()


def _write() -> None:
    """In a worker: store the kept results the driver asked for, each once no job runs (so
    that a write never slows a stage down)."""
    while True:
        value, target, where, stage = _writes.get()
        try:
            idle.wait()
            if value is _MISSING:
                raise LostResult("this worker no longer keeps it")
            target.set(where, value, pause=idle.wait)  # a local store: a DiskStore
        except Exception as exc:
            _failures.append(f"stage {stage!r} was not cached: {exc}")
        finally:
            value = None
            _writes.task_done()


def flush_writes() -> None:
    """In a worker about to stop: finish the writes asked for."""
    idle.set()
    _writes.join()


def answer(requests: Connection) -> None:
    """In a worker: answer the driver's fetches and drops (on a thread of its own, so a
    busy worker answers too) until the driver closes the connection."""
    while True:
        try:
            op, number, keys = requests.recv()
        except (EOFError, OSError):
            return
        if op == "drop":
            for key in keys:
                store.pop(key, None)
            continue
        if op == "store":  # written here, when idle: it need not travel to the driver first
            key, target, where, stage = keys
            _writes.put((store.get(key, _MISSING), target, where, stage))
            _start_writing()
            continue
        try:
            if op == "flush":
                _writes.join()
                failures, _failures[:] = list(_failures), []
                data = cloudpickle.dumps(failures)
            else:
                data = buffers.dumps(store[keys])
        except Exception as exc:
            data = cloudpickle.dumps(LostResult(f"{type(exc).__name__}: {exc}"))
        with contextlib.suppress(OSError):
            requests.send((number, data))


# --- in the driver -----------------------------------------------------------
class Kept(Remote):
    """A stage's result kept in the worker that made it (in the driver: attached to it)."""

    def __init__(self, key: int, nbytes: int, preview: str):
        self.key, self.nbytes, self.preview = key, nbytes, preview
        self.worker: Worker | None = None
        self.stage, self.label = "", ""
        self._value: Any = _MISSING
        self._lost: str | None = None
        self._lock = threading.Lock()

    def __reduce__(self) -> tuple:
        if self.worker is None:  # from the worker to the driver: the handle itself
            return Kept, (self.key, self.nbytes, self.preview)
        if self.on(getattr(_target, "worker", None)):  # to the worker that keeps it
            return held, (self.key,)
        return _same, (self.value(),)  # its large buffers go by shared memory

    def __repr__(self) -> str:
        where = ("lost" if self.lost else "fetched" if self._value is not _MISSING
                 else f"in {self.label}")
        return f"<result of stage {self.stage!r}, {self.nbytes / 1e6:.1f} MB, {where}>"

    def attach(self, worker: Worker, stage: str, label: str) -> None:
        """In the driver: the handle of ``stage``'s result, kept by ``worker``."""
        self.worker, self.stage, self.label = worker, stage, label
        worker.kept[self.key] = self
        weakref.finalize(self, forget, worker, self.key)

    def on(self, worker: Worker | None) -> bool:
        """Whether ``worker`` keeps this result (not fetched yet, not lost)."""
        return worker is not None and worker is self.worker and self._value is _MISSING \
            and self._lost is None

    def value(self, timeout: float = FETCH_SECONDS) -> Any:
        with self._lock:
            if self._value is _MISSING:
                if self._lost is not None:
                    raise LostResult(self._lost)
                assert self.worker is not None
                try:
                    self._value = fetch(self.worker, self.key, timeout)
                except LostResult as exc:
                    self.lose(f"{self.label}, which kept it, {exc}")
                    raise LostResult(self._lost) from None
                finally:
                    forget(self.worker, self.key)
            return self._value

    def store_in(self, target: Any, key: str) -> Worker | None:
        """Write the result to ``target`` (a store) under ``key``: by the worker that keeps
        it, when the store can be written from there (a folder on this machine), once it has
        no job; returns that worker (``flush`` it to know the write is done)."""
        with self._lock:
            keeping = self._value is _MISSING and self._lost is None
        worker = self.worker
        if keeping and worker is not None and getattr(target, "local", False) \
                and worker.alive():
            with worker.lock, contextlib.suppress(OSError):
                worker.requests.send(("store", 0, (self.key, target, key, self.stage)))
                return worker
        target.set(key, self.value())
        return None

    def lose(self, why: str) -> None:
        """The worker that kept this result is gone."""
        if self._value is _MISSING and self._lost is None:
            self._lost = (f"the result of stage {self.stage!r} was lost: {why}. Run the "
                          "pipeline again (start(resume=True) reruns only what is missing)")

    @property
    def lost(self) -> bool:
        """Whether the worker that kept it died before it was fetched."""
        return self._lost is not None


def new_key() -> int:
    """A key for a result a worker may keep (unique in this driver)."""
    return next(_keys)


@contextlib.contextmanager
def sending_to(worker: Worker) -> Iterator[None]:
    """Pickle jobs for ``worker``: the results it keeps go as references."""
    _target.worker = worker
    try:
        yield
    finally:
        _target.worker = None


def fetch(worker: Worker, key: int, timeout: float = FETCH_SECONDS) -> Any:
    """Bring the result ``worker`` keeps under ``key`` here (through shared memory)."""
    return ask(worker, "fetch", key, timeout)


def flush(worker: Worker, timeout: float = STORE_SECONDS) -> list[str]:
    """Wait until ``worker`` has written the results it was asked to store; why those it
    could not write were not (a worker gone: they are lost)."""
    try:
        return ask(worker, "flush", None, timeout)
    except LostResult as exc:
        return [f"results kept by {worker.pid} were not cached: it {exc}"]


def ask(worker: Worker, op: str, what: Any, timeout: float) -> Any:
    """Send ``worker`` a request, wait for its answer; raises ``LostResult`` if it fails."""
    if not worker.alive():
        raise LostResult("died")
    with worker.lock:
        number = next(_keys)
        try:
            worker.requests.send((op, number, what))
            end = time.monotonic() + timeout
            while worker.requests.poll(max(0.0, end - time.monotonic())):
                answered, data = worker.requests.recv()
                if answered == number:  # not the late answer to a fetch given up on
                    break
            else:
                raise LostResult(f"did not answer within {timeout:g} s")
        except (EOFError, OSError):
            raise LostResult("died") from None
    value = buffers.loads(data)
    if isinstance(value, LostResult):
        raise value
    return value


def forget(worker: Worker, key: int) -> None:
    """``worker`` may drop the result under ``key`` once it has no job (maybe from a
    finalizer: never waits for the connection)."""
    worker.kept.pop(key, None)
    worker.drops.append(key)
    if not worker.busy:
        drop(worker)


def drop(worker: Worker) -> None:
    """Tell an idle ``worker`` which results it may drop."""
    if not worker.drops or not worker.lock.acquire(blocking=False):
        return  # the next call sends them
    try:
        keys = [worker.drops.popleft() for _ in range(len(worker.drops))]
        with contextlib.suppress(OSError):
            worker.requests.send(("drop", 0, keys))
    finally:
        worker.lock.release()


def rescue(worker: Worker, why: str) -> None:
    """Before ``worker`` is stopped: fetch what it keeps for live handles (for a while);
    the rest is lost, ``why``."""
    end = time.monotonic() + RESCUE_SECONDS
    for handle in list(worker.kept.values()):
        left = end - time.monotonic()
        if left > 0 and worker.alive():
            with contextlib.suppress(LostResult):
                handle.value(left)
    lose(worker, why)


def lose(worker: Worker, why: str) -> None:
    """``worker`` is gone: what it kept is lost, ``why``."""
    for handle in list(worker.kept.values()):
        handle.lose(f"{handle.label}, which kept it, {why}")
    worker.kept.clear()


def _same(value: Any) -> Any:
    return value

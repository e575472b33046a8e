"""Pickles whose large buffers travel through shared memory, so big data moves once.

A buffer of ``THRESHOLD`` bytes or more (a numpy array, a pandas or Arrow column: what
pickle protocol 5 hands out of band; and ``bytes`` or a ``bytearray`` that is the value
pickled, which pickle itself would copy) is not copied into the pickle.
It goes to a file in this driver's folder in ``/dev/shm`` and the receiver maps that file
read-only, as Ray's object store does. A buffer that already lies in a mapped file (an
array a worker returned, passed on to the next stages) is sent as a reference to that
file: the driver never touches the data, and consumers of one result share its pages.

Lifetimes: every file belongs to the driver. A file a worker wrote lives as long as the
driver maps it (its result is held); a file the driver wrote for a job is deleted once the
job has ended; the folder goes when the driver exits (or its workers see it die). Python
cannot hand these objects out of band without numpy to find a buffer's address, so
without numpy every large buffer is written anew.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import mmap
import os
import pickle
import shutil
import tempfile
import threading
import weakref
from dataclasses import dataclass
from typing import Any

import cloudpickle

from pydags.results import Remote, bytes_preview

THRESHOLD = 1 << 20  # bytes: smaller buffers stay inside the pickle
MARK = b"\x00buffers"  # starts a pickle with buffers out of band (a plain one starts \x80)
FOLDER_VARIABLE = "PYDAGS_SHARED_FOLDER"  # tells workers where their driver's files go


@dataclass(frozen=True)
class Ref:
    """Where a buffer is: ``length`` bytes at ``offset`` in the file at ``path``."""

    path: str
    offset: int
    length: int


_mapped: dict[int, tuple[int, str, weakref.ref]] = {}  # start address -> (end, path, map)
_gone: list[int] = []  # start addresses of mappings since closed (the finalizer takes no lock)
_lock = threading.Lock()
_count = itertools.count()
in_worker = False  # set in worker processes: only the driver deletes files
closed = False  # set in a worker whose driver is gone: it writes no more files
_POPULATE = getattr(mmap, "MAP_POPULATE", 0)


def folder() -> str:
    """This driver's folder for shared buffers (made on first use; a worker's is its
    driver's). A driver started by another, whose variable it inherits, makes its own."""
    path = os.environ.get(FOLDER_VARIABLE)
    if path is None or not (in_worker or owner(path) == os.getpid()):
        base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()
        path = tempfile.mkdtemp(prefix=f"pydags-{os.getpid()}-", dir=base)
        os.environ[FOLDER_VARIABLE] = path  # workers started from now on inherit it
        atexit.register(shutil.rmtree, path, True)
    return path


def release() -> None:
    """Delete this driver's folder if nothing here maps a file in it (call it when no worker
    is left): the next use makes a new one. A driver killed later leaves nothing behind."""
    path = os.environ.get(FOLDER_VARIABLE)
    if path is None or in_worker or owner(path) != os.getpid():
        return
    with _lock:
        _purge()
        if any(alive() is not None for _, _, alive in _mapped.values()):
            return
        del os.environ[FOLDER_VARIABLE]
    shutil.rmtree(path, ignore_errors=True)


def owner(path: str) -> int | None:
    """The process id of the driver that made the folder ``path``."""
    parts = os.path.basename(path).split("-")
    return int(parts[1]) if len(parts) > 2 and parts[1].isdigit() else None


PLAIN = frozenset({int, float, bool, str, complex, type(None)})  # hold no large buffers


def dumps(value: Any, written: list[str] | None = None) -> bytes:
    """Pickle ``value`` with its large buffers out of band; the paths of the files written
    for it are added to ``written``."""
    refs: list[Ref] = []

    def callback(buffer: pickle.PickleBuffer) -> bool:
        view = buffer.raw()
        if view.nbytes < THRESHOLD:
            return True  # in band
        ref = _find(view)
        if ref is None:
            try:
                ref = _write(view)
            except OSError:  # no room in shared memory: the pickle carries it
                return True
            if written is not None:
                written.append(ref.path)
        refs.append(ref)
        return False

    data = cloudpickle.dumps(out_of_band(value), protocol=5, buffer_callback=callback)
    return MARK + pickle.dumps((refs, data), protocol=5) if refs else data


def out_of_band(value: Any) -> Any:
    """``value``, made to travel out of band if it is large ``bytes`` or a ``bytearray``
    (which pickle would copy into the pickle)."""
    if type(value) in (bytes, bytearray) and len(value) >= THRESHOLD:
        return _Bytes(value)
    return value


class _Bytes:
    """Large ``bytes`` or a ``bytearray`` on its way out of band."""

    __slots__ = ("value",)

    def __init__(self, value: bytes | bytearray):
        self.value = value

    def __reduce__(self) -> tuple:
        return _bytes_from, (pickle.PickleBuffer(self.value), type(self.value))


class SharedBytes(Remote):
    """In the driver: large ``bytes`` (or a ``bytearray``) in shared memory, copied out only
    when read here; sent on to other stages as a reference to the same pages."""

    def __init__(self, view: memoryview, kind: type):
        self.view, self.kind = view, kind
        self.preview = bytes_preview(kind, len(view), bytes(view[:40]))
        self._value: bytes | bytearray | None = None

    def value(self) -> bytes | bytearray:
        if self._value is None:
            self._value = self.kind(self.view)
        return self._value

    def __reduce__(self) -> tuple:
        return _bytes_from, (pickle.PickleBuffer(self.view), self.kind)

    def store_in(self, store: Any, key: str) -> None:
        store.set(key, self)  # its pages written as they lie, not copied out first


def _bytes_from(buffer: memoryview, kind: type) -> Any:
    """A stage gets the bytes themselves; the driver, a handle to their pages."""
    return kind(buffer) if in_worker else SharedBytes(memoryview(buffer), kind)


def loads(data: bytes) -> Any:
    """The value of a pickle made by ``dumps``."""
    if not data.startswith(MARK):
        return pickle.loads(data)
    refs, payload = pickle.loads(memoryview(data)[len(MARK):])
    return pickle.loads(payload, buffers=[_map(ref) for ref in refs])


def delete(paths: list[str]) -> None:
    """Delete files written for a job that has ended, but those its result maps."""
    if not paths:
        return
    with _lock:
        _purge()
        kept = {path for _, path, alive in _mapped.values() if alive() is not None}
    for path in paths:
        if path not in kept:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def _address(view: memoryview) -> int | None:
    try:
        import numpy
    except ImportError:
        return None
    return numpy.frombuffer(view, numpy.uint8).__array_interface__["data"][0]


def _find(view: memoryview) -> Ref | None:
    """A reference to the mapped file ``view`` lies in, if it does."""
    start = _address(view)
    if start is None:
        return None
    with _lock:
        _purge()
        found = list(_mapped.items())
    for begin, (end, path, alive) in found:
        if begin <= start and start + view.nbytes <= end and alive() is not None:
            return Ref(path, start - begin, view.nbytes)
    return None


def _write(view: memoryview) -> Ref:
    if closed:
        raise OSError("the driver is gone")
    path = os.path.join(folder(), f"{os.getpid()}-{next(_count)}")
    with open(path, "wb") as file:
        file.write(view)
    return Ref(path, 0, view.nbytes)


def _map(ref: Ref) -> memoryview:
    with open(ref.path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        # A worker reads what it maps: its pages come in at once, not one fault at a time.
        flags = mmap.MAP_SHARED | (_POPULATE if in_worker else 0)
        mapped = mmap.mmap(file.fileno(), size, flags, mmap.PROT_READ) if size else b""
    if not size:
        return memoryview(b"")
    view = memoryview(mapped)
    start = _address(view)
    if start is not None:
        with _lock:
            _purge()
            _mapped[start] = (start + size, ref.path, weakref.ref(mapped))
        weakref.finalize(mapped, _forget, start, ref.path)
    return view[ref.offset:ref.offset + ref.length]


def _purge() -> None:
    """Drop the closed mappings from the registry (with ``_lock`` held)."""
    while _gone:
        start = _gone.pop()
        entry = _mapped.get(start)
        if entry is not None and entry[2]() is None:
            del _mapped[start]


def _forget(start: int, path: str) -> None:
    """A mapping has gone: in the driver, nobody needs its file any more. It runs from
    the garbage collector, maybe while this thread holds ``_lock``: it must not take it."""
    _gone.append(start)
    if not in_worker:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

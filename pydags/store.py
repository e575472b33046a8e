"""Stores where stages keep artifacts: a private folder on disk (the default) or a Redis server.

Values are serialized with cloudpickle. Loading a pickle runs code: never share a store
with anyone you would not let run code on your machine.
"""

from __future__ import annotations

import functools
import os
import pickle
import re
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import cloudpickle


class MissingKey(KeyError):
    """A stage read a key that nobody wrote."""

    def __str__(self) -> str:
        return str(self.args[0])


class UnreadableKey(Exception):
    """A stored value that cannot be loaded (truncated or corrupted)."""


CHUNK = 8 << 20  # bytes written at a time
FRAMED = b"pydags-pickle5\n"  # a file of a pickle and its large buffers, one after another
_LENGTH = struct.Struct("<Q")


def loads(store: Store, key: str, data: bytes | bytearray) -> Any:
    """The value ``data`` holds; an ``UnreadableKey`` naming the key and the store if it
    cannot be loaded."""
    try:
        if data.startswith(FRAMED):
            return _unframed(data)
        return pickle.loads(data)
    except Exception as exc:
        raise UnreadableKey(f"key {key!r} in {store!r} cannot be read ({type(exc).__name__}: "
                            f"{exc}): it is truncated or corrupted; write it again") from None


class Store:
    """Where artifacts live: ``get``, ``set``, ``delete``, ``keys`` and an early ``check``."""

    def get(self, key: str) -> Any:
        """The value stored under ``key``; ``KeyError`` when there is none."""
        raise NotImplementedError

    def set(self, key: str, value: Any) -> None:
        """Store ``value`` under ``key``, replacing what was there."""
        raise NotImplementedError

    def delete(self, key: str) -> None:
        """Remove ``key`` if it is there."""
        raise NotImplementedError

    def keys(self, prefix: str = "") -> list[str]:
        """The keys that start with ``prefix``."""
        raise NotImplementedError

    def check(self) -> None:
        """Raise a clear error now if the store cannot be reached."""

    def __contains__(self, key: str) -> bool:
        """Whether a value is stored under ``key`` (stores say it without loading it)."""
        try:
            self.get(key)
        except KeyError:
            return False
        return True


def dumps(key: str, value: Any) -> bytes:
    """Serialize a value, naming the key when it cannot be."""
    try:
        return cloudpickle.dumps(value)
    except Exception as exc:
        raise TypeError(f"cannot store key {key!r}: a {type(value).__name__} cannot be "
                        f"pickled ({exc})") from None


def framed(key: str, value: Any) -> list[Any]:
    """A value as the parts of a ``FRAMED`` file: its pickle, then each large buffer as it
    is (an array's memory is written from where it lies: no copy, and no lock held while a
    copy is made)."""
    buffers: list[pickle.PickleBuffer] = []
    if type(value) in (bytes, bytearray):
        value = _Raw(value)
    try:
        head = cloudpickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    except Exception as exc:
        raise TypeError(f"cannot store key {key!r}: a {type(value).__name__} cannot be "
                        f"pickled ({exc})") from None
    raws = [buffer.raw() for buffer in buffers]
    parts: list[Any] = [FRAMED, _LENGTH.pack(len(raws)), _LENGTH.pack(len(head)), head]
    for raw in raws:
        parts += [_LENGTH.pack(raw.nbytes), raw]
    return parts


class _Raw:
    """Bytes written as they lie: pickle copies a ``bytes`` into its stream, but not a
    ``PickleBuffer`` of it."""

    def __init__(self, value: bytes | bytearray):
        self.value = value

    def __reduce_ex__(self, protocol: int) -> tuple:
        return type(self.value), (pickle.PickleBuffer(self.value),)


def _unframed(data: bytearray) -> Any:
    view = memoryview(data)
    at = len(FRAMED)
    (count,), (size,) = _LENGTH.unpack_from(view, at), _LENGTH.unpack_from(view, at + 8)
    at += 16
    head, at = view[at:at + size], at + size
    buffers = []
    for _ in range(count):
        (size,) = _LENGTH.unpack_from(view, at)
        buffers.append(view[at + 8:at + 8 + size])  # writable, as an unpickled array's is
        at += 8 + size
    if at != len(data) or len(head) < 1:
        raise ValueError("the file ends early" if at > len(data) else "bytes after the end")
    return pickle.loads(head, buffers=buffers)


@functools.lru_cache(maxsize=1 << 14)
def _file_name(key: str) -> str:
    name = quote(key, safe="") + ".pkl"
    if len(name) > 250:
        raise ValueError(f"store key too long ({len(key)} characters): {key[:40]!r}…")
    return name


def default_folder() -> Path:
    """``$PYDAGS_STORE``, else ``~/.cache/pydags/store``."""
    return Path(os.environ.get("PYDAGS_STORE") or Path.home() / ".cache" / "pydags" / "store")


class DiskStore(Store):
    """One file per key in a folder private to the user (mode 0700); writes are atomic."""

    local = True  # any process of this machine may write it: a worker writes what it keeps
    _made = False  # the folder was seen here (reads and writes then go straight to it)

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path is not None else default_folder()

    def _folder(self, made: bool = False) -> Path:
        """The folder, made if it is not there (``made``: it was, and has gone since)."""
        if made or not self._made:
            if not self.path.is_dir():
                self.path.mkdir(parents=True, exist_ok=True)
                self.path.chmod(0o700)
            self._made = True
        return self.path

    def _file(self, key: str) -> Path:
        if not isinstance(key, str) or not key:
            raise TypeError(f"store keys are non-empty strings, not {key!r}")
        return self._folder() / _file_name(key)

    def get(self, key: str) -> Any:
        try:
            with open(self._file(key), "rb") as file:
                data = bytearray(os.fstat(file.fileno()).st_size)
                file.readinto(data)
        except FileNotFoundError:
            raise KeyError(key) from None
        return loads(self, key, data)

    def set(self, key: str, value: Any, *, pause: Callable[[], object] | None = None) -> None:
        """Store ``value`` under ``key``; ``pause`` is called between chunks of its bytes (a
        worker writing a result it keeps waits there while it runs a stage)."""
        parts = framed(key, value)
        target = self._file(key)
        try:
            handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".writing-")
        except FileNotFoundError:  # the folder was deleted since (clear_cache, rm -r)
            handle, temporary = tempfile.mkstemp(dir=self._folder(made=True), prefix=".writing-")
        # A process killed at any point leaves the old value or the new one, never half of
        # one. (Not fsynced: after a power cut a value may read as truncated, and its stage
        # then runs again.)
        try:
            with os.fdopen(handle, "wb") as file:
                for part in parts:
                    view = memoryview(part).cast("B")
                    for at in range(0, len(view), CHUNK):
                        if pause is not None:
                            pause()
                        file.write(view[at:at + CHUNK])
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def delete(self, key: str) -> None:
        self._file(key).unlink(missing_ok=True)

    def touch(self, key: str) -> bool:
        """Mark ``key`` as used now (the quota evicts the least recently used first);
        False if nothing is stored under it."""
        try:
            os.utime(self._file(key))
        except OSError:
            return False
        return True

    def sizes(self, prefix: str = "") -> list[tuple[str, int, float]]:
        """The keys that start with ``prefix``, each with its bytes and when last used."""
        if not self.path.is_dir():
            return []
        start = quote(prefix, safe="")
        found = []
        with os.scandir(self.path) as entries:
            for entry in entries:
                if entry.name.startswith(start) and entry.name.endswith(".pkl"):
                    try:
                        info = entry.stat()
                    except OSError:
                        continue  # deleted meanwhile
                    found.append((unquote(entry.name[:-4]), info.st_size, info.st_mtime))
        return found

    def __contains__(self, key: str) -> bool:
        return self.path.is_dir() and self._file(key).is_file()

    def keys(self, prefix: str = "") -> list[str]:
        if not self.path.is_dir():
            return []
        start = quote(prefix, safe="")  # quoting keeps prefixes: no key needs unquoting
        with os.scandir(self.path) as entries:
            return sorted(unquote(e.name[:-4]) for e in entries
                          if e.name.startswith(start) and e.name.endswith(".pkl"))

    def __repr__(self) -> str:
        return f"DiskStore({str(self.path)!r})"

    def __eq__(self, other: object) -> bool:  # two stores of one folder are one store
        return isinstance(other, DiskStore) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)


class DiskCacheStore(Store):
    """A ``diskcache.Cache`` (or a folder for one), as the published ``DiskCacheStage`` used."""

    def __init__(self, cache: Any):
        import diskcache

        self.cache = diskcache.Cache(str(cache)) if isinstance(cache, (str, os.PathLike)) \
            else cache

    def get(self, key: str) -> Any:
        data = self.cache.get(key, default=None, retry=True)
        if data is None:
            raise KeyError(key)
        return loads(self, key, data)

    def set(self, key: str, value: Any) -> None:
        self.cache.set(key, dumps(key, value), retry=True)

    def delete(self, key: str) -> None:
        self.cache.delete(key, retry=True)

    def __contains__(self, key: str) -> bool:
        return key in self.cache

    def keys(self, prefix: str = "") -> list[str]:
        return sorted(k for k in self.cache.iterkeys() if str(k).startswith(prefix))

    def __repr__(self) -> str:
        return f"DiskCacheStore({self.cache.directory!r})"


class RedisStore(Store):
    """A Redis server, for workers that share no disk: a URL (``redis://``, ``rediss://`` for
    TLS, with a password if needed) or a ``redis.Redis`` client."""

    def __init__(self, server: Any = "redis://localhost:6379/0"):
        try:
            import redis
        except ImportError:
            raise ImportError("a Redis store needs the redis extra: "
                              "pip install 'pydags[redis]'") from None
        if isinstance(server, str):
            self.url, self.options = server, {}
        elif isinstance(server, redis.Redis):
            self.url, self.options = None, _connection_options(server)
        else:
            raise TypeError(f"RedisStore takes a redis:// URL or a redis.Redis client, "
                            f"not {type(server).__name__}")
        self._client: Any = server if not isinstance(server, str) else None

    @property
    def client(self) -> Any:
        """The ``redis.Redis`` client, made on first use (also in a worker process)."""
        if self._client is None:
            import redis

            self._client = (redis.Redis.from_url(self.url) if self.url
                            else redis.Redis(**self.options))
        return self._client

    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url, "options": self.options, "_client": None}

    def where(self) -> str:
        """The server, for messages (without its password)."""
        if self.url:
            return self.url.split("@")[-1]
        if "unix_socket_path" in self.options:
            return f"unix:{self.options['unix_socket_path']}"
        return f"{self.options.get('host')}:{self.options.get('port')}"

    def check(self) -> None:
        import redis

        try:
            self.client.ping()
        except redis.RedisError as exc:
            raise ConnectionError(f"cannot reach Redis at {self.where()}: {exc}. Start "
                                  "redis-server, or fix the URL or password") from None

    def get(self, key: str) -> Any:
        data = self.client.get(key)
        if data is None:
            raise KeyError(key)
        return loads(self, key, data)

    def set(self, key: str, value: Any) -> None:
        self.client.set(key, dumps(key, value))

    def delete(self, key: str) -> None:
        self.client.delete(key)

    def __contains__(self, key: str) -> bool:
        return bool(self.client.exists(key))

    def keys(self, prefix: str = "") -> list[str]:
        pattern = re.sub(r"([*?\[\]\\])", r"\\\1", prefix) + "*"  # the prefix, literally
        return sorted(k.decode() for k in self.client.scan_iter(match=pattern))

    def __repr__(self) -> str:
        return f"RedisStore({self.where()!r})"


def _connection_options(client: Any) -> dict[str, Any]:
    """What a worker needs to open its own connection like ``client``'s."""
    import redis

    pool = client.connection_pool
    given = pool.connection_kwargs
    wanted = ("host", "port", "db", "username", "password", "path", "socket_timeout")
    options = {k: given[k] for k in wanted if given.get(k) is not None}
    if issubclass(pool.connection_class, redis.SSLConnection):
        options["ssl"] = True
    if issubclass(pool.connection_class, redis.UnixDomainSocketConnection):
        options.pop("host", None)
        options.pop("port", None)
        options["unix_socket_path"] = options.pop("path")
    return options

"""A run's results: values, some of them still in the worker process that made them."""

from __future__ import annotations

import html
from collections.abc import Iterator
from typing import Any


class Remote:
    """A result that lives elsewhere (in a worker); ``value()`` brings it here."""

    preview: str = ""  # HTML, made where the value is
    lost: bool = False  # the value is gone (its worker died)

    def value(self) -> Any:
        raise NotImplementedError

    def store_in(self, store: Any, key: str) -> Any:
        """Write the result to ``store`` under ``key`` (here, unless it can be written where
        it is: then returns the worker that will)."""
        store.set(key, self.value())
        return None


class Results(dict):
    """Stage name to result, like a dict; a result still in its worker is fetched the first
    time it is read here (``held`` gives it as it is, without fetching)."""

    def __getitem__(self, name: str) -> Any:
        value = super().__getitem__(name)
        while isinstance(value, Remote):  # fetched from a worker: maybe bytes still shared
            value = value.value()
        return value

    def get(self, name: str, default: Any = None) -> Any:
        return self[name] if name in self else default  # noqa: SIM401 (get is this)

    def __iter__(self) -> Iterator[str]:  # so that dict(results) and {**results} read values
        return iter(list(self.keys()))

    def values(self) -> list[Any]:  # type: ignore[override]
        return [self[name] for name in self]

    def items(self) -> list[tuple[str, Any]]:  # type: ignore[override]
        return [(name, self[name]) for name in self]

    def copy(self) -> dict[str, Any]:
        return dict(self.items())

    def __repr__(self) -> str:
        return repr({name: self.held(name) for name in self})

    def held(self, name: str) -> Any:
        """Stage ``name``'s result as this run holds it: maybe a ``Remote`` handle."""
        return dict.__getitem__(self, name)  # not super(): asked for every stage's inputs

    def preview(self, name: str) -> str:
        """A short HTML view of stage ``name``'s result, without fetching it."""
        value = self.held(name) if name in self else None
        return value.preview if isinstance(value, Remote) else preview(value)


def preview(value: Any) -> str:
    """A short HTML view of a result: a DataFrame's first rows, an array's shape and dtype
    and first items, else its repr cut short; nothing for None."""
    if value is None:
        return ""
    if type(value).__name__ == "DataFrame" and hasattr(value, "to_html"):
        return value.head(5).to_html(max_cols=8)
    if isinstance(value, (bytes, bytearray)) and len(value) > 40:
        return bytes_preview(type(value), len(value), bytes(value[:40]))
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        flat = getattr(value, "flat", None)
        first = [repr(v) for _, v in zip(range(6), flat, strict=False)] if flat is not None else []
        return (f"<pre>{type(value).__name__} shape {html.escape(str(value.shape))} dtype "
                f"{html.escape(str(value.dtype))}: {html.escape(', '.join(first))} …</pre>")
    text = repr(value)
    return f"<pre>{html.escape(text[:1000] + ('…' if len(text) > 1000 else ''))}</pre>"


def bytes_preview(kind: type, length: int, head: bytes) -> str:
    """``bytes of 3,000,000 bytes: b'<b><b>…'``, escaped for HTML."""
    return f"<pre>{kind.__name__} of {length:,} bytes: {html.escape(repr(head))}…</pre>"


class Stored(Remote):
    """A result kept in a store (persisted by an earlier run): read the first time it is
    needed; a worker process that needs it reads it from the store itself."""

    def __init__(self, store: Any, key: str):
        self.store, self.key = store, key
        self._value: Any = None
        self._read = False

    def value(self) -> Any:
        if not self._read:
            self._value, self._read = self.store.get(self.key), True
        return self._value

    def store_in(self, store: Any, key: str) -> Any:
        if key != self.key or store != self.store:
            store.set(key, self.value())
        return None

    def __reduce__(self) -> tuple:
        return _read, (self.store, self.key)

    def __repr__(self) -> str:
        return f"<result stored under {self.key!r} in {self.store!r}>"


def _read(store: Any, key: str) -> Any:
    return store.get(key)

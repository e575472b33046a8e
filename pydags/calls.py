"""A ``@stage`` function on its way to a worker, and the code on disk: an edited module is
imported again before a run, so every run runs the code its files hold now."""

from __future__ import annotations

import functools
import importlib
import inspect
import linecache
import os
import pickle
import sys
import types
from collections.abc import Callable
from typing import Any

import cloudpickle


class SourceFunction:
    """A function and the stamp of the file it was imported from (``@stage`` makes one)."""

    def __init__(self, function: Callable[..., Any]):
        self.func = function
        module = sys.modules.get(getattr(function, "__module__", None) or "")
        importable = getattr(module, "__spec__", None) and module.__name__ != "__main__"
        self.stamp = source_stamp(module) if importable else None  # the file it came from


class StageCall:
    """A ``@stage`` function on its way to a worker: sent by reference when its module can be
    imported there, else by value with its file name and source lines, so that tracebacks
    from the worker still show where the error is."""

    __slots__ = ("_reduced", "by_reference", "function")

    def __init__(self, function: Callable[..., Any], by_reference: bool = True):
        self.function = function
        self.by_reference = by_reference
        self._reduced: tuple | None = None

    def __call__(self, /, *args: Any, **kwargs: Any) -> Any:
        return self.function(*args, **kwargs)

    def __reduce__(self) -> tuple:
        if self._reduced is None:  # the same for every attempt of every stage using it
            self._reduced = self._reduce()
        return self._reduced

    def _reduce(self) -> tuple:
        function = self.function
        module = sys.modules.get(getattr(function, "__module__", None) or "")
        importable = (module is not None and module.__name__ != "__main__"
                      and getattr(module, "__spec__", None) is not None)
        owner = getattr(module, getattr(function, "__name__", ""), None) if importable else None
        if self.by_reference and isinstance(owner, SourceFunction) and owner.func is function:
            return _imported_stage, (module.__name__, function.__name__, owner.stamp)
        code = getattr(function, "__code__", None)
        if code is None:
            return _same, (function,)
        # cloudpickle sends the function (and the notebook's functions it calls) by value
        # but names their file "<dynamic-code>": each goes with its own file and lines
        sources = tuple((f.__qualname__, f.__code__.co_filename, *_source_of(f.__code__))
                        for f in _by_value(function))
        return _located, (function, sources)


class SentFunction:
    """A stage function on its way to a worker, pickled once per run: every job of the run
    carries the same bytes, and each worker process loads them once (a stage's module-level state
    then lives on in the worker between jobs, as an imported module's does)."""

    __slots__ = ("data",)

    def __init__(self, function: Any):
        self.data = cloudpickle.dumps(function)

    def __reduce__(self) -> tuple:
        return loaded_function, (self.data,)


@functools.lru_cache(maxsize=256)
def loaded_function(data: bytes) -> Any:
    """The function pickled in ``data``, loaded once per worker."""
    return pickle.loads(data)


def _imported_stage(module: str, name: str, stamp: tuple | None) -> Callable[..., Any]:
    """The stage function ``name`` of ``module`` as the driver has it: the module is
    imported again if this process has it from another version of its file."""
    owner = getattr(importlib.import_module(module), name)
    if stamp is not None and owner.stamp != stamp:
        owner = getattr(importlib.reload(sys.modules[module]), name)
    return owner.func


def source_stamp(module: Any) -> tuple[int, int] | None:
    """When a module's file was last changed, and its size (None if it has no file)."""
    try:
        found = os.stat(module.__file__)
    except (AttributeError, TypeError, OSError):
        return None
    return found.st_mtime_ns, found.st_size


def fresh(function: Callable[..., Any]) -> Callable[..., Any]:
    """The stage function as its module's file defines it now: a module edited on disk
    since it was imported is imported again, so every run runs the code on disk."""
    module = sys.modules.get(getattr(function, "__module__", None) or "")
    owner = getattr(module, getattr(function, "__name__", ""), None)
    if (not isinstance(owner, SourceFunction) or owner.stamp is None
            or owner.func.__qualname__ != function.__qualname__):
        return function
    if source_stamp(module) != owner.stamp:
        owner = getattr(importlib.reload(module), function.__name__, None)
        if not isinstance(owner, SourceFunction):
            return function
    return owner.func  # the module's current version, also after an earlier reload


def _same(function: Callable[..., Any]) -> Callable[..., Any]:
    return function


_LOCATED: set[tuple[str, int]] = set()  # sources this process already registered


@functools.lru_cache(maxsize=512)
def _source_of(code: Any) -> tuple[int, tuple[str, ...]]:
    """Where a function's source starts in its file, and its lines (none if unknown)."""
    lines = linecache.getlines(code.co_filename)
    if not lines:
        return 0, ()
    return code.co_firstlineno, tuple(inspect.getblock(lines[code.co_firstlineno - 1:]))


def _by_value(function: Any) -> list[types.FunctionType]:
    """``function`` and the functions it calls (and they call) that go by value: those
    defined in a notebook or a script rather than an importable module."""
    found, seen = [function], {id(function)}
    for caller in found:
        for name in caller.__code__.co_names:
            callee = caller.__globals__.get(name)
            if isinstance(callee, types.FunctionType) and id(callee) not in seen:
                module = sys.modules.get(callee.__module__ or "")
                if module is None or module.__name__ == "__main__" or not getattr(
                        module, "__spec__", None):
                    seen.add(id(callee))
                    found.append(callee)
    return found


def _located(function: Any, sources: tuple[tuple[str, str, int, tuple[str, ...]], ...]) -> Any:
    """The function (and the notebook's functions it calls) with their own file names back,
    and their source lines known to tracebacks."""
    where = {qualname: (filename, first, block) for qualname, filename, first, block in sources}
    for found in _by_value(function):
        if found.__qualname__ not in where:
            continue
        filename, first, block = where[found.__qualname__]
        if block and (filename, first) not in _LOCATED:
            _LOCATED.add((filename, first))
            known = list(linecache.cache.get(filename, (0, None, [], filename))[2])
            known += ["\n"] * (first - 1 + len(block) - len(known))
            known[first - 1:first - 1 + len(block)] = block
            linecache.cache[filename] = (sum(map(len, known)), None, known, filename)
        found.__code__ = found.__code__.replace(co_filename=filename)
    return function

"""Stages: the nodes of a pipeline, made with ``@stage`` or by subclassing ``Stage``."""

from __future__ import annotations

import collections
import dataclasses
import functools
import importlib
import inspect
import linecache
import math
import os
import sys
import unicodedata
from collections.abc import Callable, Iterator
from typing import Any

from pydags.errors import InvalidStageTypeException, MapError


def _refuse_generators(name: str, function: Any) -> None:
    """A generator's items would never be produced: a stage returns its result whole."""
    if inspect.isgeneratorfunction(function) or inspect.isasyncgenfunction(function):
        raise TypeError(f"stage {name!r} is a generator function (it uses yield): a stage "
                        "returns its whole result; return a list, e.g. "
                        "return [... for ...] instead of yielding each item")


class Stage:
    """A node of a pipeline. Subclass it and implement ``run``.

    Arguments given to the constructor reach ``run``; an argument that is itself a
    stage is a dependency, and ``run`` receives that stage's return value instead.
    A subclass with its own ``__init__`` calls ``super().__init__(...)`` with the
    arguments meant for ``run``.
    """

    retries: int = 0
    retry_delay: float = 0.0
    timeout: float | None = None
    mapped: bool = False  # True for a stage made by ``map()``: run once per item

    def __new__(cls, /, *args: Any, **kwargs: Any) -> Stage:
        self = super().__new__(cls)
        self._args, self._kwargs = (), {}
        self._after: dict[int, Stage] = {}  # id -> stage, in the order given
        self._name: str | None = None
        self._store: Any = None
        self._store_given = False  # True for a store of its own, not its pipeline's
        self._pipelines: list[Any] = []  # weak references to the pipelines holding it
        return self

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _refuse_generators(cls.__name__, cls.__dict__.get("run"))

    def __init__(self, /, *args: Any, **kwargs: Any) -> None:
        self._args, self._kwargs = args, kwargs

    def run(self, *args: Any, **kwargs: Any) -> Any:
        """The stage's work; its return value flows to the stages that take this one."""
        raise NotImplementedError(f"{type(self).__name__} must implement run()")

    @classmethod
    def map(cls, /, *args: Any, **kwargs: Any) -> Stage:
        """A stage that runs ``run`` once per item: ``Train.map(folds, epochs=3)``.

        See ``StageFunction.map``."""
        return _mapping(cls(*args, **kwargs))

    @property
    def name(self) -> str:
        """The stage's name in its pipeline: ``.named()``, else the class or function name."""
        return self._name or self._default_name()

    def _default_name(self) -> str:
        return type(self).__name__

    def named(self, name: str) -> Stage:
        """Give the stage another name (two stages of a pipeline need different names)."""
        if not isinstance(name, str) or not name:
            raise TypeError(f"named() takes a non-empty string, not {name!r}")
        check_name(name)
        self._name = name
        self._changed()
        return self

    def _changed(self) -> None:
        """Tell the pipelines holding this stage that their graph must be built again."""
        for ref in self._pipelines:
            pipeline = ref()
            if pipeline is not None:
                pipeline._stale = True

    def after(self, *stages: Stage) -> Stage:
        """Run this stage only after ``stages`` are done; returns ``self`` to chain."""
        for other in stages:
            if not isinstance(other, Stage):
                raise InvalidStageTypeException(
                    f"{self.name}.after() takes stages, not {type(other).__name__} "
                    f"({other!r}); call the @stage function first, e.g. load() not load"
                )
            if other is self:
                raise ValueError(f"stage {self.name!r} cannot run after itself")
            self._after[id(other)] = other
        self._changed()
        return self

    def options(
        self,
        *,
        retries: int | None = None,
        retry_delay: float | None = None,
        timeout: float | None = None,
    ) -> Stage:
        """Set retries, retry delay or timeout (seconds) for this stage only."""
        given = dict(retries=retries, retry_delay=retry_delay, timeout=timeout)
        _check_options(self.name, given)
        for key, value in given.items():
            if value is not None:
                setattr(self, key, value)
        return self

    @property
    def store(self) -> Any:
        """Where ``read``/``write`` go: the stage's own store, else its pipeline's."""
        return self._store

    def read(self, key: str) -> Any:
        """The artifact an earlier stage wrote under ``key``."""
        from pydags.store import MissingKey, UnreadableKey

        store = self._require_store()
        try:
            return store.get(key)
        except KeyError:
            raise MissingKey(
                f"stage {self.name!r} read key {key!r}, which {store!r} does not hold; write "
                f"it in an earlier stage and make this one run .after() that stage") from None
        except UnreadableKey as exc:
            raise UnreadableKey(f"stage {self.name!r}: {exc}") from None

    def write(self, key: str, value: Any) -> None:
        """Keep ``value`` under ``key`` for later stages (and later runs)."""
        try:
            self._require_store().set(key, value)
        except TypeError as exc:
            raise TypeError(f"stage {self.name!r}: {exc}") from None

    def delete(self, key: str) -> None:
        """Forget the artifact kept under ``key`` (nothing happens if there is none)."""
        self._require_store().delete(key)

    def _require_store(self) -> Any:
        if self._store is None:
            raise RuntimeError(f"stage {self.name!r} has no store; run it in a Pipeline "
                               "(which gives it one) or pass one to the stage")
        return self._store

    @property
    def dependencies(self) -> list[Stage]:
        """Stages this one waits for: those given to ``.after()`` and those passed as arguments."""
        found = dict(self._after)
        for value in stages_in(self._args, self._kwargs, self.name):
            found.setdefault(id(value), value)
        return list(found.values())

    @property
    def preceding_stages(self) -> list[Stage]:
        """``dependencies``, by the name the published pydags 0.1 gave it."""
        return self.dependencies

    @property
    def arguments(self) -> tuple[tuple, dict]:
        """The positional and keyword arguments given to the stage (stages unresolved)."""
        return self._args, self._kwargs

    def callable(self) -> Callable[..., Any]:
        """What a worker calls with the resolved arguments."""
        return self.run

    def __getstate__(self) -> dict[str, Any]:
        # A worker needs the stage's own settings, not the graph around it.
        state = dict(self.__dict__)
        state.update(_args=(), _kwargs={}, _after={}, _pipelines=[])
        return state

    def __repr__(self) -> str:
        deps = ", ".join(d.name for d in self.dependencies)
        return f"<{type(self).__name__} {self.name!r}" + (f" after {deps}>" if deps else ">")


class FunctionStage(Stage):
    """A stage made by calling a ``@stage`` function: the call is recorded, not run."""

    def __init__(self, function: Callable[..., Any], args: tuple, kwargs: dict, options: dict):
        super().__init__(*args, **kwargs)
        self.function = function
        self._call: StageCall | None = None
        for key, value in options.items():
            if value is not None:
                setattr(self, key, value)

    def _default_name(self) -> str:
        return getattr(self.function, "__name__", "stage")

    def run(self, /, *args: Any, **kwargs: Any) -> Any:
        return self.function(*args, **kwargs)

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_call"] = None  # rebuilt on demand
        return state

    def callable(self) -> Callable[..., Any]:
        function = fresh(self.function)
        if self._call is None or self._call.function is not function:
            self._call = StageCall(function)
        return self._call


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
        if self.by_reference and isinstance(owner, StageFunction) and owner.func is function:
            return _imported_stage, (module.__name__, function.__name__, owner.stamp)
        code = getattr(function, "__code__", None)
        if code is None:
            return _same, (function,)
        # cloudpickle sends the function by value but names its file "<dynamic-code>"
        return _located, (function, code.co_filename, *_source_of(code))


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
    if (not isinstance(owner, StageFunction) or owner.stamp is None
            or owner.func.__qualname__ != function.__qualname__):
        return function
    if source_stamp(module) != owner.stamp:
        owner = getattr(importlib.reload(module), function.__name__, None)
        if not isinstance(owner, StageFunction):
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


def _located(function: Any, filename: str, first: int, block: tuple[str, ...]) -> Any:
    """The function with its own file name back, and its source lines known to tracebacks."""
    if block and (filename, first) not in _LOCATED:
        _LOCATED.add((filename, first))
        known = list(linecache.cache.get(filename, (0, None, [], filename))[2])
        known += ["\n"] * (first - 1 + len(block) - len(known))
        known[first - 1:first - 1 + len(block)] = block
        linecache.cache[filename] = (sum(map(len, known)), None, known, filename)
    function.__code__ = function.__code__.replace(co_filename=filename)
    return function


class StageFunction:
    """What ``@stage`` returns: calling it makes a stage; ``.func`` is the plain function."""

    def __init__(self, function: Callable[..., Any], options: dict):
        functools.update_wrapper(self, function)
        self.func = function
        self.stage_options = options
        module = sys.modules.get(getattr(function, "__module__", None) or "")
        importable = getattr(module, "__spec__", None) and module.__name__ != "__main__"
        self.stamp = source_stamp(module) if importable else None  # the file it came from

    def __call__(self, /, *args: Any, **kwargs: Any) -> FunctionStage:
        return FunctionStage(self.func, args, kwargs, self.stage_options)

    def map(self, /, *args: Any, **kwargs: Any) -> FunctionStage:
        """A stage that calls the function once per item, in parallel, and returns the
        list of results in order: ``clean.map(files, threshold=0.7)``.

        Each positional argument is mapped over: a list (or tuple, range, array) or a stage
        whose result is one; several are zipped and must have the same length. Keyword
        arguments go whole to every item. Mapping over a mapped stage runs item by item.
        """
        return _mapping(FunctionStage(self.func, args, kwargs, self.stage_options))

    def __repr__(self) -> str:
        return f"<stage function {self.func.__name__}>"


def stage(
    function: Callable[..., Any] | None = None,
    *,
    retries: int | None = None,
    retry_delay: float | None = None,
    timeout: float | None = None,
) -> Any:
    """Turn a function into a stage factory: ``load()`` returns a stage, it does not run.

    Use bare (``@stage``) or with options (``@stage(retries=2, timeout=30)``).
    """
    options = dict(retries=retries, retry_delay=retry_delay, timeout=timeout)

    def wrap(func: Callable[..., Any]) -> StageFunction:
        if not callable(func):
            raise TypeError(f"@stage decorates a function, not {type(func).__name__}")
        _refuse_generators(getattr(func, "__name__", "stage"), func)
        _refuse_methods(func)
        _check_options(getattr(func, "__name__", "stage"), options)
        return StageFunction(func, options)

    return wrap(function) if function is not None else wrap


def _refuse_methods(function: Any) -> None:
    """A function defined in a class body and taking ``self`` (or ``cls``) is a method: a
    stage made from it would be called without its instance."""
    owner, _, name = getattr(function, "__qualname__", "").rpartition(".")
    try:
        first = next(iter(inspect.signature(function).parameters), None)
    except (TypeError, ValueError):
        return
    if owner and not owner.endswith("<locals>") and first in ("self", "cls"):
        raise TypeError(
            f"@stage cannot decorate the method {owner.rpartition('.')[2]}.{name}: a stage "
            f"is called without an instance. Define {name} as a function outside the "
            "class, or make the class a Stage subclass and put the work in its run() method")


def _check_options(name: str, options: dict) -> None:
    """Refuse retries, retry_delay or timeout values that would not mean what they say."""
    retries, delay, timeout = options["retries"], options["retry_delay"], options["timeout"]
    if retries is not None and (isinstance(retries, bool) or not isinstance(retries, int)
                                or retries < 0):
        raise ValueError(f"stage {name!r}: retries must be a whole number >= 0, not {retries!r}")
    if delay is not None and not (_is_seconds(delay) and delay >= 0):
        raise ValueError(f"stage {name!r}: retry_delay must be a finite number of seconds "
                         f">= 0, not {delay!r}")
    if timeout is not None and not (_is_seconds(timeout) and timeout > 0):
        raise ValueError(f"stage {name!r}: timeout must be a finite number of seconds > 0, "
                         f"not {timeout!r}")


def _is_seconds(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _mapping(item: Stage) -> Stage:
    """``item`` made a mapped stage, once its mapped arguments are checked."""
    args = item.arguments[0]
    if not args:
        raise TypeError(f"{item.name}.map() needs a positional argument to map over: a list "
                        "or a stage returning one (keyword arguments go whole to every item)")
    lengths = {}
    given = list(args)
    for position, value in enumerate(args):
        if isinstance(value, Stage):
            continue
        where = f"stage {item.name!r}, mapped argument {position}"
        given[position] = items_of(value, where)  # a generator is gone once gone through
        lengths[position] = len(given[position])
    if len(set(lengths.values())) > 1:
        raise MapError(f"stage {item.name!r}: mapped arguments have different lengths: "
                         + mismatch(lengths))
    item._args = tuple(given)
    item.mapped = True
    return item


def items_of(value: Any, where: str) -> Any:
    """What a mapped argument maps over: a sequence, or the list of an iterable's items."""
    if type(value).__name__ == "DataFrame":  # iterating one gives its column names
        raise MapError(f"{where} is a DataFrame; map over its rows with "
                        "list(df.itertuples()) or its groups with [g for _, g in "
                        "df.groupby(key)]")
    if isinstance(value, (str, bytes, dict, set, frozenset)) or not hasattr(value, "__iter__"):
        hint = " (map over list(d.items()) for a dict)" if isinstance(value, dict) else ""
        raise MapError(f"{where} is a {type(value).__name__}, which map() does not go "
                        f"through item by item; give a list, tuple, range or array{hint} "
                        "(an argument that goes whole to every item is given by keyword)")
    if isinstance(value, (list, tuple, range)):
        return value
    return list(value)


def check_name(name: str) -> None:
    """Refuse a stage name that holds a control character: no drawing, table or terminal
    could show it as written."""
    bad = sorted({c for c in name if unicodedata.category(c) in ("Cc", "Cs")})
    if bad:
        raise ValueError(f"stage name {name!r} holds control characters "
                         f"({', '.join(map(repr, bad))}); give it a name without them "
                         "with .named()")


def mismatch(lengths: dict[int, int]) -> str:
    """Mapped arguments' lengths, said as in an error: "argument 0 has 3 items, ..."."""
    return ", ".join(f"argument {p} has {n} item{'s' * (n != 1)}" for p, n in lengths.items())


def check_settings(item: Stage) -> None:
    """Check a stage's retries, retry_delay and timeout, wherever they were set (a class
    stage may set them as class attributes)."""
    _check_options(item.name, dict(retries=item.retries, retry_delay=item.retry_delay,
                                   timeout=item.timeout))


def _parts(value: Any, where: str) -> list[Any] | None:
    """The parts of a container that pydags looks into (and can rebuild with results in
    place of stages), or None for a value it passes as it is."""
    if isinstance(value, (list, tuple, set, frozenset)):
        return list(value)
    if isinstance(value, dict):
        for key in value:
            if isinstance(key, Stage):
                raise TypeError(f"{where} uses stage {key.name!r} as a dict key; a stage's "
                                "result can only stand where a value does")
        return list(value.values())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [getattr(value, f.name) for f in dataclasses.fields(value)]
    dtype = getattr(value, "dtype", None)
    if type(value).__module__ == "numpy" and getattr(dtype, "kind", "") == "O":
        for item in value.flat:
            if isinstance(item, Stage):
                raise TypeError(f"{where} holds stage {item.name!r} in a numpy array, which "
                                "pydags does not look into; pass a list instead")
    return None


def _rebuild(value: Any, parts: list[Any], where: str) -> Any:
    """``value`` made again with ``parts`` (as ``_parts`` gave them, results in place)."""
    kind = type(value)
    if kind in (list, tuple, set, frozenset):
        return kind(parts)
    if isinstance(value, tuple) and hasattr(value, "_make"):  # a namedtuple
        return kind._make(parts)
    if isinstance(value, dict):
        pairs = zip(value, parts, strict=True)
        if isinstance(value, collections.defaultdict):
            return kind(value.default_factory, pairs)
        return dict(pairs) if kind is dict else _made(kind, dict(pairs), where)
    if dataclasses.is_dataclass(value):
        fields = dataclasses.fields(value)
        if any(not f.init for f in fields):
            raise TypeError(f"{where} holds a stage in a {kind.__qualname__} whose fields are "
                            "not all set by its constructor; pass the stage directly instead")
        return dataclasses.replace(value, **{f.name: part for f, part in
                                             zip(fields, parts, strict=True)})
    return _made(kind, parts, where)


def _made(kind: type, parts: Any, where: str) -> Any:
    try:
        return kind(parts)
    except Exception as exc:
        raise TypeError(f"{where} holds a stage in a {kind.__qualname__}, which pydags cannot "
                        f"make again with the stage's result ({exc}); use a list, tuple or "
                        "dict there") from None


_PLAIN = {int, float, complex, bool, str, bytes, type(None)}  # never hold a stage


def _holding(value: Any, where: str) -> set[int]:
    """The ids of the containers inside ``value`` that hold a stage, at any depth (walked
    without recursion, so depth is no limit)."""
    holding: set[int] = set()
    on_path: set[int] = set()
    stack: list[tuple[Any, list[Any] | None]] = [(value, None)]
    while stack:
        node, parts = stack[-1]
        if parts is None:
            parts = _parts(node, where)
            if parts is None or id(node) in on_path or (
                    len(parts) > 16 and set(map(type, parts)) <= _PLAIN):
                stack.pop()  # nothing to look into (a long list of numbers, say)
                continue
            on_path.add(id(node))
            stack[-1] = (node, parts)
            stack.extend((part, None) for part in parts
                         if not isinstance(part, Stage) and id(part) not in holding)
            continue
        stack.pop()
        on_path.discard(id(node))
        if any(isinstance(part, Stage) or id(part) in holding for part in parts):
            if any(part is node for part in parts):
                raise TypeError(f"{where} holds a stage in a container that contains itself; "
                                "pydags cannot make it again with the stage's result")
            holding.add(id(node))
    return holding


def _described(args: tuple, kwargs: dict, owner: str) -> Iterator[tuple[str, Any]]:
    for position, value in enumerate(args):
        yield f"stage {owner!r}, argument {position}", value
    for key, value in kwargs.items():
        yield f"stage {owner!r}, argument {key!r}", value


def stages_in(args: tuple, kwargs: dict, owner: str = "?") -> list[Stage]:
    """The stages inside a stage's arguments: given directly, or inside lists, tuples, sets,
    dicts (and their subclasses, namedtuples) and dataclasses, at any depth. A stage where
    pydags could not put its result (a dict key, a numpy array) is an error naming it."""
    found: dict[int, Stage] = {}
    for where, value in _described(args, kwargs, owner):
        if isinstance(value, Stage):
            found.setdefault(id(value), value)
            continue
        holding = _holding(value, where)
        stack = [value] if id(value) in holding else []
        while stack:
            for part in _parts(stack.pop(), where) or ():
                if isinstance(part, Stage):
                    found.setdefault(id(part), part)
                elif id(part) in holding:
                    stack.append(part)
    return list(found.values())


def resolve(value: Any, results: dict[str, Any], where: str = "an argument",
            names: dict[int, str] | None = None) -> Any:
    """``value`` with every stage inside it replaced by its result from ``results``;
    containers without a stage are passed as they are, not copied. ``names``: each stage's
    name by id, as a run knew them when it started (a stage renamed since keeps it)."""
    def result(item: Stage) -> Any:
        return results[names[id(item)] if names is not None else item.name]

    if isinstance(value, Stage):
        return result(value)
    holding = _holding(value, where)
    if id(value) not in holding:
        return value
    built: dict[int, Any] = {}
    stack: list[tuple[Any, bool]] = [(value, False)]
    while stack:  # children are rebuilt before the containers holding them
        node, children_done = stack.pop()
        parts = _parts(node, where) or []
        if children_done:
            built[id(node)] = _rebuild(node, [
                result(p) if isinstance(p, Stage) else built.get(id(p), p)
                for p in parts], where)
            continue
        stack.append((node, True))
        stack.extend((p, False) for p in parts if id(p) in holding and id(p) not in built)
    return built[id(value)]


def resolve_arguments(item: Stage, results: dict[str, Any],
                      names: dict[int, str] | None = None) -> tuple[tuple, dict]:
    """The stage's arguments with every stage inside replaced by its result (``names``:
    as for ``resolve``)."""
    args, kwargs = item.arguments
    return (tuple(resolve(v, results, f"stage {item.name!r}, argument {i}", names)
                  for i, v in enumerate(args)),
            {k: resolve(v, results, f"stage {item.name!r}, argument {k!r}", names)
             for k, v in kwargs.items()})


class _StoreStage(Stage):
    """A class stage given its own store at construction, as the published pydags did."""

    store_argument: str = ""  # the constructor keyword that takes the store
    store_hint: str = ""

    def __init__(self, /, *args: Any, **kwargs: Any):
        given = kwargs.pop(self.store_argument, None)
        if given is None and args and self._is_store(args[0]):
            given, args = args[0], args[1:]
        if given is None:
            raise TypeError(f"{type(self).__name__} needs {self.store_argument}="
                            f"{self.store_hint}")
        super().__init__(*args, **kwargs)
        self._store, self._store_given = self._make_store(given), True

    def _is_store(self, value: Any) -> bool:
        raise NotImplementedError

    def _make_store(self, given: Any) -> Any:
        raise NotImplementedError


class RedisStage(_StoreStage):
    """A class stage whose ``read``/``write`` use Redis, as in the published pydags:
    ``MyStage(redis_instance=redis.Redis(...))`` (a ``redis://`` URL works too)."""

    store_argument = "redis_instance"
    store_hint = "redis.Redis(...) or a redis:// URL"

    def _is_store(self, value: Any) -> bool:
        return type(value).__module__.startswith("redis")

    def _make_store(self, given: Any) -> Any:
        from pydags.store import RedisStore

        return RedisStore(given)

    @property
    def redis_instance(self) -> Any:
        """The ``redis.Redis`` client (a new connection in each worker process)."""
        return self._store.client


class DiskCacheStage(_StoreStage):
    """A class stage whose ``read``/``write`` use a ``diskcache.Cache`` (or its folder), as in
    the published pydags: ``MyStage(cache=diskcache.Cache(path))``."""

    store_argument = "cache"
    store_hint = "diskcache.Cache(path) or a folder path"

    def _is_store(self, value: Any) -> bool:
        return type(value).__module__.startswith("diskcache")

    def _make_store(self, given: Any) -> Any:
        from pydags.store import DiskCacheStore

        return DiskCacheStore(given)

    @property
    def cache(self) -> Any:
        """The ``diskcache.Cache``."""
        return self._store.cache

    disk_cache = cache  # the name the published pydags 0.1 gave it

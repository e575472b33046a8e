"""Stages: the nodes of a pipeline, made with ``@stage`` or by subclassing ``Stage``."""

from __future__ import annotations

import functools
import inspect
import math
import unicodedata
from collections.abc import Callable
from typing import Any

from pydags.arguments import Upstream, container_sizes, items_of, mismatch, stages_in
from pydags.calls import SourceFunction, StageCall, fresh
from pydags.errors import InvalidStageTypeException, MapError


def _refuse_generators(name: str, function: Any) -> None:
    """A generator's items would never be produced: a stage returns its result whole."""
    if inspect.isgeneratorfunction(function) or inspect.isasyncgenfunction(function):
        raise TypeError(f"stage {name!r} is a generator function (it uses yield): a stage "
                        "returns its whole result; return a list, e.g. "
                        "return [... for ...] instead of yielding each item")


class Stage(Upstream):
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
        # the arguments last walked for stages, their containers' sizes, the stages
        self._walked: tuple[tuple, dict, tuple, list[Stage]] | None = None
        self._name: str | None = None
        self._store: Any = None
        self._store_given = False  # True for a store of its own, not its pipeline's
        self._pipelines: list[Any] = []  # weak references to the pipelines holding it
        self._declared: frozenset[str] = frozenset()  # attributes its __init__ set
        return self

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _refuse_generators(cls.__name__, cls.__dict__.get("run"))
        init = cls.__dict__.get("__init__")
        if init is not None and cls.__module__ != __name__:
            cls.__init__ = _declaring(init)

    def declared(self) -> dict[str, Any]:
        """The attributes its class's ``__init__`` set: with its arguments, what its result
        depends on (and so what its cache key reads)."""
        return {k: self.__dict__[k] for k in sorted(self._declared) if k in self.__dict__}

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
        for value in self.argument_stages:
            found.setdefault(id(value), value)
        return list(found.values())

    @property
    def argument_stages(self) -> list[Stage]:
        """The stages inside its arguments, whose results it takes. The arguments are walked
        again only once they change (a large map's items are walked once, not at each of
        the checks of building and starting a pipeline)."""
        args, kwargs = self._args, self._kwargs
        sizes = container_sizes(args, kwargs)
        walked = self._walked
        if walked is None or walked[0] is not args or walked[1] is not kwargs \
                or walked[2] != sizes:
            self._walked = walked = (args, kwargs, sizes, stages_in(args, kwargs, self.name))
        return walked[3]

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
        state.update(_args=(), _kwargs={}, _after={}, _pipelines=[], _walked=None)
        return state

    def __repr__(self) -> str:
        deps = ", ".join(d.name for d in self.dependencies)
        return f"<{type(self).__name__} {self.name!r}" + (f" after {deps}>" if deps else ">")


def _declaring(init: Callable[..., None]) -> Callable[..., None]:
    """A class stage's ``__init__`` that notes which attributes it sets."""
    @functools.wraps(init)
    def __init__(self: Stage, /, *args: Any, **kwargs: Any) -> None:
        before = set(self.__dict__)
        init(self, *args, **kwargs)
        self._declared |= set(self.__dict__) - before - {"_args", "_kwargs"}

    __init__.declaring = True  # type: ignore[attr-defined]  # fingerprints read ``init``
    return __init__


def unwrapped(method: Any) -> Any:
    """A class stage's method as its class defines it (``__init__`` without ``_declaring``)."""
    return method.__wrapped__ if getattr(method, "declaring", False) else method


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


class StageFunction(SourceFunction):
    """What ``@stage`` returns: calling it makes a stage; ``.func`` is the plain function."""

    def __init__(self, function: Callable[..., Any], options: dict):
        functools.update_wrapper(self, function)
        super().__init__(function)
        self.stage_options = options

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


def check_name(name: str) -> None:
    """Refuse a stage name that holds a control character: no drawing, table or terminal
    could show it as written."""
    bad = sorted({c for c in name if unicodedata.category(c) in ("Cc", "Cs")})
    if bad:
        raise ValueError(f"stage name {name!r} holds control characters "
                         f"({', '.join(map(repr, bad))}); give it a name without them "
                         "with .named()")


def check_settings(item: Stage) -> None:
    """Check a stage's retries, retry_delay and timeout, wherever they were set (a class
    stage may set them as class attributes)."""
    _check_options(item.name, dict(retries=item.retries, retry_delay=item.retry_delay,
                                   timeout=item.timeout))


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

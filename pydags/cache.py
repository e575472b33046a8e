"""Result caching: a stage's result is kept under a fingerprint of what it uses — its code
and the code and module constants of the user functions it calls, transitively, its
arguments, and its upstream fingerprints — so a later run reuses it until one changes.

Fingerprints are the same in every process (no ``hash()``, sets are sorted), so a cache
written by one session serves the next. Next to each result, the parts of its fingerprint
are kept, so a stage that runs again can say why: its code, an argument or an upstream
result changed.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import marshal
import sys
import sysconfig
import types
import warnings
from typing import TYPE_CHECKING, Any

import cloudpickle

from pydags.run import Event, Run
from pydags.stage import FunctionStage, Stage, StageFunction, resolve_arguments
from pydags.status import StageStatus
from pydags.store import UnreadableKey

if TYPE_CHECKING:
    from pydags.items import Items
    from pydags.mapping import MappedStage
    from pydags.scheduler import Plan

PREFIX = "pydags-cache"
# A stage's own attributes that do not change its result (its code is fingerprinted apart).
_NOT_RESULTS = {"function", "_store", "_store_given", "_call", "_name", "retries",
                "retry_delay", "timeout"}
_LIBRARIES = tuple({sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib",
                                                      "platlib")})


@dataclasses.dataclass(frozen=True)
class Fingerprint:
    """What a stage's cached result depends on, part by part."""

    code: str
    arguments: str
    upstream: tuple[tuple[str, str], ...]
    logic: str = ""  # the code without the values of the module globals it reads
    constants: tuple[tuple[str, str], ...] = ()  # each such global ("module.NAME") and value

    @property
    def digest(self) -> str:
        whole = "\n".join([self.code, self.arguments, *map(":".join, self.upstream)])
        return hashlib.sha256(whole.encode()).hexdigest()[:32]

    def change_from(self, before: dict[str, Any]) -> str:
        """Why this stage runs again, compared with the fingerprint of its last result."""
        if before.get("code") != self.code:
            if before.get("logic") == self.logic and "constants" in before:
                was, now = dict(before["constants"]), dict(self.constants)
                changed = sorted(n for n in was.keys() | now.keys() if was.get(n) != now.get(n))
                if changed:
                    return f"a global it reads changed: {', '.join(changed)}"
            return "its code changed"
        if before.get("arguments") != self.arguments:
            return "an argument changed"
        was = dict(before.get("upstream", ()))
        changed = [name for name, digest in self.upstream if was.get(name) != digest]
        return f"upstream {', '.join(changed)} changed" if changed else "its inputs changed"


def fingerprints(plan: Plan) -> dict[str, Fingerprint]:
    """A fingerprint per stage whose code and arguments can be fingerprinted."""
    found: dict[str, Fingerprint] = {}
    for name, stage in plan.stages.items():  # topological order: upstream ones come first
        deps = plan.dependencies[name]
        if any(d not in found for d in deps):
            continue  # something upstream cannot be cached, so neither can this
        try:
            args = resolve_arguments(stage, {d: _Upstream(d) for d in deps})
            state = {k: v for k, v in stage.__getstate__().items() if k not in _NOT_RESULTS}
            arguments = _digest(stable((args, state)))
            constants: dict[str, bytes] = {}
            logic = _code(stage, constants)
        except Exception:
            continue
        values = tuple(sorted((n, _digest(v)) for n, v in constants.items()))
        code = _digest(logic + stable(values))
        found[name] = Fingerprint(code, arguments,
                                  tuple((d, found[d].digest) for d in sorted(deps)),
                                  _digest(logic), values)
    return found


class _Upstream:
    """Stands for an upstream stage's result in the arguments while they are fingerprinted."""

    def __init__(self, name: str):
        self.name = name


def key(pipeline: str, name: str, part: str) -> str:
    """Where a stage's cached result (``part`` = its digest) or last fingerprint is kept."""
    if len(name) > 80:  # stage names may be long; store keys may not
        name = f"{name[:40]}~{hashlib.sha256(name.encode()).hexdigest()[:16]}"
    return f"{PREFIX}/{pipeline}/{name}/{part}"


def cached_results(store: Any, pipeline: str, prints: dict[str, Fingerprint],
                   ) -> tuple[dict[str, Any], dict[str, str]]:
    """The stored results of the stages whose fingerprint is unchanged, and for every stage
    that can be cached, whether it was found, and if not, why it runs again."""
    found: dict[str, Any] = {}
    notes: dict[str, str] = {}
    for name, fingerprint in prints.items():
        try:
            found[name] = store.get(key(pipeline, name, fingerprint.digest))
            notes[name] = "cached: code, arguments and upstream unchanged"
            continue
        except KeyError:
            pass
        except UnreadableKey as exc:
            warnings.warn(f"stage {name!r} runs again: its cached result {exc}", stacklevel=3)
            notes[name] = "runs again: its cached result could not be read"
            continue
        try:
            before = store.get(key(pipeline, name, "last"))
        except (KeyError, UnreadableKey):
            notes[name] = "runs: no cached result yet"
            continue
        notes[name] = f"runs again: {fingerprint.change_from(before)}"
    return found, notes


def remember_results(store: Any, pipeline: str, run: Run, prints: dict[str, Fingerprint]):
    """A subscriber that stores each DONE stage's result under its fingerprint."""

    def remember(event: Event) -> None:
        fingerprint = prints.get(event.stage)
        if event.status is not StageStatus.DONE or fingerprint is None:
            return
        try:
            store.set(key(pipeline, event.stage, fingerprint.digest), run.results[event.stage])
        except TypeError as exc:
            warnings.warn(f"stage {event.stage!r} was not cached: {exc}", stacklevel=2)
            return
        store.set(key(pipeline, event.stage, "last"), dataclasses.asdict(fingerprint))

    return remember


class CachedItems:
    """The results of mapped stages' items, kept under a fingerprint of their own: the
    stage's code, keyword arguments and settings, and the item's arguments. When a map's
    list changes, only its new or changed items run."""

    def __init__(self, store: Any, pipeline: str, plan: Plan, prints: dict[str, Fingerprint]):
        self.store, self.pipeline, self.plan, self.prints = store, pipeline, plan, prints
        self.keys: dict[str, list[str]] = {}  # mapped stage -> each item's key

    def find(self, name: str, mapped: MappedStage, count: int) -> dict[int, Any]:
        """The items of ``name`` whose results are stored."""
        fingerprint = self.prints.get(name)
        if fingerprint is None or any(self.plan.linked[name]):
            return {}  # a map over another map's items: only the whole stage is cached
        stage = self.plan.stages[name]
        try:
            state = {k: v for k, v in stage.__getstate__().items() if k not in _NOT_RESULTS}
            common = fingerprint.code.encode() + stable((mapped.kwargs, state))
            keys = [key(self.pipeline, name, "item-" + _digest(
                common + stable(mapped.arguments(i)))[:32]) for i in range(count)]
        except Exception:
            return {}
        self.keys[name] = keys
        found = {}
        for i, item_key in enumerate(keys):
            try:
                found[i] = self.store.get(item_key)
            except KeyError:
                continue
            except UnreadableKey as exc:
                warnings.warn(f"item {i} of stage {name!r} runs again: its cached result "
                              f"{exc}", stacklevel=2)
        return found

    def keep(self, name: str, items: Items, parts: list[range]) -> None:
        """Store the results of items ``parts`` of ``name``."""
        keys = self.keys.get(name)
        if keys is None:
            return
        for part in parts:
            for i in part:
                try:
                    self.store.set(keys[i], items.values[i])
                except TypeError as exc:
                    warnings.warn(f"the items of stage {name!r} are not cached: {exc}",
                                  stacklevel=2)
                    del self.keys[name]
                    return


def clear(store: Any, pipeline: str) -> int:
    """Delete every cached result of ``pipeline`` from ``store``; returns how many."""
    names = store.keys(f"{PREFIX}/{pipeline}/")
    for name in names:
        store.delete(name)
    return sum(1 for name in names if not name.endswith("/last"))


# --- what a stage uses ---------------------------------------------------------
def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _code(stage: Stage, constants: dict[str, bytes]) -> bytes:
    if isinstance(stage, FunctionStage):
        return code_of(stage.function, None, constants)
    seen: set[int] = set()
    methods = [v for v in vars(type(stage)).values() if callable(v)]
    return _source(type(stage)) + b"".join(code_of(m, seen, constants) for m in methods)


def code_of(function: Any, seen: set[int] | None = None,
            constants: dict[str, bytes] | None = None) -> bytes:
    """The code of ``function`` and of the user functions, classes and module constants it
    refers to, transitively (libraries count by name and version, not by their code).
    Given ``constants``, the values of the module constants go there ("module.NAME" ->
    their bytes) instead of into the code."""
    seen = set() if seen is None else seen
    if id(function) in seen:
        return b""
    seen.add(id(function))
    if isinstance(function, functools.partial):
        return (code_of(function.func, seen, constants)
                + stable((function.args, function.keywords)))
    if isinstance(function, StageFunction):
        return code_of(function.func, seen, constants)
    if isinstance(function, types.MethodType):
        return code_of(function.__func__, seen, constants)
    code = getattr(function, "__code__", None)
    if code is None or not _is_user_code(function):
        return _library_name(function)
    parts = [_source(function) or marshal.dumps(code),
             stable((function.__defaults__, function.__kwdefaults__))]
    for cell in function.__closure__ or ():
        parts.append(_used(cell.cell_contents, seen))
    known = function.__globals__
    module = known.get("__name__") or "__main__"
    for name in sorted(_names(code)):
        if name in known:
            where = name if module == "__main__" else f"{module}.{name}"
            parts.append(name.encode() + b"=" + _used(known[name], seen, constants, where))
    return b"\0".join(parts)


def _used(value: Any, seen: set[int], constants: dict[str, bytes] | None = None,
          name: str = "") -> bytes:
    """What a function refers to, as far as it changes the function's result (a module
    constant's value goes to ``constants`` under ``name``, if given)."""
    if isinstance(value, types.ModuleType):
        return _library_name(value)
    if callable(value) and not isinstance(value, type):
        return code_of(value, seen, constants)
    if isinstance(value, type):
        if not _is_user_code(value) or id(value) in seen:
            return _library_name(value)
        seen.add(id(value))
        methods = [v for v in vars(value).values() if isinstance(v, types.FunctionType)]
        return _source(value) + b"".join(code_of(m, seen, constants) for m in methods)
    try:
        found = stable(value)
    except Exception:  # an object it only uses, e.g. a client: its state does not count
        return type(value).__qualname__.encode()
    if constants is None or not name:
        return found
    constants[name] = found
    return b"<constant>"


def _names(code: types.CodeType) -> set[str]:
    """The global names a code object and the code nested in it refer to."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const)
    return names


def _is_user_code(value: Any) -> bool:
    """Code of the user's own (a notebook, a script, exec'd code), not of a library."""
    module = sys.modules.get(getattr(value, "__module__", None) or "")
    if module is None:
        return True  # made by exec, or in a namespace of its own
    path = getattr(module, "__file__", None)
    if path is None:
        return module.__name__ not in sys.builtin_module_names
    return not path.startswith(_LIBRARIES)


def _library_name(value: Any) -> bytes:
    module = getattr(value, "__module__", None) or getattr(value, "__name__", "")
    top = sys.modules.get(str(module).split(".")[0])
    version = getattr(top, "__version__", "")
    return f"{module}.{getattr(value, '__qualname__', '')}@{version}".encode()


def _source(target: Any) -> bytes:
    try:
        return inspect.getsource(target).encode()
    except (OSError, TypeError):
        return b""


def stable(value: Any) -> bytes:
    """Bytes that stand for ``value`` the same way in every process (sets and dicts are
    sorted, so the hash seed does not matter)."""
    if isinstance(value, _Upstream):
        return b"<upstream " + value.name.encode() + b">"
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
        return repr((type(value).__name__, value)).encode()
    if isinstance(value, (set, frozenset)):
        return b"set{" + b",".join(sorted(stable(v) for v in value)) + b"}"
    if isinstance(value, dict):
        items = sorted(stable(k) + b":" + stable(v) for k, v in value.items())
        return type(value).__name__.encode() + b"{" + b",".join(items) + b"}"
    if isinstance(value, (list, tuple)):
        return type(value).__name__.encode() + b"[" + b",".join(map(stable, value)) + b"]"
    if isinstance(value, functools.partial) or inspect.isfunction(value):
        return code_of(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return type(value).__qualname__.encode() + stable(
            {f.name: getattr(value, f.name) for f in dataclasses.fields(value)})
    return cloudpickle.dumps(value)

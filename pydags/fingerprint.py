"""What a stage's result depends on, part by part: the fingerprint under which it is cached.

A stage's fingerprint covers the code of every user function, method and class it reaches
at any depth (through globals, attributes of user modules, closures, defaults and
``functools.partial``), the module constants those read, its arguments, the names and
versions of the libraries it calls, and its upstream stages' fingerprints. Code counts as
its syntax tree without docstrings, so comments, docstrings, blank lines, formatting and
where a function sits in its file change nothing. Fingerprints are the same in every
process (no ``hash()``; sets and dicts are sorted), so a cache written by one session
serves the next. Each part is kept apart, so a stage that would run again can say why:
which function, which global, which argument, which upstream stage.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
import inspect
import marshal
import os
import sys
import sysconfig
import textwrap
import types
from typing import TYPE_CHECKING, Any

import cloudpickle

from pydags.arguments import resolve_arguments
from pydags.calls import fresh
from pydags.stage import FunctionStage, Stage, StageFunction, unwrapped

if TYPE_CHECKING:
    from pydags.plan import Plan

# A stage's own attributes that do not change its result (its code is fingerprinted apart).
_LIBRARIES = tuple({sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib",
                                                      "platlib")})
SHOWN = 40  # characters of a value's repr said in a reason

Parts = tuple[tuple[str, str], ...]  # (what, digest), sorted


@dataclasses.dataclass(frozen=True)
class Fingerprint:
    """What a stage's cached result depends on, part by part."""

    code: str  # the code it reaches and the constants that code reads
    arguments: str
    upstream: Parts  # upstream stage -> its fingerprint's digest
    functions: Parts = ()  # each user function or class it reaches -> its code's digest
    constants: Parts = ()  # each module constant read ("module.NAME") -> its value's digest
    given: Parts = ()  # each argument ("threshold", "attribute x") -> its value's digest
    shown: Parts = ()  # constants and arguments -> a short repr, for saying what changed
    places: Parts = ()  # functions -> where they are ("helpers.py:12"), for saying which

    @functools.cached_property
    def digest(self) -> str:
        whole = "\n".join([self.code, self.arguments, *map(":".join, self.upstream)])
        return hashlib.sha256(whole.encode()).hexdigest()[:32]

    def record(self) -> dict[str, Any]:
        """Its parts as a dict (as ``dataclasses.asdict``, which is slow), to be stored."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def change_from(self, before: dict[str, Any], rerun: set[str] = frozenset()) -> str:
        """Why this stage's result is not the one of fingerprint ``before`` (a stored
        ``asdict``): its code, a global, an argument, or an upstream stage (``rerun``: those
        that will run)."""
        if before.get("code") != self.code:
            functions = _changed(before.get("functions"), self.functions)
            if functions:
                places = dict(self.places)
                named = [f"`{f.rpartition('.')[2]}`" + (f" ({places[f]})" if f in places else "")
                         for f in functions[:3]]
                return "its code changed: " + ", ".join(named) + _more(functions)
            constants = _changed(before.get("constants"), self.constants)
            if constants and "functions" in before:
                return f"global{'s' * (len(constants) > 1)} " + _values(constants, before, self)
            return "its code changed"
        if before.get("arguments") != self.arguments:
            given = _changed(before.get("given"), self.given)
            arguments = [g for g in given if not g.startswith("attribute ")]
            if given and "given" in before:  # attributes name themselves: "attribute `x`"
                return (f"argument{'s' * (len(arguments) > 1)} " * bool(arguments)
                        + _values(given, before, self))
            return "an argument changed"
        was = dict(before.get("upstream", ()))
        changed = [name for name, digest in self.upstream if was.get(name) != digest]
        if not changed:
            return "its inputs changed"
        running = [n for n in changed if n in rerun]
        if running:
            return f"upstream {', '.join(f'`{n}`' for n in running)} will run"
        return f"upstream {', '.join(f'`{n}`' for n in changed)} changed"


def _changed(before: Any, now: Parts) -> list[str]:
    """The parts whose digest differs (or that came or went)."""
    was, new = dict(map(tuple, before or ())), dict(now)
    return sorted(name for name in was.keys() | new.keys() if was.get(name) != new.get(name))


def _more(names: list[str]) -> str:
    return f" and {len(names) - 3} more" if len(names) > 3 else ""


def _values(names: list[str], before: dict[str, Any], after: Fingerprint) -> str:
    """"`SCALE` changed: 1 → 10", for up to three of ``names``."""
    was, now = dict(map(tuple, before.get("shown", ()))), dict(after.shown)
    said = []
    for name in names[:3]:
        short = name.rpartition(".")[2] if "." in name and " " not in name else name
        label = f"attribute `{name[10:]}`" if name.startswith("attribute ") else f"`{short}`"
        old, new = was.get(name, "(none)"), now.get(name, "(none)")
        said.append(f"{label} changed: {old} → {new}")
    return "; ".join(said) + _more(names)


def code_of_stages(plan: Plan) -> dict[Any, tuple | None]:
    """What the code of each function (or class) the plan's stages run gives a fingerprint,
    walked now: the code and the globals it reads as they are now (None: it cannot be
    fingerprinted). ``fingerprints`` takes it to make the rest later, on another thread."""
    sources: dict[int, bytes] = {}
    codes: dict[Any, tuple | None] = {}
    for stage in plan.stages.values():
        try:
            _code(stage, sources, codes)
        except Exception:
            codes[_key(stage)] = None
    return codes


def fingerprints(plan: Plan, codes: dict[Any, tuple | None] | None = None,
                 ) -> dict[str, Fingerprint]:
    """A fingerprint per stage whose code and arguments can be fingerprinted (in the
    plan's topological order); ``codes``: from ``code_of_stages``, made earlier."""
    found: dict[str, Fingerprint] = {}
    sources: dict[int, bytes] = {}  # id of a code object -> its normalised source
    codes = {} if codes is None else codes  # a stage's function (or class) -> its code's
    signatures: dict[Any, inspect.Signature | None] = {}
    for name, stage in plan.stages.items():  # topological order: upstream ones come first
        deps = plan.dependencies[name]
        if any(d not in found for d in deps):
            continue  # something upstream cannot be cached, so neither can this
        try:
            given = _given(stage, {d: Upstream(d) for d in deps}, signatures)
            code, constants, functions, shown, places = _code(stage, sources, codes)
            arguments = tuple(sorted((n, digest(stable(v))) for n, v in given.items()))
        except Exception:  # an argument that cannot be pickled, or nested too deep: it runs
            continue
        found[name] = Fingerprint(
            code=code, arguments=digest(stable(arguments)),
            upstream=tuple((d, found[d].digest) for d in sorted(deps)),
            functions=functions, constants=constants, given=arguments,
            shown=tuple(sorted({**shown, **{n: _shown(v) for n, v in given.items()}}.items())),
            places=places)
    return found


def _code(stage: Stage, sources: dict[int, bytes], codes: dict[Any, tuple]) -> tuple:
    """The digest of the code a stage runs, the constants it reads, its functions and where
    they are: walked once per function (or class) in a plan, where many stages share one."""
    key = _key(stage)
    if key not in codes:
        reach = Reach(sources)
        logic = reach.stage_code(stage)
        constants = tuple(sorted((n, digest(v)) for n, v in reach.constants.items()))
        codes[key] = (digest(logic + stable(constants)), constants,
                      tuple(sorted(reach.functions.items())), reach.shown,
                      tuple(sorted(reach.places.items())))
    if codes[key] is None:
        raise ValueError("its code cannot be fingerprinted")
    return codes[key]


def _key(stage: Stage) -> Any:
    return stage.function if isinstance(stage, FunctionStage) else type(stage)


class Upstream:
    """Stands for an upstream stage's result in the arguments while they are fingerprinted."""

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return f"the result of {self.name}"


def _given(stage: Stage, upstream: dict[str, Upstream],
           signatures: dict[Any, inspect.Signature | None]) -> dict[str, Any]:
    """The stage's arguments by parameter name (and its own attributes, for a class
    stage), upstream results standing as ``Upstream`` (``signatures``: those known)."""
    args, kwargs = resolve_arguments(stage, upstream)
    key = _key(stage)
    if key not in signatures:
        target = stage.function if isinstance(stage, FunctionStage) else stage.run
        try:
            signatures[key] = inspect.signature(target)
        except (TypeError, ValueError):
            signatures[key] = None
    try:
        binding = signatures[key].bind_partial(*args, **kwargs)  # type: ignore[union-attr]
        binding.apply_defaults()  # an argument left to its default is that value, said
        bound = binding.arguments
    except (TypeError, ValueError, AttributeError):
        bound = {**{f"argument {i}": v for i, v in enumerate(args)}, **kwargs}
    declared = stage.declared()
    state = {f"attribute {k}": v for k, v in declared.items() if not k.startswith("_")}
    private = {k: v for k, v in declared.items() if k.startswith("_")}
    return {**bound, **state, **({"private state": private} if private else {})}


def _shown(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__qualname__}>"
    return text if len(text) <= SHOWN else text[:SHOWN - 1] + "…"


class Reach:
    """Walks what a stage's code reaches, keeping each user function's own digest and each
    module constant's value apart from the code (``sources`` caches normalised sources)."""

    def __init__(self, sources: dict[int, bytes] | None = None):
        self.seen: set[int] = set()
        self.functions: dict[str, str] = {}
        self.places: dict[str, str] = {}
        self.constants: dict[str, bytes] = {}
        self.shown: dict[str, str] = {}
        self.sources = {} if sources is None else sources

    def stage_code(self, stage: Stage) -> bytes:
        if isinstance(stage, FunctionStage):  # as the run will have it: edited files anew
            return self.code(fresh(stage.function))
        return self.used(type(stage))

    def code(self, function: Any) -> bytes:
        """The code of ``function`` and of what it refers to, transitively (libraries count
        by name and version, not by their code)."""
        if id(function) in self.seen:
            return b""
        self.seen.add(id(function))
        if isinstance(function, functools.partial):
            return self.code(function.func) + stable((function.args, function.keywords))
        if isinstance(function, StageFunction):
            return self.code(function.func)
        if isinstance(function, types.MethodType):
            return self.code(function.__func__)
        code = getattr(function, "__code__", None)
        if code is None or not _is_user_code(function):
            return _library_name(function)
        own = self._source(function, code) + stable(
            (function.__defaults__, function.__kwdefaults__))
        name = _qualified(function)
        self.functions[name] = digest(own)
        self.places[name] = f"{os.path.basename(code.co_filename)}:{code.co_firstlineno}"
        parts = [own]
        for cell in function.__closure__ or ():
            parts.append(self.used(cell.cell_contents))
        known = function.__globals__
        module = known.get("__name__") or "__main__"
        names = _names(code)
        for global_name in sorted(names):
            if global_name in known:
                where = global_name if module == "__main__" else f"{module}.{global_name}"
                parts.append(global_name.encode() + b"=" +
                             self.used(known[global_name], where, names))
        return b"\0".join(parts)

    def used(self, value: Any, name: str = "", attributes: set[str] = frozenset()) -> bytes:
        """What a function refers to, as far as it changes the function's result: a module
        constant's value goes to ``constants`` under ``name``; of a user module, the
        ``attributes`` the function names."""
        if isinstance(value, types.ModuleType):
            if not _is_user_code(value) or id(value) in self.seen:
                return _library_name(value)
            self.seen.add(id(value))
            found = [a.encode() + b"=" + self.used(getattr(value, a), f"{value.__name__}.{a}")
                     for a in sorted(attributes) if hasattr(value, a)]
            self.seen.discard(id(value))  # another function may name other attributes
            return value.__name__.encode() + b"{" + b",".join(found) + b"}"
        if callable(value) and not isinstance(value, type):
            return self.code(value)
        if isinstance(value, type):
            if not _is_user_code(value) or id(value) in self.seen:
                return _library_name(value)
            self.seen.add(id(value))
            own = self._source(value)
            self.functions[_qualified(value)] = digest(own)
            methods = [unwrapped(v) for v in vars(value).values()
                       if isinstance(v, types.FunctionType)]
            return own + b"".join(self.code(m) for m in methods)
        try:
            found = stable(value)
        except Exception:  # an object it only uses, e.g. a client: its state does not count
            return type(value).__qualname__.encode()
        if not name:
            return found
        self.constants[name] = found
        self.shown[name] = _shown(value)
        return b"<constant>"

    def _source(self, target: Any, code: types.CodeType | None = None) -> bytes:
        key = id(code if code is not None else target)
        if key not in self.sources:
            self.sources[key] = normalised_source(target, code)
        return self.sources[key]


def normalised_source(target: Any, code: types.CodeType | None = None) -> bytes:
    """The syntax tree of a function's or class's source, without docstrings or positions;
    for code whose source is not to be had alone (a lambda inside a call), its bytecode
    without line numbers."""
    try:
        text = textwrap.dedent(inspect.getsource(target))
        tree = ast.parse(text)
    except (OSError, TypeError, SyntaxError, IndentationError):
        return _bytecode(code) if code is not None else b""
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(
                    getattr(body[0], "value", None), ast.Constant) and isinstance(
                    body[0].value.value, str):
                node.body = body[1:]
    return ast.dump(tree).encode()


def _bytecode(code: types.CodeType) -> bytes:
    consts = tuple(_bytecode(c) if isinstance(c, types.CodeType) else repr(c)
                   for c in code.co_consts)
    return marshal.dumps((code.co_code, consts, code.co_names, code.co_varnames))


def code_of(function: Any) -> bytes:
    """The code of ``function`` and of everything of the user's it reaches."""
    return Reach().code(function)


def _qualified(value: Any) -> str:
    module = getattr(value, "__module__", None) or "__main__"
    name = getattr(value, "__qualname__", getattr(value, "__name__", "?"))
    return name if module == "__main__" else f"{module}.{name}"


def digest(data: bytes) -> str:
    """A hex digest of ``data`` (SHA-256)."""
    return hashlib.sha256(data).hexdigest()


def _names(code: types.CodeType) -> set[str]:
    """The global and attribute names a code object and the code nested in it refer to."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const)
    return names


def _is_user_code(value: Any) -> bool:
    """Code of the user's own (a notebook, a script, exec'd code), not of a library (nor of
    pydags)."""
    if isinstance(value, types.ModuleType):
        path = getattr(value, "__file__", None)
        return path is not None and not _is_library(path)
    code = getattr(value, "__code__", None)
    if code is not None:  # where it was written: __main__ may be a library's (a kernel's)
        return code.co_filename.startswith("<") or not _is_library(code.co_filename)
    if getattr(value, "__module__", None) == "__main__":
        return True
    module = sys.modules.get(getattr(value, "__module__", None) or "")
    if module is None:
        return True  # made by exec, or in a namespace of its own
    path = getattr(module, "__file__", None)
    if path is None:
        return module.__name__ not in sys.builtin_module_names
    return not _is_library(path)


def _is_library(path: str) -> bool:
    """A file of an installed library or of pydags itself (its examples are user code)."""
    if path.startswith(_PACKAGE):
        return not path.startswith(os.path.join(_PACKAGE, "examples"))
    return path.startswith(_LIBRARIES)


_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep  # pydags' own code


def _library_name(value: Any) -> bytes:
    module = getattr(value, "__module__", None) or getattr(value, "__name__", "")
    top = sys.modules.get(str(module).split(".")[0])
    version = getattr(top, "__version__", "")
    return f"{module}.{getattr(value, '__qualname__', '')}@{version}".encode()


def stable(value: Any) -> bytes:
    """Bytes that stand for ``value`` the same way in every process (sets and dicts are
    sorted, so the hash seed does not matter)."""
    if isinstance(value, Upstream):
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

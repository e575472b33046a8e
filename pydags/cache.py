"""Result caching: a stage's result is kept under a fingerprint of its code, its arguments and
its upstream fingerprints, so a later run reuses it until one of those changes.
"""

from __future__ import annotations

import hashlib
import inspect
import marshal
import warnings
from typing import TYPE_CHECKING, Any

import cloudpickle

from pydags.run import Event, Run
from pydags.stage import FunctionStage, Stage, resolve_arguments
from pydags.status import StageStatus

if TYPE_CHECKING:
    from pydags.scheduler import Plan

PREFIX = "pydags-cache"


def fingerprints(plan: Plan) -> dict[str, str]:
    """A fingerprint per stage whose code and arguments can be fingerprinted."""
    found: dict[str, str] = {}
    for name, stage in plan.stages.items():  # topological order: upstream ones come first
        deps = plan.dependencies[name]
        if any(d not in found for d in deps):
            continue  # something upstream cannot be cached, so neither can this
        digest = hashlib.sha256(_code(stage))
        try:
            args = resolve_arguments(stage, {d: f"<stage {d} {found[d]}>" for d in deps})
            state = {k: v for k, v in stage.__getstate__().items()
                     if k not in ("function", "_store")}  # code is hashed from its source
            digest.update(cloudpickle.dumps((args, state)))
        except Exception:
            continue
        for dep in sorted(deps):
            digest.update(found[dep].encode())
        found[name] = digest.hexdigest()[:32]
    return found


def _code(stage: Stage) -> bytes:
    target: Any = stage.function if isinstance(stage, FunctionStage) else type(stage)
    try:
        return inspect.getsource(target).encode()
    except (OSError, TypeError):
        code = getattr(target, "__code__", None)
        if code is not None:
            return marshal.dumps(code)
        return b"".join(marshal.dumps(f.__code__) for f in vars(target).values()
                        if hasattr(f, "__code__"))


def key(pipeline: str, name: str, fingerprint: str) -> str:
    """Where the result of stage ``name`` of ``pipeline`` with ``fingerprint`` is stored."""
    return f"{PREFIX}/{pipeline}/{name}/{fingerprint}"


def cached_results(store: Any, pipeline: str, prints: dict[str, str]) -> dict[str, Any]:
    """The stored results of the stages whose fingerprint is unchanged."""
    found = {}
    for name, fingerprint in prints.items():
        try:
            found[name] = store.get(key(pipeline, name, fingerprint))
        except KeyError:
            continue
    return found


def remember_results(store: Any, pipeline: str, run: Run, prints: dict[str, str]):
    """A subscriber that stores each DONE stage's result under its fingerprint."""

    def remember(event: Event) -> None:
        if event.status is StageStatus.DONE and event.stage in prints:
            try:
                store.set(key(pipeline, event.stage, prints[event.stage]),
                          run.results[event.stage])
            except TypeError as exc:
                warnings.warn(f"stage {event.stage!r} was not cached: {exc}", stacklevel=2)

    return remember


def clear(store: Any, pipeline: str) -> int:
    """Delete every cached result of ``pipeline`` from ``store``; returns how many."""
    names = store.keys(f"{PREFIX}/{pipeline}/")
    for name in names:
        store.delete(name)
    return len(names)

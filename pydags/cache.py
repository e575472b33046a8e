"""Result caching: a stage's result is kept under its fingerprint (``pydags.fingerprint``),
so a later run reuses it until something it depends on changes; and ``stale``, which says
before a run which stages would run and why.

Next to each result, the parts of its fingerprint are kept, so a stage that runs again can
say why: which function, global, argument or upstream stage changed.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from pydags.fingerprint import Fingerprint, digest, fingerprints, stable
from pydags.stage import Stage
from pydags.store import UnreadableKey

if TYPE_CHECKING:
    from pydags.mapping import MappedStage
    from pydags.plan import Plan

PREFIX = "pydags-cache"


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
            where = key(pipeline, name, fingerprint.digest)
            found[name] = store.get(where)
            touch(store, where)
            notes[name] = "cached: code, arguments and upstream unchanged"
            continue
        except KeyError:
            pass
        except UnreadableKey as exc:
            warnings.warn(f"stage {name!r} runs again: its cached result {exc}", stacklevel=3)
            notes[name] = "runs again: its cached result could not be read"
            store.delete(key(pipeline, name, fingerprint.digest))  # its new one goes there
            continue
        before = last(store, pipeline, name)
        if before is None:
            notes[name] = "runs: no cached result yet"
        else:
            notes[name] = f"runs again: {why(fingerprint, before, set())}"
    return found, notes


def touch(store: Any, where: str) -> None:
    """Mark a stored result as used now, in a store that keeps a quota (the least recently
    used are evicted first)."""
    if hasattr(store, "touch"):
        store.touch(where)


def reused(store: Any, where: str) -> bool:
    """Whether a result is stored under ``where``; if so, it is marked used now."""
    if hasattr(store, "touch"):
        return store.touch(where)  # one look at the store, not two
    return where in store


def last(store: Any, pipeline: str, name: str) -> dict[str, Any] | None:
    """The fingerprint of the last result stored for stage ``name``, if any."""
    try:
        return store.get(key(pipeline, name, "last"))
    except (KeyError, UnreadableKey):
        return None


def why(fingerprint: Fingerprint, before: dict[str, Any], rerun: set[str]) -> str:
    """Why a stage whose result under ``fingerprint`` is not stored would run, given the
    fingerprint of its last stored result (``rerun``: the stages that will run)."""
    stored = Fingerprint(before.get("code", ""), before.get("arguments", ""),
                         tuple(map(tuple, before.get("upstream", ()))))
    if stored.digest == fingerprint.digest:
        return "its stored result is gone"
    return fingerprint.change_from(before, rerun)


class CachedItems:
    """The results of mapped stages' items, kept under a fingerprint of their own: the
    stage's code, keyword arguments and settings, and the item's arguments. When a map's
    list changes, only its new or changed items run."""

    def __init__(self, store: Any, pipeline: str, plan: Plan, prints: dict[str, Fingerprint],
                 write: Callable[[Callable[[], None]], None] | None = None):
        self.store, self.pipeline, self.plan, self.prints = store, pipeline, plan, prints
        self.write = write or (lambda work: work())  # where the writes are done
        self.keys: dict[str, list[str]] = {}  # mapped stage -> each item's key

    def find(self, name: str, mapped: MappedStage, count: int) -> dict[int, Any]:
        """The items of ``name`` whose results are stored."""
        keys = self.item_keys(name, mapped.kwargs, mapped.arguments, count)
        if keys is None:
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

    def item_keys(self, name: str, kwargs: dict, arguments: Callable[[int], tuple],
                  count: int) -> list[str] | None:
        """Where each item's result of mapped stage ``name`` is kept (None if they cannot
        be cached on their own)."""
        fingerprint = self.prints.get(name)
        if fingerprint is None or any(self.plan.linked[name]):
            return None  # a map over another map's items: only the whole stage is cached
        stage = self.plan.stages[name]
        try:
            state = stage.declared()
            common = fingerprint.code.encode() + stable((kwargs, state))
            return [key(self.pipeline, name, "item-" + digest(
                common + stable(arguments(i)))[:32]) for i in range(count)]
        except Exception:
            return None

    def keep(self, name: str, values: list[Any], done: Sequence[int]) -> None:
        """Store the results of items ``done`` of ``name`` (off the scheduler's thread)."""
        if name in self.keys:
            pairs = [(i, values[i]) for i in done]
            self.write(lambda: self._store(name, pairs))

    def _store(self, name: str, pairs: list[tuple[int, Any]]) -> None:
        keys = self.keys.get(name)
        for i, value in pairs if keys is not None else ():
            try:
                self.store.set(keys[i], value)
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


def stale(pipeline: str, plan: Plan, store: Any, ran: frozenset[str] = frozenset(),
          ) -> dict[str, str | None]:
    """For every stage of ``plan``: None when its result for the current code and inputs is
    stored, else why it would run (``ran``: the stages that succeeded in the pipeline's last
    run in this session). Loads no result and runs no stage."""
    prints = fingerprints(plan)
    items = CachedItems(store, pipeline, plan, prints)
    reasons: dict[str, str | None] = {}
    running: set[str] = set()  # the stages found stale so far (upstream ones come first)
    for name, stage in plan.stages.items():
        fingerprint = prints.get(name)
        if fingerprint is None:
            blocked = sorted(d for d in plan.dependencies[name] if d not in prints)
            reasons[name] = (f"upstream `{blocked[0]}` cannot be cached" if blocked else
                             "its code or arguments cannot be fingerprinted: it always runs")
            running.add(name)
            continue
        if key(pipeline, name, fingerprint.digest) in store:
            reasons[name] = None
            continue
        before = last(store, pipeline, name)
        if before is not None:
            reason = why(fingerprint, before, running)
        elif name in ran:
            reason = "its last result was not kept (start it with cache=True to keep it)"
        else:
            reason = "never run"
        if name in plan.linked:
            reason += _items_known(items, name, stage)
        reasons[name] = reason
        running.add(name)
    return reasons


def _items_known(items: CachedItems, name: str, stage: Stage) -> str:
    """How many items of a mapped stage have their results stored, said after its reason."""
    args, kwargs = stage.arguments
    upstream = [a.name for a in (*args, *kwargs.values()) if isinstance(a, Stage)]
    if upstream:
        return f" (its items are known once `{upstream[0]}` has run)"
    count = len(args[0])
    keys = items.item_keys(name, kwargs, lambda i: tuple(a[i] for a in args), count)
    if keys is None:
        return ""
    known = sum(item in items.store for item in keys)
    return f" ({known} of {count} items known)"

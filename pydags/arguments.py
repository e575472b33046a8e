"""A stage's arguments: the stages inside them, at any depth, and the arguments made again
with those stages' results in their place.

A stage stands in an argument for its result until the result is known. pydags looks into
lists, tuples, sets, dicts (and their subclasses, namedtuples) and dataclasses, and passes
every other value as it is.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Iterator
from typing import Any

from pydags.errors import MapError


class Upstream:
    """What stands in an argument for a result not known yet: a stage (``Stage`` is one)."""

    name: str
    __slots__ = ()


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


def mismatch(lengths: dict[int, int]) -> str:
    """Mapped arguments' lengths, said as in an error: "argument 0 has 3 items, ..."."""
    return ", ".join(f"argument {p} has {n} item{'s' * (n != 1)}" for p, n in lengths.items())


def _parts(value: Any, where: str) -> list[Any] | None:
    """The parts of a container that pydags looks into (and can rebuild with results in
    place of stages), or None for a value it passes as it is."""
    if isinstance(value, (list, tuple, set, frozenset)):
        return list(value)
    if isinstance(value, dict):
        for key in value:
            if isinstance(key, Upstream):
                raise TypeError(f"{where} uses stage {key.name!r} as a dict key; a stage's "
                                "result can only stand where a value does")
        return list(value.values())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [getattr(value, f.name) for f in dataclasses.fields(value)]
    dtype = getattr(value, "dtype", None)
    if type(value).__module__ == "numpy" and getattr(dtype, "kind", "") == "O":
        for item in value.flat:
            if isinstance(item, Upstream):
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
                         if not isinstance(part, Upstream) and id(part) not in holding)
            continue
        stack.pop()
        on_path.discard(id(node))
        if any(isinstance(part, Upstream) or id(part) in holding for part in parts):
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


def container_sizes(args: tuple, kwargs: dict) -> tuple[int, ...]:
    """How many parts each list, dict or set argument has (-1 for other values): arguments
    whose containers grew or shrank are walked for stages again (``Stage.argument_stages``)."""
    return tuple(len(v) if isinstance(v, (list, dict, set)) else -1
                 for v in (*args, *kwargs.values()))


def stages_in(args: tuple, kwargs: dict, owner: str = "?") -> list[Any]:
    """The stages inside a stage's arguments: given directly, or inside lists, tuples, sets,
    dicts (and their subclasses, namedtuples) and dataclasses, at any depth. A stage where
    pydags could not put its result (a dict key, a numpy array) is an error naming it."""
    found: dict[int, Any] = {}
    for where, value in _described(args, kwargs, owner):
        if isinstance(value, Upstream):
            found.setdefault(id(value), value)
            continue
        holding = _holding(value, where)
        stack = [value] if id(value) in holding else []
        while stack:
            for part in _parts(stack.pop(), where) or ():
                if isinstance(part, Upstream):
                    found.setdefault(id(part), part)
                elif id(part) in holding:
                    stack.append(part)
    return list(found.values())


def resolve(value: Any, results: dict[str, Any], where: str = "an argument",
            names: dict[int, str] | None = None) -> Any:
    """``value`` with every stage inside it replaced by its result from ``results``;
    containers without a stage are passed as they are, not copied. ``names``: each stage's
    name by id, as a run knew them when it started (a stage renamed since keeps it)."""
    def result(item: Upstream) -> Any:
        return results[names[id(item)] if names is not None else item.name]

    if isinstance(value, Upstream):
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
                result(p) if isinstance(p, Upstream) else built.get(id(p), p)
                for p in parts], where)
            continue
        stack.append((node, True))
        stack.extend((p, False) for p in parts if id(p) in holding and id(p) not in built)
    return built[id(value)]


def resolve_arguments(item: Any, results: dict[str, Any],
                      names: dict[int, str] | None = None) -> tuple[tuple, dict]:
    """The stage's arguments with every stage inside replaced by its result (``names``:
    as for ``resolve``)."""
    args, kwargs = item.arguments

    def one(value: Any, label: str | int) -> Any:
        # most arguments are a stage or a plain value: resolved without a walk, or a label
        if isinstance(value, Upstream):
            return results[names[id(value)] if names is not None else value.name]
        if type(value) in _PLAIN:
            return value
        return resolve(value, results, f"stage {item.name!r}, argument {label!r}", names)

    return (tuple(one(v, i) for i, v in enumerate(args)),
            {k: one(v, k) for k, v in kwargs.items()})

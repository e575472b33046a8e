"""Which stages a pipeline holds: those added and every stage they depend on, checked for
names taken twice and for cycles."""

from __future__ import annotations

from pydags.errors import CycleError
from pydags.stage import Stage, check_name


def closure(given: list[Stage], members: dict[int, Stage], by_name: dict[str, Stage],
             pipeline: str) -> tuple[dict[int, Stage], dict[str, Stage]]:
    """``given`` and every stage they depend on that is not in ``members`` yet, by id and by
    name; two different stages of one name are an error."""
    found: dict[int, Stage] = {}
    names: dict[str, Stage] = {}
    stack = list(reversed(given))
    while stack:
        item = stack.pop()
        if id(item) in found or id(item) in members:
            continue
        found[id(item)] = item
        name = item.name
        check_name(name)
        other = names.get(name) or by_name.get(name)
        if other is not None and other is not item:
            raise ValueError(
                f"two different stages are named {name!r} in pipeline {pipeline!r}; give one "
                f"another name with .named(), e.g. {name}(...).named('{name}_2')")
        names[name] = item
        stack.extend(reversed(item.dependencies))
    return found, names


def check_acyclic(new: dict[int, Stage], old: dict[int, Stage]) -> None:
    """Raise ``CycleError`` if the ``new`` stages depend on each other in a circle (the
    ``old`` ones are known to be acyclic and depend on no new one)."""
    done: set[int] = set()
    for root in new.values():
        if id(root) in done:
            continue
        path, on_path, todo = [root], {id(root)}, [iter(root.dependencies)]
        while todo:
            for dep in todo[-1]:
                if id(dep) in old or id(dep) in done:
                    continue
                if id(dep) in on_path:
                    cycle = path[[id(s) for s in path].index(id(dep)):]
                    raise CycleError([s.name for s in reversed(cycle)])
                path.append(dep)
                on_path.add(id(dep))
                todo.append(iter(dep.dependencies))
                break
            else:
                finished = path.pop()
                on_path.discard(id(finished))
                done.add(id(finished))
                todo.pop()

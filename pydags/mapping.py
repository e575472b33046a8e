"""How the loop makes the jobs of a mapped stage's items, and finds the results of items
known before the run (resumed from the last run; for the cache, see ``pydags.cache``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pydags.executors.base import Executor
from pydags.executors.batch import ItemBatch
from pydags.items import Items
from pydags.status import SUCCEEDED


class MappedStage:
    """A mapped stage's function, the values it maps over, and its keyword arguments."""

    def __init__(self, stage: str, function: Callable[..., Any], sources: list[Sequence],
                 linked: list[str | None], kwargs: dict):
        self.stage, self.function, self.kwargs = stage, function, kwargs
        self.sources, self.linked = sources, linked  # linked: the map a source comes from

    def batch(self, items: range, executor: Executor) -> tuple[ItemBatch, tuple]:
        """The job's work for ``items``, and what it is called with: for each mapped
        argument, the items' values (or, for a map over a map, what the executor passes in
        their place)."""
        sources = tuple(
            executor.items(linked, items, source) if linked else source[items.start:items.stop]
            for linked, source in zip(self.linked, self.sources, strict=True))
        return ItemBatch(self.function, self.stage, items.start, self.kwargs), sources

    def arguments(self, item: int) -> tuple:
        """Item ``item``'s positional arguments."""
        return tuple(source[item] for source in self.sources)


class ResumedItems:
    """The items that succeeded in the last run of a map that did not (``resume=True``)."""

    def __init__(self, before: dict[str, Items]):
        # the values themselves: the last run lets go of its results once this one starts
        self.before = {name: (items.status, items.values) for name, items in before.items()}

    def find(self, name: str, mapped: MappedStage, count: int) -> dict[int, Any]:
        """The results of the items of ``name`` that succeeded last time, if its items are
        the same in number."""
        status, values = self.before.get(name, (b"", []))
        if len(status) != count or len(values) != count:
            return {}
        return {i: values[i] for i, code in enumerate(status) if code in SUCCEEDED}

    def keep(self, name: str, values: list[Any], done: Sequence[int]) -> None:
        """Nothing to keep: the run itself is what a later resume reads."""


def shown(args: tuple) -> str:
    """How an error names an item's arguments: their repr, if short."""
    try:
        text = repr(args[0]) if len(args) == 1 else repr(args)
    except Exception:
        return ""
    return text if len(text) <= 40 else ""

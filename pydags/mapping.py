"""The scheduler's hold on one mapped stage: its items' arguments, which items may go out
next, and how many go out together.

Batches are sized as joblib's auto-batching does: the first items go out alone; once
items have been timed, a batch holds about ``BATCH_SECONDS`` of work, and at most a
quarter of a worker's share of the items (as ``Pool.map``'s chunks), so every worker
stays busy to the end.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from pydags.executors.base import Executor
from pydags.executors.batch import BatchResult, ItemBatch
from pydags.items import CODE, Items
from pydags.status import StageStatus

SUCCEEDED = frozenset({CODE[StageStatus.DONE], CODE[StageStatus.CACHED]})

BATCH_SECONDS = 0.1  # work per batch once items are timed: a round trip is ~0.1 ms


class MappedStage:
    """Items of one mapped stage waiting to go out, and how to make a batch of them."""

    def __init__(self, stage: str, function: Callable[..., Any], sources: list[Sequence],
                 linked: list[str | None], kwargs: dict, *, alone: bool):
        self.stage, self.function, self.kwargs = stage, function, kwargs
        self.sources, self.linked = sources, linked  # linked: the map a source comes from
        self.alone = alone  # every item in a batch of its own (a timeout is per item)
        self.ready: deque[range] = deque()
        self.out = 0  # batches handed out whose outcome is not back
        self.count = len(sources[0]) if sources else 0
        self.seconds = 0.0  # measured work of the items timed so far
        self.timed = 0

    def add(self, items: Iterable[range]) -> None:
        """``items`` may go out."""
        for part in items:
            if part:
                self.ready.append(part)

    def take(self, parallelism: int) -> range:
        """The next batch: consecutive ready items, as many as ``batch_size`` says."""
        first = self.ready[0]
        batch = first[:self.batch_size(parallelism)]
        if len(batch) == len(first):
            self.ready.popleft()
        else:
            self.ready[0] = first[len(batch):]
        return batch

    def batch_size(self, parallelism: int) -> int:
        if self.alone or not self.timed:
            return 1
        per_item = self.seconds / self.timed
        wanted = BATCH_SECONDS / per_item if per_item > 0 else math.inf
        share = math.ceil(self.count / (4 * max(1, parallelism)))  # as Pool.map's chunks
        return max(1, int(min(wanted, share)))

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

    def timing(self, result: BatchResult) -> None:
        """Learn how long items take from a batch that ran."""
        self.seconds += result.end - result.starts[0]
        self.timed += len(result.starts)


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

    def keep(self, name: str, items: Items, parts: list[range]) -> None:
        """Nothing to keep: the run itself is what a later resume reads."""


def succeeded(batch: range, result: BatchResult) -> list[range]:
    """The items of ``batch`` that did not fail, as runs of consecutive ones."""
    if not result.errors:
        return [batch]
    return ranges(i for i in batch if i - batch.start not in result.errors)


def ranges(indices: Iterable[int]) -> list[range]:
    """Sorted item numbers as runs of consecutive ones: 1, 2, 3, 7 -> range(1, 4), range(7, 8)."""
    found: list[range] = []
    start = end = None
    for i in indices:
        if i == end:
            end += 1
            continue
        if start is not None:
            found.append(range(start, end))
        start, end = i, i + 1
    if start is not None:
        found.append(range(start, end))
    return found

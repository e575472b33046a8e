"""The scheduling core's hold on one mapped stage's items: their statuses and attempts,
which may go out next, and how many go out together.

Batches are sized as joblib's auto-batching does: the first items go out alone; once
items have been timed, a batch holds about ``BATCH_SECONDS`` of work, and at most a
quarter of a worker's share of the items (as ``Pool.map``'s chunks), so every worker
stays busy to the end.
"""

from __future__ import annotations

import math
from array import array
from collections import deque
from collections.abc import Callable, Iterable

from pydags.protocol import StageError
from pydags.status import CODE, SUCCEEDED, UNFINISHED, StageStatus, StatusArray

BATCH_SECONDS = 0.1  # work per batch once items are timed: a round trip is ~0.1 ms
PENDING = CODE[StageStatus.PENDING]
FAILED = CODE[StageStatus.FAILED]


class MapState(StatusArray):
    """Every item of one mapped stage, as the core sees them."""

    def __init__(self, count: int, *, alone: bool, label: Callable[[int], str]):
        super().__init__(count)
        self.alone = alone  # every item in a batch of its own (a timeout is per item)
        self.label = label  # how an error names an item
        self.attempt = array("H", [1]) * count
        self.errors: dict[int, StageError] = {}  # item -> why its last attempt failed
        self.ready: deque[range] = deque()
        self.out = 0  # batches handed out whose outcome is not back
        self.seconds = 0.0  # measured work of the items timed so far
        self.timed = 0

    def mark(self, items: Iterable[range], status: StageStatus) -> None:
        """Give every part of ``items`` a new status."""
        for part in items:
            self.set(part, status)

    def pending(self, item: int) -> bool:
        return self.status[item] == PENDING

    def succeeded(self, item: int) -> bool:
        return self.status[item] in SUCCEEDED

    def failed(self) -> list[int]:
        """The items FAILED for good, in order."""
        return sorted(i for i in self.errors if self.status[i] == FAILED)

    def error(self, stage: str, failed: list[int]) -> StageError:
        """The error of the map once items ``failed``: which ones, and their tracebacks."""
        def label(item: int) -> str:
            text = self.label(item)
            return f"item {item} ({text})" if text else f"item {item}"

        named = ", ".join(label(i) for i in failed[:10]) + (", ..." if len(failed) > 10 else "")
        first = self.errors[failed[0]]
        message = (f"{len(failed)} of {self.count} items of stage {stage!r} failed: {named}; "
                   f"first error: {first.message}")
        parts = [message]
        for item in failed[:10]:
            tried = f" (after {self.attempt[item]} attempts)" if self.attempt[item] > 1 else ""
            error = self.errors[item]
            parts.append(f"--- {label(item)}{tried} ---\n{error.traceback or error.message}")
        return StageError(first.kind, message, "\n\n".join(parts), first.exception)

    def unfinished(self) -> list[range]:
        return ranges(i for i, code in enumerate(self.status) if code in UNFINISHED)

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

    def timing(self, seconds: float, items: int) -> None:
        """Learn how long items take: a batch of ``items`` ran for ``seconds``."""
        self.seconds += seconds
        self.timed += items


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

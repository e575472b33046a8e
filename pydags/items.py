"""The items of a mapped stage in a run: status, times, worker, result and error per item.

A map may have 100,000 items, so they are kept in arrays, not objects: one status code,
start, end, attempt and worker number per item, written a batch (a ``range`` of items) at
a time with slice assignments.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from typing import Any

from pydags.executors.batch import BatchResult, place
from pydags.protocol import StageError
from pydags.status import STATUSES, StageStatus, StatusArray


@dataclass(slots=True)
class ItemAttempt:
    """An earlier, failed attempt of one item (the last attempt lives in the arrays)."""

    item: int
    number: int
    worker: str
    start: float
    end: float
    error: str


class Items(StatusArray):
    """Every item of one mapped stage in one run, as its recorder writes them."""

    def __init__(self, count: int, values: list[Any] | None = None):
        super().__init__(count)
        self.values: list[Any] = [None] * count if values is None else values
        self.start = array("d", bytes(8 * count))
        self.end = array("d", bytes(8 * count))
        self.attempt = array("H", [1]) * count
        self.worker = array("H", bytes(2 * count))  # index into ``workers``; 0: none yet
        self.workers: list[str] = [""]
        self._numbers: dict[str, int] = {"": 0}
        self.errors: dict[int, StageError] = {}
        self.earlier: list[ItemAttempt] = []

    def copy(self) -> Items:
        """A copy of the arrays as they are now (the results are not copied: the same)."""
        other = Items.__new__(Items)
        other.count, other.status, other.tally = self.count, self.status[:], self.tally[:]
        other.version, other.values = self.version, self.values
        other.start, other.end, other.attempt = self.start[:], self.end[:], self.attempt[:]
        other.worker, other.workers = self.worker[:], self.workers[:]
        other._numbers, other.errors = dict(self._numbers), dict(self.errors)
        other.earlier = self.earlier[:]
        return other

    def summary(self) -> str:
        """``25 items: 24 done · 1 failed``."""
        counts = " · ".join(f"{n} {status.value}" for status, n in self.counts().items())
        return f"{self.count} item{'s' * (self.count != 1)}" + (f": {counts}" if counts else "")

    def started(self, items: range, worker: str, when: float) -> None:
        """``items`` began on ``worker``."""
        self.set(items, StageStatus.RUNNING)
        self.start[items.start:items.stop] = array("d", [when]) * len(items)
        self.worker[items.start:items.stop] = array("H", [self._worker(worker)]) * len(items)

    def ended(self, items: range, result: BatchResult, worker: str) -> None:
        """``items`` ran on ``worker`` (each item ended when the next one started; the items
        of a run timed together, when the run did)."""
        a, b = items.start, items.stop
        place(self.values, a, result)
        self.start[a:b] = result.starts
        self.end[a:b - 1] = result.starts[1:]
        self.end[b - 1] = result.end
        for run in result.together:
            self.end[a + run.start:a + run.stop] = array("d", [self.end[a + run.stop - 1]]) \
                * len(run)
        self.worker[a:b] = array("H", [self._worker(worker)]) * len(items)

    def tried(self, items: range, start: float, end: float, worker: str) -> None:
        """``items`` went to ``worker`` together from ``start`` to ``end``, without a
        result of their own (the job failed as a whole)."""
        a, b = items.start, items.stop
        self.start[a:b] = array("d", [start]) * len(items)
        self.end[a:b] = array("d", [end]) * len(items)
        self.worker[a:b] = array("H", [self._worker(worker)]) * len(items)

    def failed_attempt(self, item: int, error: StageError) -> None:
        """The current attempt of ``item`` failed; keep it as an earlier one."""
        self.errors[item] = error
        self.earlier.append(ItemAttempt(item, self.attempt[item], self.workers[self.worker[item]],
                                        self.start[item], self.end[item], error.message))

    def spans(self, stage: str, now: float) -> list[tuple]:
        """Timeline bars: items that ran one after another on a worker with the same outcome
        make one bar ("clean[0..511]"), so 100,000 tiny items stay drawable; an item of its
        own is a bar of its own. Each: label, worker, start, end, status, attempt."""
        bars = [(f"{stage}[{a.item}]", a.worker, a.start, a.end, StageStatus.FAILED, a.number)
                for a in self.earlier if a.number != self.attempt[a.item]]
        start, end, status, worker = self.start, self.end, self.status, self.worker
        first = None
        for i in range(self.count + 1):
            if first is not None and (
                    i == self.count or status[i] != status[first] or worker[i] != worker[first]
                    or not (end[i - 1] == start[i]  # the next item of the same batch
                            or (start[i], end[i]) == (start[i - 1], end[i - 1]))):  # running
                label = f"{stage}[{first}]" if i - 1 == first else f"{stage}[{first}..{i - 1}]"
                bars.append((label, self.workers[worker[first]], start[first],
                             end[i - 1] or now, STATUSES[status[first]], self.attempt[first]))
                first = None
            if i < self.count and first is None and start[i] and worker[i]:
                first = i
        return bars

    def _worker(self, label: str) -> int:
        if label not in self._numbers:
            self._numbers[label] = len(self.workers)
            self.workers.append(label)
        return self._numbers[label]

    def rows(self, stage: str, queued: float | None, cache: str | None) -> list[dict[str, Any]]:
        """One plain dict per item attempt, earlier failed attempts included."""
        rows = []
        for a in self.earlier:
            if a.number != self.attempt[a.item]:  # the last attempt comes from the arrays
                rows.append(dict(stage=stage, attempt=a.number, worker=a.worker,
                                 status=StageStatus.FAILED.value, queued=queued, start=a.start,
                                 end=a.end, error=a.error, cache=cache, item=a.item))
        for i in range(self.count):
            status = STATUSES[self.status[i]]
            if not self.start[i]:
                continue  # not begun
            error = self.errors.get(i) if status is StageStatus.FAILED else None
            rows.append(dict(stage=stage, attempt=self.attempt[i],
                             worker=self.workers[self.worker[i]], status=status.value,
                             queued=queued, start=self.start[i], end=self.end[i] or None,
                             error=error.message if error else None, cache=cache, item=i))
        return rows

"""Stage statuses and the one colour palette every front end uses."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class StageStatus(str, Enum):
    """Where a stage is in a run."""

    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    DONE = "done"
    CACHED = "cached"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"

    __hash__ = str.__hash__  # as its value's, in C: statuses are looked up by the thousand

    @property
    def finished(self) -> bool:
        """True when the stage will not change status again in this run."""
        return self in FINISHED

    @property
    def succeeded(self) -> bool:
        """True when the stage has a result its dependents can use."""
        return self in (StageStatus.DONE, StageStatus.CACHED)

    def __str__(self) -> str:
        return self.value


FINISHED = frozenset(
    {
        StageStatus.DONE,
        StageStatus.CACHED,
        StageStatus.FAILED,
        StageStatus.SKIPPED,
        StageStatus.CANCELLED,
    }
)


STATUSES = list(StageStatus)
CODE = {status: code for code, status in enumerate(STATUSES)}  # one byte per item's status
UNFINISHED = frozenset(CODE[s] for s in StageStatus if not s.finished)
SUCCEEDED = frozenset({CODE[StageStatus.DONE], CODE[StageStatus.CACHED]})


class StatusArray:
    """The statuses of many items (a map may have 100,000), one byte each, with a tally per
    status kept as they change, a ``range`` of items at a time."""

    def __init__(self, count: int):
        self.count = count
        self.status = bytearray([CODE[StageStatus.PENDING]]) * count
        self.tally = [0] * len(STATUSES)  # items per status code
        self.tally[CODE[StageStatus.PENDING]] = count
        self.version = 0  # changes whenever an item does

    def set(self, items: range, status: StageStatus) -> None:
        """Give ``items`` a new status."""
        code = CODE[status]
        tally = self.tally
        if len(items) > 64:  # count the old ones in C, not one by one
            part = self.status[items.start:items.stop]
            for old, n in enumerate(tally):
                if n:
                    tally[old] -= part.count(old)
        else:
            for i in items:
                tally[self.status[i]] -= 1
        tally[code] += len(items)
        self.status[items.start:items.stop] = bytes([code]) * len(items)
        self.version += 1

    def counts(self) -> dict[StageStatus, int]:
        """How many items are in each status (those with any)."""
        return {STATUSES[code]: n for code, n in enumerate(self.tally) if n}

    @property
    def left(self) -> int:
        """Items not finished yet."""
        return sum(n for code, n in enumerate(self.tally) if code in UNFINISHED)

    def statuses(self) -> list[StageStatus]:
        """Each item's status."""
        return [STATUSES[code] for code in self.status]


@dataclass(frozen=True)
class Look:
    """How one status is drawn: fill, border, border style and hatch."""

    fill: str
    edge: str
    linestyle: str = "solid"
    hatch: str = ""
    rich: str = "white"


# Okabe-Ito based: green done, vermillion failed, orange skipped, sky blue running.
# FAILED, SKIPPED and CANCELLED also differ by border style and hatch, not colour only.
PALETTE: dict[StageStatus, Look] = {
    StageStatus.PENDING: Look("#ececec", "#8c8c8c", rich="grey62"),
    StageStatus.QUEUED: Look("#bdbdbd", "#5e5e5e", rich="grey50"),
    StageStatus.RUNNING: Look("#56b4e9", "#0072b2", rich="deep_sky_blue1"),
    StageStatus.RETRYING: Look("#f0e442", "#8a7f00", "dashed", rich="yellow"),
    StageStatus.DONE: Look("#009e73", "#00573f", rich="green"),
    StageStatus.CACHED: Look("#a6dcc8", "#009e73", "dotted", rich="aquamarine3"),
    StageStatus.FAILED: Look("#d55e00", "#6b2f00", hatch="x", rich="red"),
    StageStatus.SKIPPED: Look("#e69f00", "#7a5400", "dashed", "/", rich="dark_orange"),
    StageStatus.CANCELLED: Look("#cc79a7", "#6d3a57", "dotted", "..", rich="magenta"),
}

# Before a run: a stage that would run (its code or inputs changed, or it never ran) and one
# whose result is known. Stale is dashed and warm, fresh looks like cached.
STALE = Look("#f3e1b4", "#7a5400", "dashed", rich="dark_orange")
FRESH = PALETTE[StageStatus.CACHED]
LOOKS: dict[str, Look] = {**{s.value: look for s, look in PALETTE.items()},
                          "stale": STALE, "fresh": FRESH}  # every look, by the name drawn

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

    finished: bool  # True when the stage will not change status again in this run
    succeeded: bool  # True when the stage has a result its dependents can use

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
for _status in StageStatus:  # attributes, not properties: read a dozen times per stage
    _status.finished = _status in FINISHED
    _status.succeeded = _status in (StageStatus.DONE, StageStatus.CACHED)
del _status


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
    """How one status is drawn: fill, border, border style, the glyph in the box and the
    colour of the text on the fill."""

    fill: str
    edge: str
    linestyle: str = "solid"
    glyph: str = ""
    text: str = "#111111"
    rich: str = "white"


# Chosen so that every two statuses differ by at least 12 in CAM02-UCS under protan,
# deutan and tritan simulation as well as in full colour (tests/test_palette.py): failed
# the strongest, skipped muted. Each status also has a glyph and a border style of its own,
# so none is told by colour alone; text on each fill has a contrast of at least 4.5:1.
PALETTE: dict[StageStatus, Look] = {
    StageStatus.PENDING: Look("#f5f5f5", "#8c8c8c", glyph="○", rich="grey62"),
    StageStatus.QUEUED: Look("#a6a6a6", "#5e5e5e", "dashed", "…", rich="grey50"),
    StageStatus.RUNNING: Look("#56b4e9", "#0b5d91", glyph="▶", rich="deep_sky_blue1"),
    StageStatus.RETRYING: Look("#e69f00", "#7a5400", "dashed", "↻", rich="orange1"),
    StageStatus.DONE: Look("#009e73", "#00573f", glyph="✓", rich="green"),
    StageStatus.CACHED: Look("#9ad9c4", "#00795a", "dotted", "≡", rich="aquamarine3"),
    StageStatus.FAILED: Look("#a50f15", "#3d0508", glyph="✗", text="#ffffff", rich="red"),
    StageStatus.SKIPPED: Look("#c8b48f", "#6e5f45", "dashed", "↷", rich="tan"),
    StageStatus.CANCELLED: Look("#b86b9a", "#5c2f4a", "dotted", "⊘", rich="magenta"),
}

# Before a run: a stage that would run (its code or inputs changed, or it never ran) and one
# whose result is known. Stale is dashed and warm, fresh looks like cached.
STALE = Look("#ffe58a", "#7a5400", "dashed", "✎", rich="yellow")
FRESH = PALETTE[StageStatus.CACHED]
LOOKS: dict[str, Look] = {**{s.value: look for s, look in PALETTE.items()},
                          "stale": STALE, "fresh": FRESH}  # every look, by the name drawn

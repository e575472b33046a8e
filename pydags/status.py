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

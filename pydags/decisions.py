"""What the scheduling core (``pydags.core``) tells the loop (``pydags.scheduler``) to do,
in order. Tuples: a run makes them by the thousand."""

from __future__ import annotations

from typing import NamedTuple

from pydags.protocol import StageError
from pydags.status import StageStatus


class Hand(NamedTuple):
    """Make the job of stage ``stage`` (or of its ``items``) and hand it to the executor."""

    key: str
    stage: str
    attempt: int
    items: range | None = None
    keep: bool = False  # its result may stay where it is made (one stage at most takes it)
    after: str | None = None  # handed out behind this stage, to run right after it there


class Expand(NamedTuple):
    """Learn mapped stage ``stage``'s items from its arguments, then tell ``expanded``."""

    stage: str


class Status(NamedTuple):
    """Stage ``stage`` has a new status."""

    stage: str
    status: StageStatus
    attempt: int = 1
    worker: str | None = None
    error: StageError | None = None


class ItemStatus(NamedTuple):
    """Items ``items`` of mapped stage ``stage`` have a new status (``error``: why the
    attempt of each failed; RETRYING: each will have another)."""

    stage: str
    items: range
    status: StageStatus
    error: StageError | None = None


class Withdraw(NamedTuple):
    """Take back jobs handed out (cancelled, skipped, or behind a retried upstream)."""

    keys: frozenset[str]


Decision = Hand | Expand | Status | ItemStatus | Withdraw

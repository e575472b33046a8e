"""What the driver knows of each of its worker processes: the job it runs, and the jobs
given to it that wait behind that one (``pydags.executors.process``)."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from pydags.executors import kept
from pydags.executors.attempt import OUTPUT_LIMIT
from pydags.executors.batch import ItemBatch
from pydags.executors.link import Worker
from pydags.protocol import Job


@dataclass(eq=False)
class Sent:
    """A job given to a worker: its number there, its pickle and the shared buffers written
    for it, and how long it should take (from this run's jobs of its function; None: unknown)."""

    number: int
    job: Job
    payload: bytes
    files: list[str]
    kind: Any  # what its duration is learnt under: its function
    expected: float | None
    keeps: bool  # it takes results kept by a worker (its pickle names that worker's)
    after: Sent | None = None  # the job it is chained behind, whose result it takes
    sent: bool = False
    ok: bool = False  # it ended well


class Upcoming:
    """The result of a job not ended yet, for the job chained behind it on its worker."""

    __slots__ = ("sent",)

    def __init__(self, sent: Sent | None):
        self.sent = sent

    def __reduce__(self) -> tuple:
        assert self.sent is not None
        return kept.chained_result, (self.sent.number,)


@dataclass(eq=False)
class Slot:
    name: str  # "worker-N": a replaced worker takes the slot of the one it replaces
    worker: Worker
    running: Sent | None = None
    queued: deque[Sent] = field(default_factory=deque)  # given to it, not started, in order
    dropped: set[int] = field(default_factory=set)  # numbers of jobs it was told to skip
    started: float = 0.0  # when the worker began the running job
    deadline: float | None = None
    printed: list[str] = field(default_factory=list)  # by the running job so far

    @property
    def busy(self) -> bool:
        return self.running is not None or bool(self.queued)

    @property
    def ahead(self) -> float:
        """The expected seconds of the jobs a new one would wait for here (infinite behind
        a job that may be long: one of unknown duration)."""
        expected = [s.expected for s in (self.running, *self.queued) if s is not None]
        return math.inf if None in expected else sum(expected)

    def output(self) -> str:
        """What the job printed so far (kept when its worker is killed)."""
        return "".join(self.printed)[-OUTPUT_LIMIT:]

    @property
    def label(self) -> str:
        """How runs name this worker: its slot and process id."""
        return f"{self.name} (pid {self.worker.pid})"


def behind(queued: deque[Sent], ahead: set[Sent]) -> list[Sent]:
    """The jobs of ``queued`` chained behind those of ``ahead``, directly or not."""
    found = []
    for sent in queued:
        if sent.after in ahead:
            ahead.add(sent)
            found.append(sent)
    return found


def kind_of(function: Any) -> Any:
    """What a job's duration is learnt under: its stage function, or its map's."""
    if isinstance(function, ItemBatch):
        return function.stage
    return id(getattr(function, "function", function))

"""What the driver knows of each of its worker processes: the job it runs, and the jobs
given to it that wait behind that one (``pydags.executors.process``)."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pydags.executors import buffers, kept
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


class Waiting(deque):
    """The jobs given to a worker and not started yet, in order, with the sum of their
    expected seconds kept as they come and go: the driver asks it at every job it places."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds, self.unknown = 0.0, 0  # expected seconds; jobs of unknown duration

    def append(self, sent: Sent) -> None:
        super().append(sent)
        self._count(sent, 1)

    def unsent(self) -> list[Sent]:
        """The jobs not sent to the worker yet: the last ones."""
        first = len(self)
        while first and not self[first - 1].sent:
            first -= 1
        return [self[i] for i in range(first, len(self))]

    def popleft(self) -> Sent:
        sent = super().popleft()
        self._count(sent, -1)
        return sent

    def remove(self, sent: Sent) -> None:
        super().remove(sent)
        self._count(sent, -1)

    def _count(self, sent: Sent, sign: int) -> None:
        if sent.expected is None:
            self.unknown += sign
        elif self:
            self.seconds += sign * sent.expected
        else:
            self.seconds = 0.0  # no error left over from adding and taking away


@dataclass(eq=False)
class Slot:
    name: str  # "worker-N": a replaced worker takes the slot of the one it replaces
    worker: Worker
    running: Sent | None = None
    queued: Waiting = field(default_factory=Waiting)  # given to it, not started, in order
    dropped: set[int] = field(default_factory=set)  # numbers of jobs it was told to skip
    started: float = 0.0  # when the worker began the running job
    deadline: float | None = None
    printed: list[str] = field(default_factory=list)  # by the running job so far
    # ``label``, made once per worker, and the worker it names
    _label: str = field(default="", init=False, repr=False)
    _labelled: Worker | None = field(default=None, init=False, repr=False)

    @property
    def busy(self) -> bool:
        return self.running is not None or bool(self.queued)

    @property
    def ahead(self) -> float:
        """The expected seconds of the jobs a new one would wait for here (infinite behind
        a job that may be long: one of unknown duration)."""
        running = self.running
        if self.queued.unknown or (running is not None and running.expected is None):
            return math.inf
        return self.queued.seconds + (running.expected if running is not None else 0.0)

    def output(self) -> str:
        """What the job printed so far (kept when its worker is killed)."""
        return "".join(self.printed)[-OUTPUT_LIMIT:]

    @property
    def label(self) -> str:
        """How runs name this worker: its slot and process id (made once per worker: the
        driver tells it twice for every job)."""
        if self._labelled is not self.worker:
            self._labelled, self._label = self.worker, f"{self.name} (pid {self.worker.pid})"
        return self._label


def plainly(values: Iterable[Any]) -> bool:
    """Whether the C pickler sends ``values`` as cloudpickle would, several times faster:
    numbers, strings, None, and the result of the job a chained one runs behind."""
    return all(type(value) in buffers.PLAIN or type(value) is Upcoming for value in values)


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

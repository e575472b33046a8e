"""What the scheduler and the executors say to each other: plain values, no behaviour.

The scheduler hands an executor a ``Job``; the executor reports that it ``Started`` on a
worker, what it ``Printed`` meanwhile, and once, its ``Outcome``, with a ``StageError`` whose
``ErrorKind`` says whether trying again may help.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class ErrorKind(str, Enum):
    """Why an attempt failed."""

    EXCEPTION = "exception"  # the stage raised
    TIMEOUT = "timeout"  # it ran past its timeout
    CRASH = "crash"  # its worker died
    RESULT = "result"  # its result could not come back
    UNSENDABLE = "unsendable"  # it could not be prepared, sent or mapped
    LOST = "lost"  # a result it takes was lost with the worker that kept it

    @property
    def retryable(self) -> bool:
        """Whether another attempt may end otherwise (one that could not even be sent would
        fail the same way)."""
        return self is not ErrorKind.UNSENDABLE


@dataclass(frozen=True)
class StageError:
    """Why a stage attempt failed: its kind, the exception's type and message, and its
    traceback (made once, never changed: ``dataclasses.replace`` gives another)."""

    kind: ErrorKind
    message: str
    traceback: str = ""
    exception: BaseException | None = field(default=None, repr=False, compare=False)

    def __str__(self) -> str:
        return self.traceback or self.message

    def after(self, tries: list[tuple[int, str, str]]) -> StageError:
        """This error as the last of ``tries`` (number, worker, message each): with a
        one-line summary of every attempt, when there were several."""
        if len(tries) < 2:
            return self
        lines = [f"attempt {number} on {worker}: {message}" for number, worker, message in tries]
        summary = f"failed after {len(tries)} attempts:\n  " + "\n  ".join(lines)
        return StageError(self.kind, f"{self.message} (after {len(tries)} attempts)",
                          f"{summary}\n\nLast attempt:\n{self.traceback or self.message}",
                          self.exception)


@dataclass
class Job:
    """One attempt of one stage, as handed to an executor."""

    name: str
    function: Callable[..., Any]
    args: tuple
    kwargs: dict
    attempt: int = 1
    timeout: float | None = None
    inputs: dict[str, Any] = field(default_factory=dict)  # upstream stage -> what it gave
    keep: bool = False  # the result may stay where it is made (one stage at most takes it)
    after: str | None = None  # to run on the worker of this stage, right after it


@dataclass
class Started:
    """An executor's word that a job began on a worker."""

    name: str
    attempt: int
    worker: str
    time: float


@dataclass
class Printed:
    """What a running job printed since the last such news (not every executor streams)."""

    name: str
    attempt: int
    text: str


@dataclass
class Outcome:
    """How a job ended: a value, or an error."""

    name: str
    attempt: int
    ok: bool
    value: Any = None
    error: StageError | None = None
    output: str = ""
    worker: str = ""
    start: float = 0.0
    end: float = 0.0
    lost: tuple[str, ...] = ()  # it could not start: these stages' results were lost

"""The executor seam: jobs go in, outcomes come out; where they ran is the executor's business."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class StageError:
    """Why a stage attempt failed: the exception's type and message, and its traceback."""

    kind: str  # "exception", "timeout", "crash", "result", "send"
    message: str
    traceback: str = ""
    exception: BaseException | None = field(default=None, repr=False, compare=False)

    def __str__(self) -> str:
        return self.traceback or self.message


@dataclass
class Job:
    """One attempt of one stage, as handed to an executor."""

    name: str
    function: Callable[..., Any]
    args: tuple
    kwargs: dict
    attempt: int = 1
    timeout: float | None = None
    retries: int = 0
    retry_delay: float = 0.0
    upstream: tuple[str, ...] = ()  # for eager executors: every stage this one waits for


@dataclass
class Started:
    """An executor's word that a job began on a worker."""

    name: str
    attempt: int
    worker: str
    time: float


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


class Executor:
    """Runs jobs. The scheduler calls ``start``, ``submit``, ``poll``, ``cancel``, ``shutdown``.

    ``capacity`` is how many jobs may run at once. An ``eager`` executor takes every job
    at once, in topological order, with each upstream result as the ``handle`` it gave for
    that stage (a Dask future), and handles retries itself; the others get jobs whose
    arguments are already resolved.
    """

    capacity: int = 1
    eager: bool = False

    def start(self) -> None:
        """Get workers ready."""

    def submit(self, job: Job) -> None:
        """Start ``job``; its end comes back through ``poll``."""
        raise NotImplementedError

    def handle(self, name: str) -> Any:
        """An eager executor's reference to the future result of a submitted stage."""
        raise NotImplementedError

    def poll(self, timeout: float) -> list[Started | Outcome]:
        """Wait up to ``timeout`` seconds for news of submitted jobs."""
        raise NotImplementedError

    def cancel(self, names: set[str]) -> None:
        """Stop the named jobs if they are running; their outcome is not reported."""

    def shutdown(self) -> None:
        """Stop every worker; nothing may be left running."""

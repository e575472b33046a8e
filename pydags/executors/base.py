"""The executor seam: jobs go in, news of them comes out; where they ran is the executor's business.

The scheduler hands a job to ``submit()`` and hears back, through ``poll()``, that it
``Started`` on a worker, what it ``Printed`` meanwhile, and, once, its ``Outcome``.
Readiness, retries, skipping and every status change stay in the scheduler, the same for
every backend.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydags.results import Results

THIS_PROCESS = f"main (pid {os.getpid()})"  # how runs name the driver when it runs a stage
loading_stages = False  # True while a worker imports the modules of the stage it was sent


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
    inputs: dict[str, Any] = field(default_factory=dict)  # upstream stage -> what it gave
    keep: bool = False  # the result may stay where it is made (one stage at most takes it)


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


class Executor:
    """Runs jobs. The scheduler calls ``start``, ``submit``, ``poll``, ``cancel``, ``shutdown``.

    ``capacity`` is how many jobs it takes at once (``parallelism``: how many of those
    really run at once). An executor that ``pipelines`` takes a
    job before its upstream stages have ended: the job's arguments then hold, for each
    upstream stage, whatever ``upstream()`` gave (a Dask future), and the executor runs it
    once those exist. A job whose upstream attempt fails is never reported: the scheduler
    withdraws it with ``cancel`` and submits it again, or skips it.
    """

    capacity: int = 1
    pipelines: bool = False

    @property
    def parallelism(self) -> int:
        """How many jobs really run at once (what batches of mapped items are sized by)."""
        return self.capacity

    def start(self) -> None:
        """Get workers ready."""

    def submit(self, job: Job) -> None:
        """Start ``job``; its news comes back through ``poll``."""
        raise NotImplementedError

    def upstream(self, name: str, results: Results) -> Any:
        """What a job receives in place of the upstream stage ``name``: its result."""
        return results[name]

    def items(self, name: str, items: range, values: list[Any]) -> Any:
        """What a batch of a map over mapped stage ``name`` receives in place of the results
        of its ``items`` (``values``: every item's result so far, as the run has them)."""
        return values[items.start:items.stop]

    def share(self, value: Any) -> Any:
        """``value`` made ready to go to many jobs (the keyword arguments of a map's items):
        by default, as it is."""
        return value

    def poll(self, timeout: float) -> list[Started | Printed | Outcome]:
        """Wait up to ``timeout`` seconds for news of submitted jobs."""
        raise NotImplementedError

    def cancel(self, names: set[str]) -> None:
        """Stop the named jobs if they are running; their outcome is not reported."""

    def shutdown(self) -> None:
        """Stop every worker; nothing may be left running."""

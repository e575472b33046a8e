"""The executor seam: jobs go in, news of them comes out; where they ran is the executor's business.

The scheduler hands a job to ``submit()`` and hears back, through ``poll()``, that it
``Started`` on a worker, what it ``Printed`` meanwhile, and, once, its ``Outcome``.
Readiness, retries, skipping and every status change stay in the scheduler, the same for
every backend.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from pydags.protocol import Job, Outcome, Printed, Started

if TYPE_CHECKING:
    from pydags.results import Results

THIS_PROCESS = f"main (pid {os.getpid()})"  # how runs name the driver when it runs a stage
loading_stages = False  # True while a worker imports the modules of the stage it was sent


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
    chains: bool = False  # takes a stage with those after it that wait for it alone

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

    def upcoming(self, name: str) -> Any:
        """What a job handed out behind stage ``name`` (an executor that ``chains``)
        receives in place of its result, which is not made yet."""
        raise NotImplementedError

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

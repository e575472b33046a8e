"""Run stages one at a time in the calling process (``num_cores=1``).

A stage with a timeout still goes to a worker process, because only a process can be
stopped from outside; everything else runs here, printing as it goes. A submitted stage
runs at the next ``poll``, so the scheduler reports it RUNNING before it starts.
"""

from __future__ import annotations

import time

from pydags.executors.attempt import execute
from pydags.executors.base import THIS_PROCESS, Executor
from pydags.executors.process import ProcessExecutor
from pydags.protocol import Job, Outcome, Started


class InlineExecutor(Executor):
    """Runs each job in this process, one at a time."""

    capacity = 1

    def __init__(self) -> None:
        self._news: list[Started | Outcome] = []
        self._next: Job | None = None
        self._timed: ProcessExecutor | None = None

    def submit(self, job: Job) -> None:
        if job.timeout is not None:
            if self._timed is None:
                self._timed = ProcessExecutor(1)
                self._timed.start()
            self._timed.submit(job)
            return
        self._next = job
        self._news.append(Started(job.name, job.attempt, THIS_PROCESS, time.time()))

    def poll(self, timeout: float) -> list[Started | Outcome]:
        if self._news:
            news, self._news = self._news, []
            return news
        if self._next is not None:
            job, self._next = self._next, None
            outcome = execute(job, echo=True)
            outcome.worker = THIS_PROCESS
            return [outcome]
        return self._timed.poll(timeout) if self._timed is not None else []

    def cancel(self, names: set[str]) -> None:
        if self._next is not None and self._next.name in names:
            self._next = None
        if self._timed is not None:
            self._timed.cancel(names)

    def shutdown(self) -> None:
        if self._timed is not None:
            self._timed.shutdown()
            self._timed = None

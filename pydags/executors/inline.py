"""Run stages one at a time in the calling process (``num_cores=1``).

A stage with a timeout still goes to a worker process, because only a process can be
stopped from outside; everything else runs here, printing as it goes.
"""

from __future__ import annotations

import os

from pydags.executors.attempt import execute
from pydags.executors.base import Executor, Job, Outcome, Started
from pydags.executors.process import ProcessExecutor

IN_PROCESS = f"main (pid {os.getpid()})"  # how runs name this process as a worker


class InlineExecutor(Executor):
    """Runs each job in this process as it is submitted."""

    capacity = 1

    def __init__(self, echo: bool = True) -> None:
        self.echo = echo
        self._news: list[Started | Outcome] = []
        self._timed: ProcessExecutor | None = None

    def submit(self, job: Job) -> None:
        if job.timeout is not None:
            if self._timed is None:
                self._timed = ProcessExecutor(1)
                self._timed.start()
            self._timed.submit(job)
            return
        outcome = execute(job, echo=self.echo)
        outcome.worker = IN_PROCESS
        self._news += [Started(job.name, job.attempt, IN_PROCESS, outcome.start), outcome]

    def poll(self, timeout: float) -> list[Started | Outcome]:
        if self._news:
            news, self._news = self._news, []
            return news
        return self._timed.poll(timeout) if self._timed is not None else []

    def cancel(self, names: set[str]) -> None:
        if self._timed is not None:
            self._timed.cancel(names)

    def shutdown(self) -> None:
        if self._timed is not None:
            self._timed.shutdown()
            self._timed = None

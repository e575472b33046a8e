"""What a run knows, as plain values: a stage's record and attempts, the events its
subscribers hear, and the options it was started with. The recorder writes them; every
front end reads them."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from pydags.protocol import StageError
from pydags.status import StageStatus


class Event(NamedTuple):
    """A stage's status changed (or, with ``item``, that of one item of a mapped stage):
    what a run tells its subscribers."""

    stage: str
    status: StageStatus
    time: float
    attempt: int = 1
    worker: str | None = None
    error: StageError | None = None
    item: int | None = None


@dataclass(slots=True)
class Attempt:
    """One try of a stage on one worker."""

    number: int
    worker: str
    start: float
    end: float | None = None
    status: StageStatus = StageStatus.RUNNING
    error: str | None = None


@dataclass(slots=True)
class StageRecord:
    """Everything a run knows about one stage."""

    name: str
    status: StageStatus = StageStatus.PENDING
    queued: float | None = None
    start: float | None = None
    end: float | None = None
    worker: str | None = None
    output: str = ""
    error: StageError | None = None
    attempts: list[Attempt] = field(default_factory=list)
    cache: str | None = None  # with cache=True: found, or why it runs again

    @property
    def duration(self) -> float | None:
        """Seconds from the start of the last attempt to its end."""
        if self.start is None or self.end is None:
            return None
        return self.end - self.start

    def copy(self) -> StageRecord:
        """A copy that later changes to this record leave alone."""
        return StageRecord(self.name, self.status, self.queued, self.start, self.end,
                           self.worker, self.output, self.error,
                           [Attempt(a.number, a.worker, a.start, a.end, a.status, a.error)
                            for a in self.attempts], self.cache)


class Reading:
    """What a run and a snapshot of one both tell, read off their ``stage_records``."""

    stage_records: dict[str, StageRecord]
    started: float | None
    ended: float | None

    def _now(self) -> float:
        return time.time()

    @property
    def status(self) -> dict[str, StageStatus]:
        """Stage name to its status."""
        return {name: rec.status for name, rec in self.stage_records.items()}

    @property
    def errors(self) -> dict[str, str]:
        """Failed stage name to the formatted traceback (or message) of its error."""
        return {n: str(r.error) for n, r in self.stage_records.items() if r.error is not None}

    @property
    def outputs(self) -> dict[str, str]:
        """Stage name to what it printed (stdout and stderr)."""
        return {n: r.output for n, r in self.stage_records.items() if r.output}

    @property
    def durations(self) -> dict[str, float]:
        """Stage name to seconds of its last attempt, for stages that ran."""
        return {n: d for n, r in self.stage_records.items() if (d := r.duration) is not None}

    @property
    def ok(self) -> bool:
        """True when every stage is DONE or CACHED."""
        return all(rec.status.succeeded for rec in self.stage_records.values())

    @property
    def wall_time(self) -> float | None:
        """Seconds from the start of the run to its end (or to now while it runs)."""
        if self.started is None:
            return None
        return (self.ended or self._now()) - self.started

    def counts(self) -> dict[StageStatus, int]:
        """How many stages are in each status."""
        counts = dict.fromkeys(StageStatus, 0)
        for rec in self.stage_records.values():
            counts[rec.status] += 1
        return counts

    def failed(self) -> list[str]:
        """Names of the FAILED stages, in the order they failed."""
        failed = [r for r in self.stage_records.values() if r.status is StageStatus.FAILED]
        return [r.name for r in sorted(failed, key=lambda r: r.end or 0.0)]

    @property
    def summary(self) -> str:
        """``4/6 done · 1 failed · 2 cached``."""
        return summary(self.counts(), len(self.stage_records))


@dataclass(frozen=True)
class RunOptions:
    """How a run was started: the options of ``Pipeline.start`` that ``Run.again`` reuses."""

    num_cores: int = 1
    executor: Any = None
    raise_on_error: bool = True
    fail_fast: bool = False
    resume: bool | str = False
    rerun: tuple[str, ...] = ()
    cache: bool = False
    persist: bool = True


def summary(counts: dict[Any, int], total: int) -> str:
    """How far a run is, in the words every front end uses: ``4/6 done · 1 failed · 2
    cached`` (done counts the cached stages too; then every other status with stages in
    it, pending left out). ``counts`` is keyed by status or by its name."""
    by = {StageStatus(status): n for status, n in counts.items() if n}
    done = by.get(StageStatus.DONE, 0) + by.get(StageStatus.CACHED, 0)
    parts = [f"{done}/{total} done"]
    parts += [f"{n} {status.value}" for status, n in by.items()
              if status not in (StageStatus.DONE, StageStatus.CACHED, StageStatus.PENDING)]
    if by.get(StageStatus.CACHED):
        parts.append(f"{by[StageStatus.CACHED]} cached")
    return " · ".join(parts)

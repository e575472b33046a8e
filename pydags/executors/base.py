"""The executor seam: jobs go in, outcomes come out; where they ran is the executor's business."""

from __future__ import annotations

import contextlib
import io
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

OUTPUT_LIMIT = 1 << 20  # characters of stdout/stderr kept per stage attempt


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


class _Capture(io.TextIOBase):
    """A text stream that keeps the last ``OUTPUT_LIMIT`` characters and may echo them."""

    def __init__(self, echo: Any = None) -> None:
        self.parts: list[str] = []
        self.size = 0
        self.dropped = 0
        self.echo = echo

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if self.echo is not None:
            self.echo.write(text)
        self.parts.append(text)
        self.size += len(text)
        if self.size > 2 * OUTPUT_LIMIT:
            joined = "".join(self.parts)
            self.dropped += len(joined) - OUTPUT_LIMIT
            self.parts, self.size = [joined[-OUTPUT_LIMIT:]], OUTPUT_LIMIT
        return len(text)

    def flush(self) -> None:
        if self.echo is not None:
            self.echo.flush()

    def text(self) -> str:
        joined = "".join(self.parts)
        if len(joined) > OUTPUT_LIMIT:
            self.dropped += len(joined) - OUTPUT_LIMIT
            joined = joined[-OUTPUT_LIMIT:]
        if self.dropped:
            return f"[... {self.dropped} earlier characters of output dropped ...]\n{joined}"
        return joined


_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _is_ours(tb: Any) -> bool:
    """A frame of pydags' own machinery (its examples are user code)."""
    path = os.path.abspath(tb.tb_frame.f_code.co_filename)
    return path.startswith(_PACKAGE + os.sep) and os.sep + "examples" + os.sep not in path


def execute(job: Job, echo: bool = False) -> Outcome:
    """Run ``job`` here and now, capturing its output; never raises but KeyboardInterrupt."""
    capture = _Capture(sys.stdout if echo else None)
    start = time.time()
    try:
        with contextlib.redirect_stdout(capture), contextlib.redirect_stderr(capture):
            value = job.function(*job.args, **job.kwargs)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # a stage's own failure, SystemExit included
        error = error_from_exception(exc)
        return Outcome(job.name, job.attempt, False, error=error, output=capture.text(),
                       start=start, end=time.time())
    return Outcome(job.name, job.attempt, True, value=value, output=capture.text(),
                   start=start, end=time.time())


def error_from_exception(exc: BaseException) -> StageError:
    """A ``StageError`` with the traceback of the stage's own frames only."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None and _is_ours(tb):
        tb = tb.tb_next  # drop the frames of pydags that called the stage
    text = "".join(traceback.format_exception(type(exc), exc, tb))
    if isinstance(exc, SystemExit):
        message = f"the stage called sys.exit({exc.code!r})"
    else:
        message = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return StageError("exception", message, text, exc.with_traceback(tb))

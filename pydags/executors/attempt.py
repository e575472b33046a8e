"""Running one stage attempt in this process: output captured per thread, errors trimmed."""

from __future__ import annotations

import asyncio
import inspect
import io
import os
import sys
import threading
import time
import traceback
from typing import Any

from pydags.protocol import ErrorKind, Job, Outcome, StageError

OUTPUT_LIMIT = 1 << 20  # characters of stdout/stderr kept per stage attempt


class _Capture(io.TextIOBase):
    """A text stream that keeps the last ``OUTPUT_LIMIT`` characters and may echo them."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.size = 0
        self.dropped = 0
        self.echo: Any = None  # a stream that also gets everything written

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


def execute(job: Job, echo: bool = False, interrupt_fails: bool = False,
            stream: Any = None) -> Outcome:
    """Run ``job`` here and now, capturing its output (``echo``: also to this process's
    stdout; ``stream``: also to that stream); never raises but KeyboardInterrupt (unless
    ``interrupt_fails``: then that fails the stage like any exception)."""
    capture = _Capture()
    capture.echo = stream
    start = time.time()
    try:
        with _captured(capture, echo):
            value = job.function(*job.args, **job.kwargs)
            if inspect.iscoroutine(value):  # an ``async def`` stage
                value = awaited(value, capture)
    except BaseException as exc:  # a stage's own failure, SystemExit included
        if isinstance(exc, KeyboardInterrupt) and not interrupt_fails:
            raise  # the user's Ctrl-C; in a worker (which ignores SIGINT), the stage's own
        error = error_from_exception(exc)
        return Outcome(job.name, job.attempt, False, error=error, output=capture.text(),
                       start=start, end=time.time())
    return Outcome(job.name, job.attempt, True, value=value, output=capture.text(),
                   start=start, end=time.time())


def awaited(coroutine: Any, capture: _Capture | None = None) -> Any:
    """Run an ``async def`` stage's coroutine to its end, also where this thread already runs
    an event loop (a notebook's): then on a thread of its own, printing to the same capture
    (by default, this thread's)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    if capture is None and "stdout" in _ROUTERS:
        capture = getattr(_ROUTERS["stdout"].local, "capture", None)
    box: dict[str, Any] = {}

    def run() -> None:
        for router in _ROUTERS.values():
            router.local.capture = capture
        try:
            box["value"] = asyncio.run(coroutine)
        except BaseException as exc:  # raised again in the stage's own thread
            box["error"] = exc

    thread = threading.Thread(target=run, name="pydags-async-stage")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def error_from_exception(exc: BaseException, kind: ErrorKind = ErrorKind.EXCEPTION,
                         context: str = "") -> StageError:
    """A ``StageError`` with the traceback of the stage's own frames only (``context``:
    what failed, said before the exception's message and above the traceback)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None and _is_ours(tb):
        tb = tb.tb_next  # drop the frames of pydags that called the stage
    text = "".join(traceback.format_exception(type(exc), exc, tb))
    if isinstance(exc, SystemExit):
        message = f"the stage called sys.exit({exc.code!r})"
    else:
        message = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    if context:
        message = f"{context}: {message}"
        text = f"{message}\n\n{text}"
    return StageError(kind, message, text, exc.with_traceback(tb))


class _Router(io.TextIOBase):
    """Stands in for sys.stdout or sys.stderr while stages run in this process: what a
    thread running a stage writes goes to that stage's capture, the rest goes on as before."""

    def __init__(self, original: Any):
        self.original = original
        self.local = threading.local()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        target = getattr(self.local, "capture", None)
        return (target if target is not None else self.original).write(text)

    def flush(self) -> None:
        target = getattr(self.local, "capture", None)
        (target if target is not None else self.original).flush()

    def __getattr__(self, name: str) -> Any:  # fileno, encoding, isatty, ...
        return getattr(self.original, name)


_ROUTERS: dict[str, _Router] = {}
_ACTIVE = [0]  # how many captures are on; the routers leave when the last one ends
_LOCK = threading.Lock()


def capture_for_good() -> None:
    """Keep this process's stdout and stderr routed per thread from now on (a worker: every
    job captures its output, and routing them once is cheaper than once per job)."""
    with _LOCK:
        _route()
        _ACTIVE[0] += 1


def _route() -> None:
    """Put the routers in place of sys.stdout and sys.stderr if they are not (under _LOCK)."""
    if not _ACTIVE[0]:
        for stream in ("stdout", "stderr"):
            _ROUTERS[stream] = _Router(getattr(sys, stream))
            setattr(sys, stream, _ROUTERS[stream])


class _captured:
    """Send this thread's stdout and stderr to ``capture`` (other threads are unaffected);
    with ``echo``, also to where stdout went before (an enclosing stage's capture, when a
    stage runs a pipeline of its own). A class, not a generator: a worker enters it for
    every stage, and a generator-based context manager costs about a third more."""

    __slots__ = ("capture", "echo", "enclosing", "routers")

    def __init__(self, capture: _Capture, echo: bool):
        self.capture, self.echo = capture, echo

    def __enter__(self) -> None:
        with _LOCK:
            _route()
            _ACTIVE[0] += 1
            self.routers = routers = tuple(_ROUTERS.values())
        self.enclosing = [getattr(router.local, "capture", None) for router in routers]
        if self.echo:
            self.capture.echo = self.enclosing[0] or routers[0].original
        for router in routers:
            router.local.capture = self.capture

    def __exit__(self, *_: object) -> None:
        for router, before in zip(self.routers, self.enclosing, strict=True):
            router.local.capture = before
        with _LOCK:
            _ACTIVE[0] -= 1
            if not _ACTIVE[0]:
                for stream, router in _ROUTERS.items():
                    if getattr(sys, stream) is router:  # unless someone replaced it since
                        setattr(sys, stream, router.original)
                _ROUTERS.clear()

"""The errors pydags raises, each carrying what the user needs to fix the problem."""

from __future__ import annotations

import types
from typing import Any


class PipelineError(Exception):
    """Stages failed. ``.run`` is the run result; ``.failed`` names the failed stages."""

    def __init__(self, run: Any, failed: list[str]):  # a ``pydags.run.Run``: errors come first
        self.run = run
        self.failed = failed
        first = run.stage_records[failed[0]].error
        reason = first.message if first is not None else "failed"
        skipped = sum(1 for s in run.status.values() if s.value == "skipped")
        more = f" (and {len(failed) - 1} more: {', '.join(failed[1:])})" if len(failed) > 1 else ""
        super().__init__(
            f"stage {failed[0]!r} failed: {reason}{more}; {skipped} stage(s) downstream "
            f"were skipped. See .run.errors for the tracebacks"
        )

    def _render_traceback_(self) -> list[str]:
        """How IPython shows this error: through the caller's frames only. (IPython hides
        frames marked ``__tracebackhide__`` but the one that raised: pydags' own.)"""
        from IPython import get_ipython

        shell = get_ipython()
        kept, tb = [], self.__traceback__
        while tb is not None:
            if not tb.tb_frame.f_locals.get("__tracebackhide__"):
                kept.append(tb)
            tb = tb.tb_next
        shown = None
        for entry in reversed(kept):
            shown = types.TracebackType(shown, entry.tb_frame, entry.tb_lasti, entry.tb_lineno)
        return shell.InteractiveTB.structured_traceback(type(self), self, shown)


class DAGException(Exception):
    """A problem with the graph of a pipeline (the published pydags 0.1's base class)."""


class StageException(Exception):
    """A problem with a stage (the published pydags 0.1's base class)."""


class InvalidStageTypeException(TypeError, StageException):
    """Something that is not a stage was given where a stage must be."""


class CycleError(ValueError, DAGException):
    """The stages depend on each other in a circle. ``.cycle`` lists them in order."""

    def __init__(self, cycle: list[str]):
        self.cycle = cycle
        path = " -> ".join([*cycle, cycle[0]])
        super().__init__(f"the stages form a cycle: {path}; remove one of these dependencies")


DAGVerificationException = CycleError  # the name the published pydags 0.1 gave it


class MapError(TypeError, ValueError):
    """What a mapped stage was given cannot be mapped over (not a list of items, lists of
    different lengths)."""


class LostResult(RuntimeError):
    """A result kept in a worker process that died before anyone read it."""

"""A batch of a mapped stage's items, run as one job: one round trip for many small items.

Each item's failure is its own: the batch goes on with the next item and reports, per
item, its result or its error, and when it started.
"""

from __future__ import annotations

import inspect
import pickle
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cloudpickle

from pydags.executors.attempt import awaited, error_from_exception
from pydags.executors.base import StageError


@dataclass
class BatchResult:
    """What a batch gives back: a value per item (None where it failed), the errors by
    position in the batch, when each item started, and when the last one ended."""

    values: list[Any]
    errors: dict[int, StageError]
    starts: array
    end: float


@dataclass
class ItemBatch:
    """Items ``first`` to ``first + len(arguments) - 1`` of a mapped stage."""

    function: Callable[..., Any]
    first: int
    arguments: list[Any]  # each item's argument, or its tuple of arguments if ``zipped``
    kwargs: dict = field(default_factory=dict)
    zipped: bool = False

    def __call__(self) -> BatchResult:
        function = getattr(self.function, "function", self.function)  # a StageCall's own
        kwargs, zipped = self.kwargs, self.zipped
        count = len(self.arguments)
        values: list[Any] = [None] * count
        errors: dict[int, StageError] = {}
        starts = array("d", bytes(8 * count))
        clock = time.time
        awaits = inspect.iscoroutinefunction(function)
        for position, argument in enumerate(self.arguments):
            starts[position] = clock()
            try:
                if zipped:
                    value = function(*argument, **kwargs)
                else:
                    value = function(argument, **kwargs) if kwargs else function(argument)
                values[position] = awaited(value) if awaits else value
            except Exception as exc:  # this item's failure; the batch goes on
                errors[position] = _portable(error_from_exception(exc))
        return BatchResult(values, errors, starts, clock())


def _portable(error: StageError) -> StageError:
    """The error without its exception object if that would not load in the driver."""
    try:
        pickle.loads(cloudpickle.dumps(error.exception))
    except Exception:
        error.exception = None  # its type, message and traceback text remain
    return error

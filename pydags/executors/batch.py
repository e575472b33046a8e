"""A batch of a mapped stage's items, run as one job: one round trip for many small items.

Each item's failure is its own: the batch goes on with the next item and reports, per
item, its result or its error, and when it started.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import itertools
import pickle
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cloudpickle

from pydags.executors.attempt import awaited, error_from_exception
from pydags.protocol import ErrorKind, StageError

RUN = 128  # items timed together at most: when items turn slow, so many are timed as one
SHORT_SECONDS = 0.001  # a run of items shorter than this doubles (up to RUN), a longer one
# is followed by items timed alone


@dataclass
class BatchResult:
    """What a batch gives back: a value per item (None where it failed), the errors by
    position in the batch, when each item started, and when the last one ended. Items in a
    run of ``together`` (positions) were timed as one: each started when the run did."""

    values: list[Any]
    errors: dict[int, StageError]
    starts: array
    end: float
    together: list[range] = field(default_factory=list)


@dataclass
class ItemBatch:
    """Items ``first`` onwards of mapped stage ``stage``; called with one list per mapped
    argument (the items' values of that argument), zipped here."""

    function: Callable[..., Any]
    stage: str
    first: int
    kwargs: dict = field(default_factory=dict)

    def __call__(self, *sources: list) -> BatchResult:
        """Run the items in runs, each as one ``map`` (its loop in C, as ``Pool.map``'s):
        a run doubles while it takes under ``SHORT_SECONDS`` and goes back to one item
        when it does not, so items of a millisecond or more are timed one by one."""
        function = getattr(self.function, "function", self.function)  # a StageCall's own
        call = functools.partial(function, **self.kwargs) if self.kwargs else function
        count = len(sources[0])
        results = map(call, sources[0]) if len(sources) == 1 else \
            itertools.starmap(call, zip(*sources, strict=True))
        awaits = inspect.iscoroutinefunction(function)
        values: list[Any] = []
        errors: dict[int, StageError] = {}
        starts = array("d", bytes(8 * count))
        together: list[range] = []
        clock, size = time.time, 1
        while len(values) < count:
            first, begin = len(values), clock()
            try:
                if awaits:
                    values.append(awaited(next(results)))
                else:
                    values.extend(itertools.islice(results, size))
                    if len(values) - first < size and len(values) < count:
                        # map() ends where the function raises StopIteration: that item
                        raise StopIteration(f"item {self.first + len(values)} raised "
                                            "StopIteration")
            except (Exception, SystemExit) as exc:  # this item's failure; the batch goes on
                errors[len(values)] = portable(error_from_exception(exc))
                values.append(None)
            ran = len(values) - first
            if not ran:
                break  # the arguments ran out (their lengths were checked: never)
            starts[first:first + ran] = array("d", [begin]) * ran
            if ran > 1:
                together.append(range(first, first + ran))
            size = min(2 * size, RUN) if clock() - begin < SHORT_SECONDS else 1
        return BatchResult(values, errors, starts, clock(), together)


def sendable(result: BatchResult, stage: str, first: int) -> BatchResult:
    """``result`` with each item value that cannot be pickled made that item's failure, so
    that one bad item does not fail its whole batch (called once pickling the batch failed)."""
    for position, value in enumerate(result.values):
        if position in result.errors:
            continue
        try:
            cloudpickle.dumps(value)
        except Exception as exc:
            kind = type(value)
            result.values[position] = None
            result.errors[position] = StageError(
                ErrorKind.RESULT, f"item {first + position} of stage {stage!r} returned a "
                f"{kind.__module__}.{kind.__qualname__} that cannot be sent back from the "
                f"worker ({type(exc).__name__}: {exc}); return plain data, or write it to a "
                "store and return its key")
    return result


def place(values: list[Any], first: int, result: BatchResult) -> None:
    """Put a batch's results (not its failed items') in ``values`` at ``first`` on."""
    if not result.errors:
        values[first:first + len(result.values)] = result.values
        return
    for position, value in enumerate(result.values):
        if position not in result.errors:
            values[first + position] = value


def portable(error: StageError) -> StageError:
    """The error without its exception object if that would not load in the driver."""
    try:  # an exception may pickle yet fail to load (an __init__ with other arguments)
        pickle.loads(cloudpickle.dumps(error.exception))
    except Exception:
        return dataclasses.replace(error, exception=None)  # its text says what happened
    return error

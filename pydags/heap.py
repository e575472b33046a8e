"""The driver's garbage collector while runs go on.

A run makes a few long-lived objects per stage (records, attempts, events). Thousands of
them set off CPython's full collection, which walks every object of the process: with
pandas and matplotlib imported, about 95,000, and a walk of 40 ms. In a run of 2,000
trivial stages that is 20 us a stage, beside about 50 us of the driver's other work on
each. While a run goes on, the objects that existed before it are frozen (``gc.freeze``),
so that a collection walks only those made since; cyclic garbage made during the run is
still collected. They thaw when the last run going on ends; in a long run, every
``REFREEZE_SECONDS`` too, for a collection of what became garbage meanwhile (a figure
closed in the notebook beside a run in the background). A process that froze objects of its
own (before forking, say) is left as it is.
"""

from __future__ import annotations

import contextlib
import gc
import threading
import time
from collections.abc import Iterator

REFREEZE_SECONDS = 60.0
_lock = threading.Lock()
_runs = 0  # runs going on that froze the heap, or found it frozen by this module
_frozen_at = 0.0  # time.monotonic() when it was last frozen


@contextlib.contextmanager
def older_objects_frozen() -> Iterator[None]:
    """While it is entered, the garbage collector leaves alone the objects made before."""
    global _runs
    with _lock:
        if _runs == 0 and gc.get_freeze_count():
            owned = False  # frozen by the process itself: not this module's to thaw
        else:
            owned = True
            _runs += 1
            if _runs == 1:
                _freeze()
    try:
        yield
    finally:
        if owned:
            with _lock:
                _runs -= 1
                if _runs == 0:
                    gc.unfreeze()


def refresh() -> None:
    """Called as a run goes on: once the objects have been frozen ``REFREEZE_SECONDS``,
    collect what became garbage among them, and freeze them again."""
    if not _runs or time.monotonic() - _frozen_at < REFREEZE_SECONDS:
        return
    with _lock:
        if _runs:
            gc.unfreeze()
            gc.collect()
            _freeze()


def _freeze() -> None:
    global _frozen_at
    gc.freeze()
    _frozen_at = time.monotonic()

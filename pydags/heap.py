"""The driver's garbage collector while runs go on.

A run makes a few long-lived objects per stage (records, attempts, events). Thousands of
them set off CPython's full collection, which walks every object of the process: with
pandas and matplotlib imported, about 95,000, and a walk of 40 ms. In a run of 2,000 trivial
stages that is 20 us a stage, beside about 50 us of the driver's other work on each. While a run
goes on, the objects that existed before it are frozen (``gc.freeze``), so that a collection
walks only those made since; cyclic garbage made during the run is still collected. They
thaw when the last run going on ends. A process that froze objects of its own (before
forking, say) is left as it is.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

_lock = threading.Lock()
_runs = 0  # runs going on that froze the heap, or found it frozen by this module


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
                gc.freeze()
    try:
        yield
    finally:
        if owned:
            with _lock:
                _runs -= 1
                if _runs == 0:
                    gc.unfreeze()

"""Which executor runs a pipeline's stages: this process (one core), warm worker
processes (more), or a Dask cluster (a client or a scheduler's address)."""

from __future__ import annotations

import os
import warnings
from typing import Any

from pydags.executors.base import Executor
from pydags.plan import Plan


def choose(executor: Any, cores: int, plan: Plan) -> Executor:
    """The executor for a run of ``plan``: ``executor`` as given to ``start()``, else
    ``cores`` worker processes (but no more than there are stages to run at once)."""
    if executor is not None:
        if isinstance(executor, Executor):
            return executor
        if cores != 1:
            raise ValueError("num_cores cannot be combined with a Dask executor: the "
                             "cluster's workers and threads set how many stages run at "
                             "once; leave num_cores out")
        from pydags.executors.dask import DaskExecutor

        return DaskExecutor(executor)
    if cores == 1:
        from pydags.executors.inline import InlineExecutor

        return InlineExecutor()
    from pydags.executors.process import ProcessExecutor

    workers = cores if plan.linked else min(cores, len(plan.stages))
    _warn_beyond_cores(workers)
    return ProcessExecutor(workers)


_WARNED: set[str] = set()  # warnings given once per process


def _warn_beyond_cores(workers: int) -> None:
    """Say once that more worker processes than cores only compete for them."""
    have = os.cpu_count() or 1
    if workers > have and "cores" not in _WARNED:
        _WARNED.add("cores")
        warnings.warn(f"num_cores={workers} starts {workers} worker processes on a machine "
                      f"with {have} cores: they take turns on the cores, each with an "
                      f"interpreter of its own; num_cores=-1 uses every core", stacklevel=4)


def check_cores(num_cores: Any) -> int:
    """``num_cores`` as a number of worker processes (-1: every core; None: one)."""
    if num_cores is None:  # the published pydags 0.1's default: one stage at a time
        return 1
    if isinstance(num_cores, bool) or not isinstance(num_cores, int):
        raise TypeError(f"num_cores must be a whole number, not {num_cores!r}")
    if num_cores == -1:
        return os.cpu_count() or 1
    if num_cores < 1:
        raise ValueError(f"num_cores must be 1 or more (or -1 for every core), not {num_cores}")
    return num_cores

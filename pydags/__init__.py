"""pydags: express DAGs of Python stages and run them in parallel, made for Jupyter."""

from __future__ import annotations

from typing import Any

__version__ = "0.2.0"

# Light modules are imported now: this also makes ``pydags.stage`` the decorator,
# not the submodule of the same name.
from pydags.stage import Stage, stage
from pydags.status import StageStatus

_EXPORTS = {
    "Pipeline": "pydags.pipeline",
    "history": "pydags.past_runs",
    "load_run": "pydags.past_runs",
    "watch": "pydags.past_runs",
    "PipelineError": "pydags.errors",
    "CycleError": "pydags.errors",
    "LostResult": "pydags.errors",
    "DAGVerificationException": "pydags.errors",
    "InvalidStageTypeException": "pydags.errors",
    "DAGException": "pydags.errors",
    "StageException": "pydags.errors",
    "Run": "pydags.run",
    "Event": "pydags.records",
    "RedisStage": "pydags.stage",
    "DiskCacheStage": "pydags.stage",
    "DiskStore": "pydags.store",
    "RedisStore": "pydags.store",
    "DiskCacheStore": "pydags.store",
}

__all__ = [*_EXPORTS, "Stage", "StageStatus", "load_ipython_extension", "shutdown", "stage",
           "unload_ipython_extension"]


def shutdown() -> None:
    """Stop this process's idle worker processes now (they otherwise wait for the next run,
    and exit after ``PYDAGS_IDLE_SECONDS`` idle or when Python exits)."""
    import sys

    pool = sys.modules.get("pydags.executors.pool")
    if pool is not None:
        pool.POOL.close()


def __getattr__(name: str) -> Any:
    # Imported on first use, so a worker process starts without matplotlib or networkx.
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'pydags' has no attribute {name!r}")


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext pydags``: register the ``%%pydags`` and ``%pydags`` magics."""
    from pydags.views.magics import PydagsMagics

    ipython.register_magics(PydagsMagics)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext pydags``."""
    ipython.magics_manager.registry.pop("PydagsMagics", None)

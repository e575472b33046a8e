"""Shared test helpers: a check that a test leaves no worker process behind."""

from __future__ import annotations

import os
import time

import matplotlib
import psutil
import pytest

matplotlib.use("Agg")


_older: set[int] = set()  # children that existed before the current test (e.g. a Dask cluster)


def live_children() -> list[psutil.Process]:
    """Running children of this process started during the current test (zombies excluded)."""
    alive = []
    for child in psutil.Process(os.getpid()).children(recursive=True):
        try:
            if child.pid not in _older and child.status() != psutil.STATUS_ZOMBIE:
                alive.append(child)
        except psutil.NoSuchProcess:
            pass
    return alive


def wait_for_no_children(seconds: float = 2.0) -> list[psutil.Process]:
    """Wait up to ``seconds`` for every child to end; returns those still alive."""
    end = time.time() + seconds
    while (alive := live_children()) and time.time() < end:
        time.sleep(0.05)
    return alive


@pytest.fixture
def no_orphans():
    """Fail the test if it leaves a child process running."""
    _older.clear()
    _older.update(p.pid for p in live_children())
    yield
    alive = wait_for_no_children()
    assert not alive, f"child processes left behind: {[p.cmdline() for p in alive]}"

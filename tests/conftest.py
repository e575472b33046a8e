"""Shared test helpers: free ports, random DAGs, and a check that a test leaves no process.

On Linux the test process becomes a *child subreaper*: a process that escapes a killed
worker (a double fork, ``start_new_session=True``) is re-parented to the test process
instead of PID 1, so the orphan check below still sees it.
"""

from __future__ import annotations

import ctypes
import os
import random
import socket
import sys
import time

import matplotlib
import psutil
import pytest

import pydags

matplotlib.use("Agg")

PR_SET_CHILD_SUBREAPER = 36
if sys.platform == "linux":
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)

_older: set[int] = set()  # processes that existed before the current test (a Dask cluster)


def live_children() -> list[psutil.Process]:
    """Running descendants of this process started during the current test (no zombies),
    escaped ones included."""
    alive = []
    for child in psutil.Process(os.getpid()).children(recursive=True):
        try:
            if child.pid not in _older and child.status() != psutil.STATUS_ZOMBIE:
                alive.append(child)
        except psutil.NoSuchProcess:
            pass
    return alive


def wait_for_no_children(seconds: float = 10.0) -> list[psutil.Process]:
    """Wait up to ``seconds`` for every descendant to end; returns those still alive."""
    end = time.time() + seconds
    while (alive := live_children()) and time.time() < end:
        time.sleep(0.05)
    return alive


def assert_no_orphans(seconds: float = 10.0) -> None:
    """Fail if a process started during the test is still running after ``seconds``; idle
    warm workers are stopped first, as ``pydags.shutdown()`` does."""
    pydags.shutdown()
    alive = wait_for_no_children(seconds)
    described = []
    for process in alive:
        try:
            described.append(process.cmdline())
        except psutil.NoSuchProcess:
            continue
    assert not described, f"processes left behind: {described}"


@pytest.fixture
def no_orphans():
    """Fail the test if it leaves a process running, even one that escaped its parent."""
    _older.clear()
    _older.update(p.pid for p in live_children())
    yield
    assert_no_orphans()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def random_dag(n: int, seed: int, fan_in: int = 3) -> list[list[int]]:
    """For each of ``n`` nodes, the earlier nodes it depends on (at most ``fan_in``)."""
    rng = random.Random(seed)
    return [rng.sample(range(i), min(i, rng.randint(0, fan_in))) for i in range(n)]



def _private_store() -> None:
    """Results cached by this session go to a folder of its own, not the user's store, and
    its runs to a journal of its own: a
    cell magic run again reuses what an earlier run stored, and earlier sessions must not
    count. Notebook kernels and subprocesses started by the tests inherit it, the tutorials'
    under nbval too (``tests`` is collected first)."""
    import atexit
    import shutil
    import tempfile

    folder = tempfile.mkdtemp(prefix="pydags-test-store-")
    os.environ["PYDAGS_STORE"] = folder
    os.environ["PYDAGS_HOME"] = home = tempfile.mkdtemp(prefix="pydags-test-home-")  # journal
    atexit.register(shutil.rmtree, folder, True)
    atexit.register(shutil.rmtree, home, True)


_private_store()

"""What a worker's stages start, found and stopped with it, also when it left the worker's
process group (``setsid``, a double fork: a daemon).

On Linux a worker makes itself the *child subreaper* of everything below it, so such a
process is re-parented to the worker, not to PID 1, and stays findable as its descendant.
Elsewhere only the worker's process group is stopped. A process group cannot be used alone
(a daemon leaves it), and Python's standard library has no call for a process's children:
they are read from ``/proc``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys

PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> None:
    """Make this process the parent of its orphaned descendants (Linux only)."""
    if sys.platform == "linux":
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def descendants(pid: int) -> set[int]:
    """The processes below ``pid`` (none where there is no ``/proc``)."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return set()
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as file:
                stat = file.read()
        except OSError:
            continue  # it ended meanwhile
        parent = int(stat[stat.rindex(b")") + 2:].split()[1])  # the name may hold spaces
        children.setdefault(parent, []).append(int(entry))
    found: set[int] = set()
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), ()):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def stop_below(pid: int) -> None:
    """Kill every process below ``pid``: each is stopped first, so none forks while they are
    found, then all are killed."""
    stopped: set[int] = set()
    while found := descendants(pid) - stopped:
        for child in found:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(child, signal.SIGSTOP)
        stopped |= found
    for child in stopped:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(child, signal.SIGKILL)


def reap() -> None:
    """Collect the exit status of this process's ended children (a subreaper inherits
    orphans that end, which would otherwise stay as zombies)."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass

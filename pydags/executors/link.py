"""The driver's link to one warm worker process: the process, its pipes, and the results
it keeps for the driver."""

from __future__ import annotations

import subprocess
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection


@dataclass(eq=False)
class Worker:
    """One worker process, the two pipes to it, and the results it keeps (``kept``)."""

    process: subprocess.Popen
    inbox: Connection  # the driver writes jobs
    outbox: Connection  # the driver reads news
    requests: Connection  # the driver fetches and drops kept results (a socket)
    idle_since: float = field(default_factory=time.time)
    busy: bool = False  # has a job
    kept: weakref.WeakValueDictionary = field(default_factory=weakref.WeakValueDictionary)
    drops: deque[int] = field(default_factory=deque)  # kept results it may drop once idle
    lock: threading.Lock = field(default_factory=threading.Lock)  # one request at a time
    context: tuple | None = None  # the driver's context it was last sent (``worker.context``)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

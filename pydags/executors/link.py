"""The driver's link to one warm worker process: the process, its pipes, and the results
it keeps for the driver."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

READ_SIZE = 1 << 16


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
    unread: bytearray = field(default_factory=bytearray)  # of ``outbox``: a message's start
    unsent: bytearray = field(default_factory=bytearray)  # for ``inbox``, not written yet

    def send(self, message: bytes) -> None:
        """Send ``message`` to the inbox (``Connection`` framing) as far as the pipe takes
        it now; ``write`` the rest once it is writable. The driver never waits on a worker,
        which may be waiting for the driver to read what it sends (OSError: it is gone)."""
        size = len(message)
        self.unsent += struct.pack("!i", size) if size < 0x7FFFFFFF else \
            struct.pack("!iQ", -1, size)
        self.unsent += message
        self.write()

    def write(self) -> None:
        """Write to the inbox what it takes now of what waits to be sent."""
        if not self.unsent:
            return
        try:
            written = os.write(self.inbox.fileno(), self.unsent)  # non-blocking (pool.spawn)
        except BlockingIOError:
            return
        del self.unsent[:written]

    def messages(self) -> list[bytes]:
        """The messages on ``outbox`` (``Connection`` framing) read at once: one read for
        many short ones, where ``recv_bytes`` makes two for each, and a message begun is
        read to its end. Call it when the outbox is readable; EOFError once it is closed."""
        data = os.read(self.outbox.fileno(), READ_SIZE)
        if not data:
            raise EOFError
        unread = self.unread
        unread += data
        messages, at = [], 0
        while len(unread) - at >= 4:
            (size,), head = struct.unpack_from("!i", unread, at), 4
            if size == -1:  # a message of 2 GiB or more
                if len(unread) - at < 12:
                    break
                (size,), head = struct.unpack_from("!Q", unread, at + 4), 12
            missing = at + head + size - len(unread)
            while missing > 0:  # the rest is on its way: as recv_bytes, wait for it
                data = os.read(self.outbox.fileno(), max(missing, READ_SIZE))
                if not data:
                    raise EOFError
                unread += data
                missing -= len(data)
            messages.append(bytes(unread[at + head:at + head + size]))
            at += head + size
        del unread[:at]
        return messages

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None


def describe_exit(code: int) -> str:
    """A worker process's exit code, in words."""
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"

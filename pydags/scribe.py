"""The scribe: writes every run of this process into the journal (``pydags.journal``) as
it goes, on one thread of its own, in batched transactions.

A run's recorder tells the scribe which stages changed (a set insert on the scheduler's
thread, nothing more); a few times a second the scribe copies those records under the
recorder's lock and writes them in one transaction, with each map's item counts and a
heartbeat. Whatever goes wrong with the journal is warned about once and never reaches
the run.
"""

from __future__ import annotations

import atexit
import copy
import json
import os
import re
import sqlite3
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import copy_context
from pathlib import Path
from typing import Any

import cloudpickle

from pydags import journal
from pydags.items import Items
from pydags.recorder import Recorder
from pydags.records import StageRecord
from pydags.status import STATUSES, SUCCEEDED, StageStatus

BATCH_SECONDS = 0.2  # changes are gathered this long into one transaction
BUSY_SECONDS = 1.0  # while runs are busy, they are written this often
LINGER_SECONDS = 10.0  # the writer waits this long for the next run before it ends
FAILED_SHOWN = 1000  # failed items of a map kept with their error
_DONE = bytes.maketrans(bytes(range(len(STATUSES))),
                        bytes(49 if code in SUCCEEDED else 48 for code in range(len(STATUSES))))
_RUNS = re.compile(rb"1+")


def new_id() -> str:
    """A short id that sorts by time: ``261202-143328-7f3a``."""
    return time.strftime("%y%m%d-%H%M%S-") + uuid.uuid4().hex[:4]


def enabled() -> bool:
    """Whether runs are journaled (``PYDAGS_JOURNAL=0`` turns it off)."""
    return os.environ.get("PYDAGS_JOURNAL", "1").lower() not in ("0", "false", "no", "off")


class Entry:
    """One run being journaled: what changed since the scribe last wrote it."""

    def __init__(self, run_id: str, recorder: Recorder, *, origin: str, options: dict,
                 store: Any, prints: dict[str, Any], mapped: set[str]):
        self.id, self.recorder, self.prints = run_id, recorder, prints
        self.file = journal.path()  # where it is journaled, whatever PYDAGS_HOME says later
        self.origin, self.options, self.mapped = origin, options, mapped
        try:
            self.store = cloudpickle.dumps(store) if store is not None else None
        except Exception:
            self.store = None
        self.dirty: set[str] = set()  # stages to write again (all of them once it ends)
        self.finished = False
        # what the journal holds, changed only once a transaction commits (one that rolls
        # back leaves the entry to write all of it again)
        self.written = False
        self.version = 0
        self.map_versions: dict[str, int] = {}
        self._taken: set[str] = set()  # stages written in a transaction not yet committed
        self._pending: tuple[int, dict[str, int]] = (0, {})
        self._run = recorder.run  # the handle (weakly), told of a new id
        # what changes, the scribe takes from the recorder: no call per change
        recorder.subscribe(on_start=lambda _: _SCRIBE.add(self), on_finish=self._finished)

    @property
    def heard(self) -> float:
        """When a stage's status last changed."""
        return self.recorder.heard

    def _finished(self, _: Any) -> None:
        # what the journal is still to be told, copied: the run's results are let go with it
        recorder = self.recorder
        final = Recorder(recorder.pipeline, [], recorder.dependencies)
        with recorder.lock:  # the records change no more: only the maps' copies hold results
            final.records = dict(recorder.records)
            final.items = {n: copy.copy(i) for n, i in recorder.items.items()}
        for items in final.items.values():
            items.values = []  # its arrays shared: they change no more either
        final.started, final.ended = recorder.started, recorder.ended
        final.interrupted, final.heard = recorder.interrupted, recorder.heard
        self.dirty |= set(final.records)  # first: whoever sees it finished writes them
        self.recorder, self.finished = final, True
        _SCRIBE.wake()

    @property
    def clean(self) -> bool:
        """Whether the journal holds all the entry knows."""
        return not self.dirty and not self._taken

    def write(self, db: sqlite3.Connection) -> None:
        """Write what changed since the last commit, in the caller's transaction; the
        entry counts it written once ``committed`` is called."""
        recorder = self.recorder
        finished = self.finished  # read first: the records below are then all final
        dirty, self.dirty = self.dirty, set()
        self._taken |= dirty
        self._write(db, recorder, finished)

    def committed(self) -> None:
        """The transaction ``write`` wrote in has committed."""
        self.written, self._taken = True, set()
        self.version, maps = self._pending
        self.map_versions.update(maps)

    def _write(self, db: sqlite3.Connection, recorder: Recorder, finished: bool) -> None:
        now = time.time()
        if not self.written:
            graph = {"dependencies": {n: sorted(recorder.dependencies.get(n, ()))  # in order
                                      for n in recorder.records},
                     "mapped": sorted(self.mapped)}
            # another run made in the same second may have drawn the same id: this one takes
            # another (the transaction holds the journal: none can take it meanwhile)
            while db.execute("SELECT 1 FROM runs WHERE id = ?", (self.id,)).fetchone():
                self.id = new_id()
                if (run := self._run()) is not None:
                    run.id = self.id
            db.execute("INSERT INTO runs (id, pipeline, origin, options, store, host, pid, "
                       "started, heartbeat, state, stages, graph, version) VALUES "
                       "(?, ?, ?, ?, ?, ?, ?, ?, ?, 'running', ?, ?, 0)",
                       (self.id, recorder.pipeline, self.origin, json.dumps(self.options),
                        self.store, journal.HOST, os.getpid(), recorder.started or now, now,
                        len(recorder.records), json.dumps(graph)))
        version = self.version + 1
        with recorder.lock:
            self._taken |= recorder.changed
            recorder.changed = set()
            records = [recorder.records[name].copy() for name in self._taken]
            maps = [(name, items.version, items.count, bytes(items.status), items.counts(),
                     sorted(items.errors.items())[:FAILED_SHOWN])
                    for name, items in recorder.items.items()
                    if self.map_versions.get(name) != items.version]
        db.executemany(
            'INSERT OR REPLACE INTO stages (run, stage, status, queued, start, "end", worker, '
            "error_kind, message, traceback, output, cache, fingerprint, version) VALUES "
            "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [self._stage(record, version) for record in records])
        db.executemany(
            'INSERT OR REPLACE INTO attempts (run, stage, number, worker, start, "end", '
            "status, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(self.id, r.name, a.number, a.worker, a.start, a.end, a.status.value, a.error)
             for r in records for a in r.attempts])
        db.executemany(
            "INSERT OR REPLACE INTO maps (run, stage, count, counts, failed, done, version) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(self.id, name, count, json.dumps({s.value: n for s, n in counts.items()}),
              json.dumps([[i, e.message] for i, e in errors]), json.dumps(done_ranges(status)),
              version) for name, _, count, status, counts, errors in maps])
        self._pending = (version, {name: map_version for name, map_version, *_ in maps})
        if finished:
            final = {n: r.status for n, r in recorder.records.items()}
            counts = {s.value: n for s in StageStatus
                      if (n := sum(1 for v in final.values() if v is s))}
            db.execute("UPDATE runs SET ended = ?, state = ?, counts = ?, heartbeat = ?, "
                       "version = ? WHERE id = ?",
                       (recorder.ended or now, final_state(final, recorder.interrupted),
                        json.dumps(counts), now, version, self.id))
        else:
            counts = {s.value: n for s, n in _counts(recorder).items() if n}
            db.execute("UPDATE runs SET heartbeat = ?, counts = ?, version = ? WHERE id = ?",
                       (now, json.dumps(counts), version, self.id))

    def _stage(self, record: StageRecord, version: int) -> tuple:
        error = record.error
        return (self.id, record.name, record.status.value, record.queued, record.start,
                record.end, record.worker, error.kind.value if error else None,
                error.message if error else None, error.traceback if error else None,
                record.output, record.cache, _digest(self.prints.get(record.name)), version)

    def fingerprinted(self) -> None:
        """The stages' fingerprints were made after the run began: write them too."""
        self.dirty |= set(self.prints)
        _SCRIBE.add(self)


def _digest(fingerprint: Any) -> str | None:
    return None if fingerprint is None else fingerprint.digest


def _counts(recorder: Recorder) -> dict[StageStatus, int]:
    counts = dict.fromkeys(StageStatus, 0)
    for record in list(recorder.records.values()):
        counts[record.status] += 1
    return counts


def final_state(statuses: dict[str, StageStatus], interrupted: BaseException | None) -> str:
    """How a run ended: ok, failed or cancelled."""
    if any(s is StageStatus.FAILED for s in statuses.values()):
        return "failed"
    if interrupted is not None or any(s is StageStatus.CANCELLED for s in statuses.values()):
        return "cancelled"
    return "ok" if all(s.succeeded for s in statuses.values()) else "failed"


def done_ranges(status: bytes) -> list[list[int]]:
    """The items that succeeded, as ``[first, stop]`` pairs."""
    return [[m.start(), m.end()] for m in _RUNS.finditer(status.translate(_DONE))]


def item_status(count: int, ranges: list[list[int]], failed: list[list[Any]]) -> Items:
    """A map's items as the journal tells them: done, failed, the rest pending."""
    items = Items(count)
    for first, stop in ranges:
        items.set(range(first, stop), StageStatus.DONE)
    for i, _ in failed:
        items.set(range(i, i + 1), StageStatus.FAILED)
    return items


class Scribe:
    """The one thread of a process that writes its runs into the journal."""

    def __init__(self) -> None:
        self.entries: list[Entry] = []
        self._wake = threading.Event()
        self._passes = threading.Condition()
        self._asked = 0  # flushes asked for, and passes done
        self._done = 0
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._broken = False
        self._exit_hooked = False

    def add(self, entry: Entry) -> None:
        """Journal this run from now on."""
        if self._broken:
            return
        with self._lock:
            if entry not in self.entries:
                self.entries.append(entry)
            if self._thread is None:
                if not self._exit_hooked:
                    atexit.register(self.flush)
                    self._exit_hooked = True
                self._thread = threading.Thread(target=copy_context().run, args=(self._serve,),
                                                name="pydags-journal", daemon=True)
                self._thread.start()
        self.wake()

    def wake(self) -> None:
        if not self._wake.is_set():
            self._wake.set()

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until what the runs of this process did so far is written."""
        thread = self._thread
        if thread is None or not thread.is_alive() or thread is threading.current_thread():
            return
        with self._passes:
            self._asked += 1
            wanted = self._asked
            self._wake.set()
            self._passes.wait_for(lambda: self._done >= wanted or not thread.is_alive(),
                                  timeout)

    def _serve(self) -> None:
        dbs: dict[Path, sqlite3.Connection] = {}
        try:
            idle_since = written = time.monotonic()
            while True:  # a pass every BATCH_SECONDS while runs go on, at once when asked
                woken = self._wake.wait(BATCH_SECONDS if self.entries
                                        else journal.HEARTBEAT_SECONDS)
                # while stages change in quick succession, Python work here would hold the
                # scheduler back at each switch of the interpreter's lock: write in a pause
                # of the runs, or once a second
                while (self._asked <= self._done and self._busy()
                       and time.monotonic() - written < BUSY_SECONDS):
                    time.sleep(BATCH_SECONDS / 4)
                self._wake.clear()
                with self._passes:
                    asked = self._asked
                self._pass(dbs)
                written = time.monotonic()
                with self._passes:
                    self._done = asked
                    self._passes.notify_all()
                with self._lock:  # decided under the lock add() takes: no entry is missed
                    if self.entries or woken:
                        idle_since = time.monotonic()
                    elif time.monotonic() - idle_since > LINGER_SECONDS:
                        self._thread = None  # the next run starts another
                        return
        except Exception as exc:  # journaling is never why a run fails
            with self._lock:
                self._broken, self._thread = True, None
                self.entries.clear()
            warnings.warn(f"pydags: runs are not journaled: {exc}", stacklevel=1)
        finally:
            for db in dbs.values():
                db.close()
            with self._passes:
                self._done = self._asked
                self._passes.notify_all()

    def _busy(self) -> bool:
        now = time.time()
        return any(not e.finished and now - e.heard < BATCH_SECONDS / 4
                   for e in list(self.entries))

    def _pass(self, dbs: dict[Path, sqlite3.Connection]) -> None:
        entries = list(self.entries)
        for file in {entry.file for entry in entries}:
            if file not in dbs:
                dbs[file] = journal.connect(file)
            self._write(dbs[file], [entry for entry in entries if entry.file == file])
        with self._lock:
            self.entries = [e for e in self.entries
                            if not (e.finished and e in entries and e.clean)]

    def _write(self, db: sqlite3.Connection, entries: list[Entry]) -> None:
        for attempt in range(20):
            try:
                with journal.transaction(db):
                    for entry in entries:
                        entry.write(db)
                for entry in entries:
                    entry.committed()
                return
            except sqlite3.OperationalError as exc:
                if ("locked" not in str(exc) and "busy" not in str(exc)) or attempt == 19:
                    raise journal.JournalError(
                        f"the run journal {journal.path()} cannot be written ({exc}): free "
                        "some space or set PYDAGS_HOME to a writable folder") from None
                time.sleep(0.1)  # another process held it past the busy timeout
            except sqlite3.DatabaseError as exc:
                raise journal.JournalError(
                    f"the run journal {journal.path()} cannot be written ({exc}): move it "
                    "aside, or set PYDAGS_HOME to another folder") from None


_SCRIBE = Scribe()


def journal_run(recorder: Recorder, *, origin: str, options: dict, store: Any,
                prints: dict[str, Any], mapped: set[str]) -> Entry | None:
    """Journal the run ``recorder`` records, from its start (``prints``: the stages'
    fingerprints, maybe filled later); None when journaling is off or the journal cannot
    be opened (said once, in a warning)."""
    if not enabled() or _SCRIBE._broken:
        return None
    return Entry(new_id(), recorder, origin=origin, options=options, store=store,
                 prints=prints, mapped=mapped)  # written from the run's start on


def flush() -> None:
    """Wait until this process's runs are written into the journal as they are now."""
    _SCRIBE.flush()


@contextmanager
def reading() -> Iterator[sqlite3.Connection]:
    """A connection to read the journal with, after this process's writes so far."""
    flush()
    db = journal.connect()
    try:
        yield db
    finally:
        db.close()


def origin() -> str:
    """Where the pipeline being made is: the notebook (as Jupyter names it), else the file."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__", "").startswith("pydags"):
        frame = frame.f_back
    file = frame.f_code.co_filename if frame is not None else ""
    if os.environ.get("JPY_SESSION_NAME") and (file.startswith("<") or "ipykernel" in file):
        return os.environ["JPY_SESSION_NAME"]
    return file


"""The journal: every run of every pipeline, in an SQLite database that outlives the kernel.

``$PYDAGS_HOME/runs.db`` (default ``~/.cache/pydags/runs.db``; folder 0700, file 0600) holds
per run its id, pipeline, where it was defined, options, host and pid, times, heartbeat and
final counts; per stage its status, times, worker, error, output, cache reason and
fingerprint, and each attempt; per map its item counts, failed items and the items done.

Many processes share the file: WAL mode (readers never wait for the writer), a busy timeout,
and short transactions from one writer thread per process (``pydags.scribe``). A run whose
driver died reads "interrupted": its heartbeat stopped, or its pid is gone on this host.
Journaling is never why a run fails: a file that cannot be opened is warned about once, a
corrupt one moved aside for a new one.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HEARTBEAT_SECONDS = 2.0  # how often a running driver says it is alive
DEAD_SECONDS = 60.0  # a run not heard of for this long was interrupted
BUSY_MS = 30_000  # how long a statement waits for another process's transaction
HOST = socket.gethostname()

SCHEMA = [  # one script per version; a database is brought up to date in order
    """
    CREATE TABLE runs (
        id TEXT PRIMARY KEY, pipeline TEXT NOT NULL, origin TEXT, options TEXT,
        store BLOB, host TEXT, pid INTEGER, started REAL, ended REAL, heartbeat REAL,
        state TEXT NOT NULL, counts TEXT, stages INTEGER, graph TEXT, version INTEGER
    );
    CREATE INDEX runs_by_pipeline ON runs (pipeline, started);
    CREATE INDEX runs_by_start ON runs (started);
    CREATE TABLE stages (
        run TEXT NOT NULL, stage TEXT NOT NULL, status TEXT, queued REAL, start REAL,
        "end" REAL, worker TEXT, error_kind TEXT, message TEXT, traceback TEXT, output TEXT,
        cache TEXT, fingerprint TEXT, version INTEGER, PRIMARY KEY (run, stage)
    ) WITHOUT ROWID;
    CREATE TABLE attempts (
        run TEXT NOT NULL, stage TEXT NOT NULL, number INTEGER NOT NULL, worker TEXT,
        start REAL, "end" REAL, status TEXT, error TEXT, PRIMARY KEY (run, stage, number)
    ) WITHOUT ROWID;
    CREATE TABLE maps (
        run TEXT NOT NULL, stage TEXT NOT NULL, count INTEGER, counts TEXT, failed TEXT,
        done TEXT, version INTEGER, PRIMARY KEY (run, stage)
    ) WITHOUT ROWID;
    """,
]
VERSION = len(SCHEMA)


class JournalError(Exception):
    """The journal cannot be read (a newer schema, a folder that cannot be opened)."""


def home() -> Path:
    """``$PYDAGS_HOME``, else ``~/.cache/pydags``: where the journal lives."""
    return Path(os.environ.get("PYDAGS_HOME") or Path.home() / ".cache" / "pydags")


def path() -> Path:
    """The journal's file."""
    return home() / "runs.db"


def connect(file: Path | None = None) -> sqlite3.Connection:
    """An open, up-to-date journal; a corrupt file is moved aside (with a warning) and a new
    one started. Raises ``JournalError`` when it cannot be used."""
    file = file or path()
    try:
        file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not file.exists():
            file.touch(mode=0o600)
        return _open(file)
    except sqlite3.DatabaseError as exc:
        if not _corrupt(exc):
            raise JournalError(f"the run journal {file} cannot be used ({exc}): free some "
                               "space or set PYDAGS_HOME to a writable folder") from None
    except OSError as exc:
        raise JournalError(f"the run journal {file} cannot be opened ({exc}): set PYDAGS_HOME "
                           "to a writable folder") from None
    aside = file.with_name(f"{file.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
    for suffix in ("", "-wal", "-shm"):
        part = Path(f"{file}{suffix}")
        if part.exists():
            part.replace(f"{aside}{suffix}")
    warnings.warn(f"the run journal {file} was corrupt: it was moved to {aside} and a new one "
                  "started", stacklevel=2)
    try:
        file.touch(mode=0o600)
        return _open(file)
    except (OSError, sqlite3.DatabaseError) as exc:
        raise JournalError(f"the run journal {file} cannot be started again ({exc})") from None


def _corrupt(exc: sqlite3.DatabaseError) -> bool:
    return "not a database" in str(exc) or "malformed" in str(exc)


def _open(file: Path) -> sqlite3.Connection:
    db = sqlite3.connect(file, timeout=BUSY_MS / 1000, isolation_level=None,
                         check_same_thread=False)
    try:
        db.row_factory = sqlite3.Row
        db.execute(f"PRAGMA busy_timeout = {BUSY_MS}")
        if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")  # WAL: safe from a killed process
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > VERSION:
            raise JournalError(f"the run journal {file} was written by a newer pydags "
                               f"(schema {version}; this one knows {VERSION}): upgrade pydags, "
                               "or set PYDAGS_HOME to another folder")
        if version < VERSION:
            _migrate(db)
    except BaseException:
        db.close()
        raise
    return db


def _migrate(db: sqlite3.Connection) -> None:
    with transaction(db):  # another process may be migrating too: it waits, then sees it done
        version = db.execute("PRAGMA user_version").fetchone()[0]
        for script in SCHEMA[version:]:
            for statement in filter(str.strip, script.split(";")):
                db.execute(statement)
        db.execute(f"PRAGMA user_version = {VERSION}")


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One short write transaction, taken at once (no deadlock between two writers)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


# --- what is read -------------------------------------------------------------------------
def state(row: sqlite3.Row | dict[str, Any], now: float | None = None) -> str:
    """A run's state: running, ok, failed, cancelled, or interrupted (its driver died)."""
    if row["state"] != "running":
        return row["state"]
    now = time.time() if now is None else now
    if row["host"] == HOST and not _alive(row["pid"]):
        return "interrupted"
    return "interrupted" if now - (row["heartbeat"] or 0) > DEAD_SECONDS else "running"


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_row(db: sqlite3.Connection, run_id: str) -> sqlite3.Row:
    """The run ``run_id`` (or the one run whose id starts so); ``KeyError`` saying why not."""
    row = db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
    if row is not None:
        return row
    rows = db.execute("SELECT * FROM runs WHERE id LIKE ? ESCAPE '\\' LIMIT 2",
                      (run_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                       + "%",)).fetchall()
    if len(rows) == 1:
        return rows[0]
    raise KeyError(f"no run {run_id!r} in the journal {path()}" if not rows else
                   f"several runs start with {run_id!r}: give more of the id")


def latest(db: sqlite3.Connection, pipeline: str) -> sqlite3.Row | None:
    """The pipeline's newest run, if any."""
    return db.execute("SELECT * FROM runs WHERE pipeline = ? ORDER BY started DESC, id DESC "
                      "LIMIT 1", (pipeline,)).fetchone()


def runs(db: sqlite3.Connection, pipeline: str | None = None,
         limit: int | None = None) -> list[dict[str, Any]]:
    """Runs, newest first: one plain dict each."""
    query = ("SELECT id, pipeline, origin, state, started, ended, heartbeat, host, pid, "
             "stages, counts FROM runs")
    query += " WHERE pipeline = ?" if pipeline is not None else ""
    query += " ORDER BY started DESC, id DESC" + (f" LIMIT {int(limit)}" if limit else "")
    now = time.time()
    found = []
    for row in db.execute(query, () if pipeline is None else (pipeline,)):
        counts = json.loads(row["counts"] or "{}")
        ended = row["ended"]
        found.append({
            "id": row["id"], "pipeline": row["pipeline"], "state": state(row, now),
            "started": row["started"], "ended": ended,
            "seconds": None if ended is None or row["started"] is None
            else ended - row["started"],
            "stages": row["stages"], "done": counts.get("done", 0) + counts.get("cached", 0),
            "failed": counts.get("failed", 0), "skipped": counts.get("skipped", 0),
            "cancelled": counts.get("cancelled", 0), "cached": counts.get("cached", 0),
            "origin": row["origin"], "host": row["host"], "pid": row["pid"]})
    return found


def stage_rows(db: sqlite3.Connection, run_id: str, since: int = 0) -> list[sqlite3.Row]:
    """The run's stages written after version ``since``."""
    return db.execute("SELECT * FROM stages WHERE run = ? AND version > ?",
                      (run_id, since)).fetchall()


def attempt_rows(db: sqlite3.Connection, run_id: str) -> list[sqlite3.Row]:
    return db.execute("SELECT * FROM attempts WHERE run = ? ORDER BY stage, number",
                      (run_id,)).fetchall()


def map_rows(db: sqlite3.Connection, run_id: str, since: int = 0) -> list[sqlite3.Row]:
    return db.execute("SELECT * FROM maps WHERE run = ? AND version > ?",
                      (run_id, since)).fetchall()


def recent_times(db: sqlite3.Connection, pipeline: str, runs: int = 5,
                 ) -> dict[str, list[tuple[str, float]]]:
    """Per stage, its seconds in the pipeline's last ``runs`` finished runs (oldest first)."""
    ids = [r[0] for r in db.execute(
        "SELECT id FROM runs WHERE pipeline = ? AND state != 'running' ORDER BY started DESC "
        "LIMIT ?", (pipeline, runs))]
    times: dict[str, list[tuple[str, float]]] = {}
    for run_id in reversed(ids):
        for stage, start, end in db.execute(
                'SELECT stage, start, "end" FROM stages WHERE run = ? AND status = \'done\'',
                (run_id,)):
            if start is not None and end is not None:
                times.setdefault(stage, []).append((run_id, end - start))
    return times

"""Runs read back from the journal: ``history()`` lists them, ``load_run()`` gives one as a
read-only ``Run`` (results read from the store when read), ``watch()`` follows one that
another process is running, in the live view or the terminal."""

from __future__ import annotations

import json
import threading
import time
from contextvars import copy_context
from typing import Any

import cloudpickle
import networkx as nx

from pydags import cache as caching
from pydags import journal
from pydags.protocol import ErrorKind, StageError
from pydags.records import Attempt, RunOptions, StageRecord
from pydags.results import Results, Stored
from pydags.run import Run
from pydags.scribe import item_status, reading
from pydags.status import StageStatus

WATCH_SECONDS = 0.25  # how often a watched run is read again


def history(pipeline: str | None = None, limit: int | None = None) -> Any:
    """Journaled runs (of ``pipeline``, or of every pipeline), newest first, across
    sessions: id, pipeline, state (running, ok, failed, cancelled, interrupted), times and
    counts. A pandas DataFrame when pandas is installed, else a list of dicts."""
    with reading() as db:
        rows = journal.runs(db, pipeline, limit)
    try:
        import pandas
    except ImportError:
        return rows
    frame = pandas.DataFrame(rows, columns=[
        "id", "pipeline", "state", "started", "ended", "seconds", "stages", "done", "failed",
        "skipped", "cancelled", "cached", "origin", "host", "pid"])
    for column in ("started", "ended"):
        frame[column] = pandas.to_datetime(frame[column], unit="s", utc=True)
    return frame


def load_run(run_id: str) -> Run:
    """The journaled run ``run_id`` (or the one whose id starts so), read-only: statuses,
    records, outputs, errors, timeline; its results are read from the store they were
    persisted to when read."""
    from pydags.known import settle

    settle()  # this process's runs: their results stored, their fingerprints journaled
    with reading() as db:
        row = journal.run_row(db, run_id)
        run = _shell(row)
        _read(db, run, row, since=(0, 0))
    _finish(run, row)
    if _store(row) is None:
        run.drop_results(f"run {row['id']} of {row['pipeline']!r} kept no results (it was "
                         "started with persist=False)")
    return run


def watch(target: str, *, block: bool = True, show: bool | None = None) -> Run:
    """Follow a run going on in another process (``pydags run`` in a terminal, another
    kernel), from the journal: ``target`` is a run id or a pipeline name (its latest run).
    In a notebook the live view shows it. Returns the run, as far as it is; with ``block``
    waits for its end (Ctrl-C or interrupting the kernel stops watching, not the run)."""
    with reading() as db:
        try:
            row = journal.run_row(db, target)
        except KeyError:
            row = journal.latest(db, target)
        if row is None:
            raise KeyError(f"the journal {journal.path()} has no run {target!r} and no run "
                           f"of a pipeline named {target!r}")
    run = _shell(row)
    from pydags.views.display import in_notebook

    if show or (show is None and in_notebook()):
        from pydags.views.widget import PipelineWidget

        view = PipelineWidget(Watched(row), num_cores=1)
        view.actions = False  # another process runs it: nothing to start or cancel here
        view.blocking = block
        view.attach(run)
        view.show()
    recorder = run._recorder
    recorder.mark_started()
    recorder.started = row["started"]
    stop = threading.Event()
    follower = threading.Thread(target=copy_context().run,
                                args=(_follow, run, row["id"], stop),
                                name=f"pydags-watch-{row['id']}", daemon=True)
    follower.start()
    if block:
        try:
            recorder.finished.wait()
        except KeyboardInterrupt:  # stop watching: the run goes on where it runs
            stop.set()
            raise
    return run


class Watched:
    """What the live view needs of a pipeline it only watches: its name and graph."""

    def __init__(self, row: Any):
        graph = json.loads(row["graph"] or "{}")
        mapped = set(graph.get("mapped", ()))
        self.name = row["pipeline"]
        self.graph = nx.DiGraph()
        self.graph.add_nodes_from((n, {"mapped": n in mapped})
                                  for n in graph.get("dependencies", {}))
        self.graph.add_edges_from((d, n) for n, deps in graph.get("dependencies", {}).items()
                                  for d in deps)

    def __len__(self) -> int:
        return self.graph.number_of_nodes()


def _follow(run: Run, run_id: str, stop: threading.Event) -> None:
    seen, heard = (0, 0), time.monotonic()
    while not stop.wait(WATCH_SECONDS):
        try:
            with reading() as db:
                row = journal.run_row(db, run_id)
                seen = _read(db, run, row, since=seen)
            heard = time.monotonic()
        except Exception:  # the journal is being moved aside, say: read it again soon
            if time.monotonic() - heard < journal.DEAD_SECONDS:
                continue
            run.journaled = "interrupted"  # gone from the journal: nothing more to follow
            run._recorder.mark_finished()
            return
        if journal.state(row) != "running":
            _finish(run, row)
            return


def _shell(row: Any) -> Run:
    """An empty run of the journaled ``row``'s pipeline and stages."""
    graph = json.loads(row["graph"] or "{}")
    dependencies = {n: set(d) for n, d in graph.get("dependencies", {}).items()}
    options = json.loads(row["options"] or "{}")
    known = {k: v for k, v in options.items() if k in RunOptions.__dataclass_fields__}
    run = Run(row["pipeline"], list(dependencies), dependencies,
              options=RunOptions(**{**known, "raise_on_error": False}))
    run.id = row["id"]
    run.journaled = journal.state(row)
    return run


def _read(db: Any, run: Run, row: Any, since: tuple[int, int]) -> tuple[int, int]:
    """Bring ``run`` up to what the journal holds of it; returns the versions read."""
    stages = journal.stage_rows(db, row["id"], since[0])
    maps = journal.map_rows(db, row["id"], since[1])
    if not stages and not maps:
        return since
    attempts: dict[str, list[Attempt]] = {}
    for a in journal.attempt_rows(db, row["id"]):
        attempts.setdefault(a["stage"], []).append(
            Attempt(a["number"], a["worker"], a["start"], a["end"], StageStatus(a["status"]),
                    a["error"]))
    records = [_record(r, attempts.get(r["stage"], [])) for r in stages]
    items = {}
    for m in maps:
        failed = json.loads(m["failed"] or "[]")
        found = item_status(m["count"], json.loads(m["done"] or "[]"), failed)
        found.errors = {i: StageError(ErrorKind.EXCEPTION, message) for i, message in failed}
        items[m["stage"]] = found
    run._recorder.replay(records, items)
    store = _store(row)
    if store is not None:
        with run._recorder.lock:
            results: Results = run._recorder.results
            for r in stages:
                if r["status"] in ("done", "cached") and r["fingerprint"]:
                    results[r["stage"]] = Stored(
                        store, caching.key(row["pipeline"], r["stage"], r["fingerprint"]))
    return (max([since[0], *(r["version"] for r in stages)]),
            max([since[1], *(m["version"] for m in maps)]))


def _record(row: Any, attempts: list[Attempt]) -> StageRecord:
    error = None
    if row["error_kind"]:
        error = StageError(ErrorKind(row["error_kind"]), row["message"] or "",
                           row["traceback"] or "")
    return StageRecord(row["stage"], StageStatus(row["status"]), row["queued"], row["start"],
                       row["end"], row["worker"], row["output"] or "", error, attempts,
                       row["cache"])


def _store(row: Any) -> Any:
    if not row["store"]:
        return None
    try:
        return cloudpickle.loads(row["store"])
    except Exception:
        return None


def _finish(run: Run, row: Any) -> None:
    """The journaled run has ended (or its driver died): so has this one."""
    recorder = run._recorder
    run.journaled = journal.state(row)
    if not recorder.finished.is_set():
        recorder.mark_finished()
    recorder.started, recorder.ended = row["started"], row["ended"] or row["heartbeat"]

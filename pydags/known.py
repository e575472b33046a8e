"""Results known before a run starts, and results kept for the runs after it: resume (of
the last run in this session, or of a run in the journal), the cache, and persistence, as
one part.

While a run is planned, on the caller's thread, ``known()`` finds the results the run need
not make again, and says for each stage it looked up whether it was found or why it runs.
While the run goes on, the ``Keeper`` stores each new result under its fingerprint on a
thread of its own, never on the scheduler's: a result kept in a worker process is written
to the store by that worker, not brought into the driver to be pickled there. Results are
persisted so by default (``persist``), for a run in a later kernel to resume; a map's items
are kept a batch at a time, so that a map cut short resumes from the items it had done.
The run does not wait for its results to be stored: whatever reads the store next (a run
with the cache, ``stale()``, ``clear_cache()``, the end of the interpreter) waits for the
writes still going on (``settle``).
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import threading
import time
import warnings
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from contextvars import copy_context
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import networkx as nx

from pydags import cache as caching
from pydags.fingerprint import Fingerprint, code_of_stages, fingerprints
from pydags.mapping import ResumedItems
from pydags.plan import Plan
from pydags.results import Remote, Stored
from pydags.status import StageStatus
from pydags.store import UnreadableKey

if TYPE_CHECKING:
    from pydags.mapping import MappedStage


def persisting(persist: bool | None) -> bool:
    """Whether a run persists its results: ``persist``, else ``$PYDAGS_PERSIST`` (on)."""
    if persist is not None:
        return bool(persist)
    return os.environ.get("PYDAGS_PERSIST", "1").lower() not in ("0", "false", "no", "off")


@dataclass
class Known:
    """What a run starts from: the results it need not make, where its items' results may
    be known, why each stage looked up runs or not, who keeps its new results, the stages'
    fingerprints, and the journaled run it resumes, if any."""

    results: dict[str, Any] = field(default_factory=dict)
    items: list[Any] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)
    keeper: Keeper | None = None
    prints: dict[str, Fingerprint] = field(default_factory=dict)
    resumed: str | None = None


def known(pipeline: str, plan: Plan, store: Any, *, last: Any = None,
          resume: bool | str = False, rerun: Iterable[str] = (), cache: bool = False,
          persist: bool = False) -> Known:
    """The results a run of ``plan`` starts from: with ``resume``, those of the stages that
    succeeded in the pipeline's last run (``last``, in this session; else the journal's
    latest, or the journaled run of that id), but the ``rerun`` stages and those below
    them; with ``cache``, those stored under the stages' fingerprints. With ``persist`` (or
    ``cache``) its new results are stored under their fingerprints."""
    found = Known()
    journaled = bool(resume) and (isinstance(resume, str) or last is None)
    if resume and not journaled:
        found.results, found.items = _resumed(pipeline, plan, last, rerun)
    if cache or journaled:
        settle(store)  # what it reads: the results stored so far
    if cache or persist or journaled:
        store.check()
    if cache or journaled:  # looked up now
        found.prints = fingerprints(plan)
    if persist:
        from pydags.quota import quota

        quota()  # a PYDAGS_QUOTA it cannot read is said now, before anything runs
    if cache or persist:  # else made by the keeper, from the code as it is now
        found.keeper = Keeper(store, pipeline, plan, found.prints if cache or journaled
                              else None)
        found.prints = found.keeper.prints
        found.items.append(PersistedItems(store, pipeline, found.prints, found.keeper))
    if journaled:
        found.results, found.notes, found.resumed = _from_journal(
            pipeline, plan, store, resume, rerun, found.prints)
        found.items.append(PersistedItems(store, pipeline, found.prints))
    if cache:
        cached, notes = caching.cached_results(store, pipeline, found.prints)
        found.results = cached | found.results
        found.notes = notes | found.notes
        found.items.append(caching.CachedItems(store, pipeline, plan, found.prints,
                                               found.keeper.write))
    return found


def _again(pipeline: str, plan: Plan, rerun: Iterable[str]) -> set[str]:
    """The ``rerun`` stages and every stage below them."""
    graph = nx.DiGraph([(d, n) for n, deps in plan.dependencies.items() for d in deps])
    again: set[str] = set()
    for name in [rerun] if isinstance(rerun, str) else rerun:
        if name not in plan.stages:
            raise ValueError(f"rerun: pipeline {pipeline!r} has no stage {name!r}")
        again |= {name} | (nx.descendants(graph, name) if name in graph else set())
    return again


def _resumed(pipeline: str, plan: Plan, last: Any, rerun: Iterable[str],
             ) -> tuple[dict[str, Any], list[ResumedItems]]:
    again = _again(pipeline, plan, rerun)
    results = last.results
    held = {n: results.held(n) for n, s in last.status.items()
            if s.succeeded and n in plan.stages and n in results and n not in again}
    reused = {n: v for n, v in held.items() if not (isinstance(v, Remote) and v.lost)}
    items = {n: i for n, i in last.items.items()
             if n in plan.linked and n not in reused and n not in again}
    return reused, [ResumedItems(items)]


def _from_journal(pipeline: str, plan: Plan, store: Any, resume: bool | str,
                  rerun: Iterable[str], prints: dict[str, Fingerprint],
                  ) -> tuple[dict[str, Any], dict[str, str], str]:
    """The results of the stages that succeeded in a journaled run, unchanged since, read
    from where they were persisted; and for every stage, why it runs or that it resumes."""
    from pydags import journal
    from pydags.scribe import reading

    with reading() as db:
        row = (journal.run_row(db, resume) if isinstance(resume, str)
               else journal.latest(db, pipeline))
        if row is None:
            raise ValueError(f"resume=True: pipeline {pipeline!r} has no earlier run, in this "
                             f"session or in the journal {journal.path()}; start it once "
                             "first")
        if row["pipeline"] != pipeline:
            raise ValueError(f"resume={resume!r}: that run is of pipeline "
                             f"{row['pipeline']!r}, not {pipeline!r}")
        before = {r["stage"]: r["status"] for r in journal.stage_rows(db, row["id"])}
    again, run_id = _again(pipeline, plan, rerun), row["id"]
    results: dict[str, Any] = {}
    notes: dict[str, str] = {}
    running: set[str] = set()
    for name in plan.stages:
        fingerprint, status = prints.get(name), before.get(name)
        key = caching.key(pipeline, name, fingerprint.digest) if fingerprint else ""
        succeeded = status in (StageStatus.DONE.value, StageStatus.CACHED.value)
        if name in again:
            notes[name] = "runs again: asked to (rerun)"
        elif status is None:
            notes[name] = f"runs: it was not in run {run_id}"
        elif fingerprint is not None and key in store:  # also if the journal had not heard
            # of its end yet when the run's driver died: its result was stored all the same
            try:
                results[name] = _stored(store, key, mapped=name in plan.linked)
            except UnreadableKey as exc:
                warnings.warn(f"stage {name!r} runs again: its stored result {exc}",
                              stacklevel=4)
                store.delete(key)
                notes[name] = "runs again: its stored result could not be read"
                running.add(name)
                continue
            notes[name] = f"resumed: it succeeded in run {run_id}, unchanged since"
            continue
        elif not succeeded:
            notes[name] = f"runs: it was {status} in run {run_id}"
        elif fingerprint is None:
            notes[name] = "runs again: its code or arguments cannot be fingerprinted"
        elif (last := caching.last(store, pipeline, name)) is not None:
            notes[name] = f"runs again: {caching.why(fingerprint, last, running)}"
        else:
            notes[name] = "runs again: its result was not kept"
        running.add(name)
    return results, notes, run_id


def _stored(store: Any, key: str, *, mapped: bool) -> Any:
    """A persisted result: read when needed (a map's list now: its items are counted)."""
    caching.touch(store, key)
    return store.get(key) if mapped else Stored(store, key)


class PersistedItems:
    """The items of mapped stages, persisted a batch at a time under the stage's
    fingerprint, so that a map cut short resumes from the items it had done."""

    _chunks = itertools.count()

    def __init__(self, store: Any, pipeline: str, prints: dict[str, Fingerprint],
                 keeper: Keeper | None = None):
        self.store, self.pipeline, self.prints = store, pipeline, prints
        self.keeper = keeper  # who writes them (None: this one only finds items)

    def prefix(self, name: str) -> str | None:
        """Where the chunks of ``name``'s items are kept (None: it cannot be cached)."""
        fingerprint = self.prints.get(name)
        if fingerprint is None:
            return None
        return caching.key(self.pipeline, name, f"chunk-{fingerprint.digest[:32]}-")

    def find(self, name: str, mapped: MappedStage, count: int) -> dict[int, Any]:
        """The items of ``name`` persisted by an earlier run with the same fingerprint."""
        prefix = self.prefix(name)
        if self.keeper is not None or prefix is None:
            return {}
        found: dict[int, Any] = {}
        for chunk in self.store.keys(prefix):
            try:
                found.update((i, v) for i, v in self.store.get(chunk) if i < count)
            except KeyError:
                continue
            except (UnreadableKey, TypeError, ValueError):  # cut short: its items run again
                self.store.delete(chunk)
        return found

    def keep(self, name: str, values: list[Any], done: Sequence[int]) -> None:
        """Persist the results of items ``done`` of ``name`` (off the scheduler's thread)."""
        if self.keeper is not None and len(done):
            chunk = next(self._chunks)
            self.keeper.write(lambda: self._store(name, values, done, chunk))

    def _store(self, name: str, values: list[Any], done: Sequence[int], chunk: int) -> None:
        self.keeper.fingerprinted()
        prefix = self.prefix(name)
        if prefix is not None:  # items that cannot be pickled are not kept: the stage's
            with contextlib.suppress(TypeError):  # own warning says so
                self.store.set(f"{prefix}{done[0]:09d}-{chunk}",
                               [(i, values[i]) for i in done])


PAUSE_SECONDS = 0.05  # the scheduler heard of no stage for this long: the keeper writes
_keepers: weakref.WeakSet[Keeper] = weakref.WeakSet()  # those with writes going on
# (store, key of a stage's last fingerprint) -> the digest stored there, as last seen here
_lasts: dict[tuple[Any, str], str] = {}
_exiting = threading.Lock()


def settle(store: Any = None) -> None:
    """Wait until the results given to keepers for ``store`` (any, if None) are stored."""
    for keeper in list(_keepers):
        if store is None or keeper.store is store or keeper.store == store:
            keeper.close()


class Keeper:
    """Stores a run's new results under their fingerprints, on a thread of its own, when
    the run leaves it time: while results come in quick succession (stages of a few
    milliseconds), Python work on another thread would hold the scheduler back at each
    switch of the interpreter's lock, so the writes wait for a pause or for the run's end."""

    def __init__(self, store: Any, pipeline: str, plan: Plan,
                 prints: dict[str, Fingerprint] | None = None):
        self.store, self.pipeline, self.plan = store, pipeline, plan
        # the fingerprints, if made while planning; else the code they need is read now
        # (the code and globals the run starts with), the rest made on the keeper's thread
        self.prints: dict[str, Fingerprint] = {} if prints is None else prints
        self._codes = code_of_stages(plan) if prints is None else None
        self.on_fingerprints: Callable[[], None] | None = None  # told once they are made
        self.mapped = frozenset(plan.linked)  # their items are kept in chunks until done
        self.last_news = 0.0  # when the scheduler last heard from a stage (time.time())
        self.written: set[str] = set()  # the keys of this run's results: never evicted
        self.grew = False  # whether it stored a result not stored before (the quota counts)
        # writes to do, in order (None: no more); appended on the scheduler's thread at
        # the cost of a deque's append, the thread woken only when it may be asleep
        self._writes: deque[Callable[[], None] | None] = deque()
        self._more = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._writers: set[Any] = set()  # workers writing results they keep

    def keep(self, name: str, held: Any) -> None:
        """Stage ``name`` is DONE with the result ``held`` (maybe still in its worker)."""
        self.write(lambda: self._store(name, held))

    def fingerprinted(self) -> dict[str, Fingerprint]:
        """The fingerprints (made here, on the keeper's thread, the first time)."""
        if self._codes is not None:
            self.prints.update(fingerprints(self.plan, self._codes))
            self._codes = None
            if self.on_fingerprints is not None:
                self.on_fingerprints()
        return self.prints

    def write(self, work: Callable[[], None]) -> None:
        """Do ``work`` (a write to the store) on the keeper's thread."""
        if self._thread is None:
            self._begin()
        self._writes.append(work)
        if not self._more.is_set():
            self._more.set()

    def _begin(self) -> None:
        """Start the keeper's thread, once."""
        with self._lock:
            if self._thread is None:
                if not _keepers and _exiting.acquire(blocking=False):
                    # registered after the worker pool's exit hook, so run before it: the
                    # workers still keep the results they are writing
                    atexit.register(settle)
                _keepers.add(self)
                self._thread = threading.Thread(
                    target=copy_context().run, args=(self._serve,),
                    name=f"pydags-keeper-{self.pipeline}", daemon=True)
                self._thread.start()

    def finish(self) -> None:
        """No more results will come: the thread ends once it has stored those given."""
        with self._lock:
            if self._thread is not None:
                self._writes.append(None)
                self._more.set()

    def close(self) -> None:
        """Wait until every result given is stored."""
        self.finish()
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()
        _keepers.discard(self)

    def _serve(self) -> None:
        while (work := self._next()) is not None:
            try:
                work()
            except Exception as exc:  # a store that fails must not fail the run
                warnings.warn(f"pydags could not store a result: {type(exc).__name__}: {exc}",
                              stacklevel=1)
        if self._writers:
            from pydags.executors.kept import flush  # only runs with worker processes have any

            for worker in self._writers:  # the results they keep: written once they are idle
                for failure in flush(worker):
                    warnings.warn(failure, stacklevel=1)
        if self.grew:
            from pydags.quota import enforce

            try:
                enforce(self.store, self.written)
            except Exception as exc:  # a store that fails must not fail the run
                warnings.warn(f"pydags could not keep its stored results under their quota: "
                              f"{type(exc).__name__}: {exc}", stacklevel=1)

    def _next(self) -> Callable[[], None] | None:
        """The next write, once the run leaves time for it."""
        while not self._writes:
            self._more.wait()
            self._more.clear()
        while time.time() - self.last_news < PAUSE_SECONDS:
            time.sleep(PAUSE_SECONDS)  # the run is busy: write in a pause, or after it
        return self._writes.popleft()

    def _store(self, name: str, held: Any) -> None:
        fingerprint = self.fingerprinted().get(name)
        if fingerprint is None:
            return  # its code or arguments cannot be fingerprinted
        where = caching.key(self.pipeline, name, fingerprint.digest)
        last = caching.key(self.pipeline, name, "last")
        if caching.reused(self.store, where):  # an earlier run's: same inputs, same result
            self.written.add(where)
            if _lasts.get((self.store, last)) != fingerprint.digest:
                if caching.last(self.store, self.pipeline, name) != fingerprint.record():
                    self.store.set(last, fingerprint.record())
                _lasts[(self.store, last)] = fingerprint.digest
            return
        try:
            if isinstance(held, Remote):
                writer = held.store_in(self.store, where)  # by the worker keeping it, if any
                if writer is not None:
                    self._writers.add(writer)
            else:
                self.store.set(where, held)
        except TypeError as exc:  # it cannot be pickled
            warnings.warn(f"the result of stage {name!r} was not kept (a later run cannot "
                          f"resume from it or reuse it): {exc}", stacklevel=1)
            return
        self.written.add(where)
        self.grew = True
        self.store.set(last, fingerprint.record())
        _lasts[(self.store, last)] = fingerprint.digest
        if name in self.mapped:  # its items' chunks are no longer needed
            for chunk in self.store.keys(caching.key(self.pipeline, name,
                                                     f"chunk-{fingerprint.digest[:32]}-")):
                self.store.delete(chunk)

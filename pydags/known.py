"""Results known before a run starts, and results kept for the runs after it: resume (the
last run's) and the cache (results stored under their fingerprints) as one part.

While a run is planned, on the caller's thread, ``known()`` finds the results the run need
not make again, and says for each cached stage whether it was found or why it runs. While
the run goes on, the ``Keeper`` stores each new result on a thread of its own, never on the
scheduler's: a result kept in a worker process is written to the store by that worker, not
brought into the driver to be pickled there. The run does not wait for its results to be
stored: whatever reads the store next (a run with the cache, ``stale()``, ``clear_cache()``,
the end of the interpreter) waits for the writes still going on (``settle``).
"""

from __future__ import annotations

import atexit
import dataclasses
import queue
import threading
import warnings
import weakref
from collections.abc import Callable, Iterable
from contextvars import copy_context
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from pydags import cache as caching
from pydags.fingerprint import Fingerprint, fingerprints
from pydags.mapping import ResumedItems
from pydags.plan import Plan
from pydags.results import Remote


@dataclass
class Known:
    """What a run starts from: the results it need not make, where its items' results may
    be known, why each cached stage runs or not, and who keeps its new results."""

    results: dict[str, Any] = field(default_factory=dict)
    items: list[Any] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)
    keeper: Keeper | None = None


def known(pipeline: str, plan: Plan, store: Any, *, last: Any = None, resume: bool = False,
          rerun: Iterable[str] = (), cache: bool = False) -> Known:
    """The results a run of ``plan`` starts from: with ``resume``, those of the stages that
    succeeded in ``last`` (the pipeline's last run), but the ``rerun`` stages and those
    below them; with ``cache``, those stored under the stages' fingerprints."""
    found = Known()
    if resume:
        found.results, found.items = _resumed(pipeline, plan, last, rerun)
    if cache:
        settle(store)
        store.check()
        prints = fingerprints(plan)
        keeper = Keeper(store, pipeline, prints)
        cached, found.notes = caching.cached_results(store, pipeline, prints)
        found.results = cached | found.results
        found.items.append(caching.CachedItems(store, pipeline, plan, prints, keeper.write))
        found.keeper = keeper
    return found


def _resumed(pipeline: str, plan: Plan, last: Any, rerun: Iterable[str],
             ) -> tuple[dict[str, Any], list[ResumedItems]]:
    if last is None:
        raise ValueError(f"resume=True: pipeline {pipeline!r} has no earlier run "
                         "in this session; start it once first")
    graph = nx.DiGraph([(d, n) for n, deps in plan.dependencies.items() for d in deps])
    again: set[str] = set()
    for name in [rerun] if isinstance(rerun, str) else rerun:
        if name not in plan.stages:
            raise ValueError(f"rerun: pipeline {pipeline!r} has no stage {name!r}")
        again |= {name} | (nx.descendants(graph, name) if name in graph else set())
    results = last.results
    held = {n: results.held(n) for n, s in last.status.items()
            if s.succeeded and n in plan.stages and n in results and n not in again}
    reused = {n: v for n, v in held.items() if not (isinstance(v, Remote) and v.lost)}
    items = {n: i for n, i in last.items.items()
             if n in plan.linked and n not in reused and n not in again}
    return reused, [ResumedItems(items)]


_keepers: weakref.WeakSet[Keeper] = weakref.WeakSet()  # those with writes going on
_exiting = threading.Lock()


def settle(store: Any = None) -> None:
    """Wait until the results given to keepers for ``store`` (any, if None) are stored."""
    for keeper in list(_keepers):
        if store is None or keeper.store is store or keeper.store == store:
            keeper.close()


class Keeper:
    """Stores a run's new results under their fingerprints, on a thread of its own."""

    def __init__(self, store: Any, pipeline: str, prints: dict[str, Fingerprint]):
        self.store, self.pipeline, self.prints = store, pipeline, prints
        self._writes: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._writers: set[Any] = set()  # workers writing results they keep
    def keep(self, name: str, held: Any) -> None:
        """Stage ``name`` is DONE with the result ``held`` (maybe still in its worker)."""
        fingerprint = self.prints.get(name)
        if fingerprint is not None:
            self.write(lambda: self._store(name, held, fingerprint))

    def write(self, work: Callable[[], None]) -> None:
        """Do ``work`` (a write to the store) on the keeper's thread."""
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
        self._writes.put(work)

    def finish(self) -> None:
        """No more results will come: the thread ends once it has stored those given."""
        with self._lock:
            if self._thread is not None:
                self._writes.put(None)

    def close(self) -> None:
        """Wait until every result given is stored."""
        self.finish()
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()
        _keepers.discard(self)

    def _serve(self) -> None:
        while (work := self._writes.get()) is not None:
            try:
                work()
            except Exception as exc:  # a store that fails must not fail the run
                warnings.warn(f"pydags could not store a result: {type(exc).__name__}: {exc}",
                              stacklevel=1)
        if not self._writers:
            return
        from pydags.executors.kept import flush  # only runs with worker processes have any

        for worker in self._writers:  # the results they keep: written once they are idle
            for failure in flush(worker):
                warnings.warn(failure, stacklevel=1)

    def _store(self, name: str, held: Any, fingerprint: Fingerprint) -> None:
        where = caching.key(self.pipeline, name, fingerprint.digest)
        try:
            if isinstance(held, Remote):
                writer = held.store_in(self.store, where)  # by the worker keeping it, if any
                if writer is not None:
                    self._writers.add(writer)
            else:
                self.store.set(where, held)
        except TypeError as exc:  # it cannot be pickled
            warnings.warn(f"stage {name!r} was not cached: {exc}", stacklevel=1)
            return
        self.store.set(caching.key(self.pipeline, name, "last"), dataclasses.asdict(fingerprint))

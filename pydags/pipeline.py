"""Pipeline: a DAG of stages — build it, check it, draw it, run it."""

from __future__ import annotations

import warnings
import weakref
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import networkx as nx

from pydags.errors import (  # the last four: where the published pydags 0.1 defined them
    DAGException,
    DAGVerificationException,
    InvalidStageTypeException,
    StageException,
)
from pydags.executors import base
from pydags.executors.choice import check_cores, choose
from pydags.known import known, persisting
from pydags.members import check_acyclic, closure
from pydags.plan import Plan
from pydags.records import RunOptions
from pydags.run import Run
from pydags.scheduler import Scheduler
from pydags.scribe import journal_run, origin
from pydags.stage import FunctionStage, Stage, check_settings

if TYPE_CHECKING:
    from matplotlib.figure import Figure

HISTORY = 20  # runs kept in ``pipeline.runs``


__all__ = ["DAGException", "DAGVerificationException", "InvalidStageTypeException", "Pipeline",
           "StageException"]


class Pipeline:
    """A DAG of stages. Add stages, then ``visualize()`` or ``start()`` it.

    The graph is always the one the stage objects describe now: ``.after()`` or
    ``.named()`` on a stage already added is honoured by the next ``start()``.
    """

    def __init__(self, name: str | None = None, stages: Iterable[Stage] = (), *,
                 store: Any = None, redis_cache: Any = None, keep_results: int = 1):
        self.name = name or "pipeline"
        self.origin = origin()  # where it was defined, for the journal
        if isinstance(keep_results, bool) or not isinstance(keep_results, int) or keep_results < 1:
            raise ValueError(f"keep_results is how many runs keep their results: a whole "
                             f"number >= 1, not {keep_results!r}")
        self.keep_results = keep_results
        if redis_cache is not None:  # the published pydags 0.1's way to give a Redis store
            from pydags.store import RedisStore

            store = RedisStore(redis_cache)
        self._store = store
        self._members: dict[int, Stage] = {}  # id -> stage: those added and their dependencies
        self._by_name: dict[str, Stage] = {}
        self._stale = False  # a member changed its name or dependencies since the last check
        self._graph: nx.DiGraph | None = None
        self._ordered: tuple[nx.DiGraph, list[str]] | None = None  # (graph, its order)
        self.runs: deque[Run] = deque(maxlen=HISTORY)
        self.add_stages(*stages)

    # --- building ------------------------------------------------------------
    def add_stages(self, *stages: Stage | Iterable[Stage]) -> Pipeline:
        """Add stages (a list, or several arguments) and every stage they depend on.

        A rejected call (a non-stage, a name taken twice, a cycle) leaves the pipeline as it was.
        """
        given: list[Any] = []
        for item in stages:
            given.extend(item if isinstance(item, (list, tuple, set, frozenset)) else [item])
        for position, item in enumerate(given):
            if not isinstance(item, Stage):
                hint = " (call it: load(), not load)" if callable(item) else ""
                raise InvalidStageTypeException(f"add_stages() takes stages; item {position} is a "
                                f"{type(item).__name__}: {item!r}{hint}")
        self._check()
        members, by_name = closure(given, self._members, self._by_name, self.name)
        check_acyclic(members, self._members)
        ref = weakref.ref(self)
        for item in members.values():
            item._pipelines.append(ref)
        self._members.update(members)
        self._by_name.update(by_name)
        self._graph = None
        return self

    def add_stage(self, stage: Stage) -> Pipeline:
        """Add one stage (and every stage it depends on), as the published pydags 0.1 did."""
        return self.add_stages(stage)

    def _check(self) -> None:
        """Build the index again if a member changed since it was built."""
        if not self._stale:
            return
        members, by_name = closure(list(self._members.values()), {}, {}, self.name)
        check_acyclic(members, {})
        ref = weakref.ref(self)
        for item in members.values():
            if id(item) not in self._members:
                item._pipelines.append(ref)
        self._members, self._by_name, self._graph, self._stale = members, by_name, None, False

    @property
    def stages(self) -> list[Stage]:
        """The stages, in a topological order (every stage after its dependencies)."""
        return [self._by_name[name] for name in self._order()]

    def __getitem__(self, name: str) -> Stage:
        self._check()
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"pipeline {self.name!r} has no stage {name!r}; it has: "
                           f"{', '.join(self._by_name) or 'no stages'}") from None

    def __contains__(self, item: object) -> bool:
        self._check()
        if isinstance(item, Stage):
            return self._members.get(id(item)) is item
        return item in self._by_name

    def __len__(self) -> int:
        self._check()
        return len(self._members)

    def __iter__(self):
        return iter(self.stages)

    def __repr__(self) -> str:
        edges = self.graph.number_of_edges()
        return f"<Pipeline {self.name!r}: {len(self)} stages, {edges} dependencies>"

    @property
    def graph(self) -> nx.DiGraph:
        """A ``networkx.DiGraph`` of stage names, an edge from each dependency to its stage
        (each node's ``mapped`` attribute says whether it runs once per item)."""
        self._check()
        if self._graph is None:
            graph = nx.DiGraph()
            graph.add_nodes_from((name, {"mapped": item.mapped})
                                 for name, item in self._by_name.items())
            for name, item in self._by_name.items():
                graph.add_edges_from((dep.name, name) for dep in item.dependencies)
            self._graph = graph
        return self._graph

    def _order(self) -> list[str]:
        graph = self.graph  # sorted again only when it is made again: each run asks
        if self._ordered is None or self._ordered[0] is not graph:
            self._ordered = (graph, list(nx.topological_sort(graph)))
        return list(self._ordered[1])

    def topological_sort_grouped(self) -> list[list[str]]:
        """Stage names in levels: each level depends only on the levels before it."""
        return [sorted(level) for level in nx.topological_generations(self.graph)]

    def run_stage(self, name: str) -> Any:
        """Run stage ``name`` and the stages it depends on in this process; returns its
        result (raises ``PipelineError`` if one of them failed)."""
        target = self[name]
        return Pipeline(f"{self.name}:{name}", [target], store=self.store).start(
            show=False).results[name]

    def dependencies(self) -> dict[str, set[str]]:
        """Stage name to the names of the stages it waits for."""
        graph = self.graph
        return {name: set(graph.predecessors(name)) for name in graph}

    # --- drawing -------------------------------------------------------------
    def visualize(self, ax: Any = None, status: Any = None, *, layout: str = "layered",
                  figsize: tuple[float, float] | None = None, stale: bool | None = None,
                  ) -> Figure:
        """Draw the DAG left to right with matplotlib; ``status`` (or a run) colours stages.
        ``stale=True`` draws which stages would run (``stale()``) and which are fresh; by
        default it does so in a notebook when no ``status`` is given."""
        from pydags.views.display import in_notebook
        from pydags.views.draw import Drawing

        drawing = Drawing(self.graph, ax=ax, layout=layout, figsize=figsize)
        if status is not None:
            drawing.update(status.status if isinstance(status, Run) else status)
        elif stale or (stale is None and in_notebook()):
            reasons = self._stale_or_warn()
            if reasons is not None:
                drawing.update({name: "fresh" if reason is None else "stale"
                                for name, reason in reasons.items()})
        return drawing.figure

    def _repr_png_(self) -> tuple[bytes, dict[str, int]]:
        return self.visualize(status=self.last_run)._repr_png_()

    def widget(self, num_cores: int = 2) -> Any:
        """The live view of this pipeline, to keep: DAG, inspector, timeline, Run all, Run
        stale, Cancel. Before a run it draws which stages are stale (would run) and why."""
        from pydags.views.widget import PipelineWidget

        widget = PipelineWidget(self, num_cores=num_cores)
        if self.last_run is not None:
            widget.attach(self.last_run)
        else:
            reasons = self._stale_or_warn()
            if reasons is not None:
                widget.show_stale(reasons)
        return widget

    # --- running -------------------------------------------------------------
    def prepare(
        self,
        num_cores: int = 1,
        *,
        executor: Any = None,
        raise_on_error: bool = True,
        fail_fast: bool = False,
        resume: bool | str = False,
        rerun: Iterable[str] = (),
        cache: bool = False,
        persist: bool | None = None,
        on_event: Any = None,
    ) -> Run:
        """A run of the pipeline, not started yet: ``subscribe()`` to it, then ``start()`` it.

        Takes the options of ``start()`` but ``block`` and ``show``.
        """
        if base.loading_stages:
            raise RuntimeError(
                f"pipeline {self.name!r} was started while a worker process imported a stage's "
                "module: that module starts a pipeline when imported. Put the code that starts "
                "it under `if __name__ == \"__main__\":` (or in a function)")
        cores = check_cores(num_cores)
        if not isinstance(resume, (bool, str)):
            raise TypeError(f"resume is True (the last run), False, or the id of a journaled "
                            f"run (see pipeline.history()), not {resume!r}")
        if not len(self):
            raise ValueError(f"pipeline {self.name!r} has no stages; add some with add_stages()")
        plan = self._plan()
        self._connect_stores(plan)
        chosen = choose(executor, cores, plan)
        persist = persisting(persist)
        start = known(self.name, plan, self.store, last=self.last_run, resume=resume,
                      rerun=rerun, cache=cache, persist=persist)
        scheduler = Scheduler(plan, chosen, fail_fast=fail_fast, cached=start.results,
                              known_items=start.items, keeper=start.keeper)
        options = RunOptions(num_cores=cores if executor is None else 1, executor=executor,
                             raise_on_error=raise_on_error, fail_fast=fail_fast, resume=resume,
                             rerun=(rerun,) if isinstance(rerun, str) else tuple(rerun),
                             cache=cache, persist=persist)
        run = Run(self.name, list(plan.stages), plan.dependencies, scheduler=scheduler,
                  options=options, again=_again(self), notes=start.notes)
        entry = journal_run(
            run._recorder, origin=self.origin, store=self.store if persist or cache else None,
            options={"num_cores": options.num_cores, "executor": None if executor is None
                     else repr(executor), "fail_fast": fail_fast, "resume": resume,
                     "resumed": start.resumed, "rerun": list(options.rerun), "cache": cache,
                     "persist": persist},
            prints=start.prints, mapped=set(plan.linked))
        if entry is not None:
            run.id = entry.id
            if start.keeper is not None:
                start.keeper.on_fingerprints = entry.fingerprinted
        if on_event is not None:
            run.subscribe(on_event)
        finished = [old for old in self.runs if old.done()]  # a run going on keeps its own
        for old in finished[:max(0, len(finished) - self.keep_results + 1)]:
            old.drop_results(
                f"the results of this run of {self.name!r} were let go when a later run "
                f"started (a pipeline keeps the results of its last {self.keep_results} "
                f"finished run(s)); keep more with Pipeline(keep_results=N)")
        self.runs.append(run)
        return run

    def start(
        self,
        num_cores: int = 1,
        *,
        executor: Any = None,
        block: bool = True,
        show: bool | None = None,
        raise_on_error: bool = True,
        fail_fast: bool = False,
        resume: bool | str = False,
        rerun: Iterable[str] = (),
        cache: bool = False,
        persist: bool | None = None,
        on_event: Any = None,
    ) -> Run:
        """Run the pipeline; returns the run result (or, with ``block=False``, its handle).

        ``num_cores``: stages at once (1 runs here, in this process; -1 uses every core).
        ``executor``: a ``dask.distributed.Client`` or a scheduler address
        (``"tcp://host:8786"``) to run the stages on that cluster.
        ``show``: display the live widget (default: in a notebook). ``fail_fast``: cancel the
        rest at the first failure. ``resume``: keep the stages that succeeded in the last run
        and rerun only the others (and the ``rerun`` stages, with everything below them);
        the last run is this session's, else the journal's (also from a kernel that died);
        ``resume="RUN_ID"`` picks a journaled run.
        ``cache``: reuse results stored by earlier runs for the stages whose code and inputs
        did not change, and store the new ones. ``persist`` (default on, or
        ``$PYDAGS_PERSIST``): store each result under its fingerprint, for a later resume.
        ``on_event``: a function called with every status change.
        Raises ``PipelineError`` when a stage failed, unless ``raise_on_error=False``.
        """
        __tracebackhide__ = True  # IPython and pytest show the user's frames only
        run = self.prepare(num_cores, executor=executor, raise_on_error=raise_on_error,
                           fail_fast=fail_fast, resume=resume, rerun=rerun, cache=cache,
                           persist=persist, on_event=on_event)
        from pydags.views.display import follow

        follow(self, run, show=show, block=block, num_cores=num_cores)
        return run.start(block=block)

    @property
    def store(self) -> Any:
        """Where class stages ``read``/``write`` by default and where results are cached:
        the store given to ``Pipeline(store=...)``, else a ``DiskStore`` in
        ``$PYDAGS_STORE`` or ``~/.cache/pydags/store``."""
        if self._store is None:
            from pydags.store import DiskStore

            self._store = DiskStore()
        return self._store

    @property
    def last_run(self) -> Run | None:
        """The most recent run, or None."""
        return self.runs[-1] if self.runs else None

    def _plan(self) -> Plan:
        order = self._order()
        stages = {name: self._by_name[name] for name in order}
        for item in stages.values():
            check_settings(item)
        deps = self.dependencies()
        known = self.runs[-1].durations if self.runs else {}
        cost: dict[str, float] = {}
        successors = self.graph.succ
        for name in reversed(order):
            below = max((cost[d] for d in successors[name]), default=0.0)
            cost[name] = below + known.get(name, 1.0)
        inputs = {name: {s.name for s in stage.argument_stages}
                  for name, stage in stages.items()}
        linked = {name: [a.name if isinstance(a, Stage) and a.mapped else None
                         for a in stage.arguments[0]]
                  for name, stage in stages.items() if stage.mapped}
        for name, parents in linked.items():  # in order: a map over a map's items goes
            feeding = [cost[p] for p in parents if p]  # first, each item's chain ends early
            if feeding:
                cost[name] = max(cost[name], max(feeding) + 1e-3)
        names = {id(stage): name for name, stage in stages.items()}
        functions: dict[str, Any] = {}
        for name, stage in stages.items():  # here, on the caller's thread: edited code reloads
            try:
                functions[name] = stage.callable()
            except Exception as exc:  # its edited module no longer imports: the stage fails
                functions[name] = exc
        return Plan(stages, deps, cost, inputs, linked, names, functions)

    def _connect_stores(self, plan: Plan) -> None:
        """Give class stages without a store the pipeline's; check every store is reachable."""
        stores = {}
        for item in plan.stages.values():
            if not item._store_given and not isinstance(item, FunctionStage):
                item._store = self.store  # this pipeline's, also if another one's was set
            if item._store is not None:
                stores[id(item._store)] = item._store
        for store in stores.values():
            store.check()

    def stale(self) -> dict[str, str | None]:
        """For every stage, in order: None when its result for the current code and inputs
        is known (stored by a run with ``cache=True``), else why it would run: "never run",
        "its code changed: `clean` (helpers.py:12)", "argument `threshold` changed: 0.5 →
        0.7", "upstream `load` will run", ... ``start(cache=True)`` runs exactly those.
        Loads no result and runs no stage."""
        from pydags.cache import stale
        from pydags.known import settle

        settle(self.store)
        last = self.last_run
        ran = frozenset(n for n, s in last.status.items() if s.succeeded) if last else frozenset()
        return stale(self.name, self._plan(), self.store, ran)

    def _stale_or_warn(self) -> dict[str, str | None] | None:
        """``stale()`` for a drawing, which goes on without it (with a warning saying why)
        when the store cannot be read."""
        try:
            return self.stale()
        except Exception as exc:
            warnings.warn(f"pipeline {self.name!r}: which stages are stale is not shown: "
                          f"{type(exc).__name__}: {exc}", stacklevel=3)
            return None

    def clear_cache(self) -> int:
        """Delete this pipeline's cached results from its store; returns how many."""
        from pydags.cache import clear
        from pydags.known import settle

        settle(self.store)
        return clear(self.store, self.name)

    def compare(self, before: Run | str, after: Run | str) -> list[dict[str, Any]]:
        """Per stage: seconds in ``before`` and ``after`` (runs, or ids of journaled runs)
        and the change, slowest change first."""
        from pydags.past_runs import load_run
        from pydags.views.timeline import compare_runs

        before, after = (load_run(r) if isinstance(r, str) else r for r in (before, after))
        return compare_runs(before.snapshot(), after.snapshot())

    def history(self, limit: int | None = None) -> Any:
        """This pipeline's journaled runs, newest first, from every session: a pandas
        DataFrame when pandas is installed, else a list of dicts."""
        from pydags.past_runs import history

        return history(self.name, limit=limit)


def _again(pipeline: Pipeline) -> Any:
    """How a run starts its pipeline again, without keeping the pipeline alive."""
    ref = weakref.ref(pipeline)

    def again(**options: Any) -> Run:
        pipeline = ref()
        if pipeline is None:
            raise RuntimeError("this run has no pipeline to run again (it was let go)")
        return pipeline.start(**options)

    return again

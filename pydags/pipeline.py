"""Pipeline: a DAG of stages — build it, check it, draw it, run it."""

from __future__ import annotations

import os
import sys
import threading
from collections import deque
from collections.abc import Iterable
from contextvars import copy_context
from typing import TYPE_CHECKING, Any

import networkx as nx

from pydags.errors import CycleError
from pydags.executors.base import Executor
from pydags.executors.inline import IN_PROCESS
from pydags.run import Event, Run
from pydags.scheduler import Plan, Scheduler
from pydags.stage import FunctionStage, Stage
from pydags.status import StageStatus

if TYPE_CHECKING:
    from matplotlib.figure import Figure

HISTORY = 20  # runs kept in ``pipeline.runs``


class Pipeline:
    """A DAG of stages. Add stages, then ``visualize()`` or ``start()`` it."""

    def __init__(self, name: str | None = None, stages: Iterable[Stage] = (), *,
                 store: Any = None):
        self.name = name or "pipeline"
        self._store = store
        self._stages: dict[str, Stage] = {}
        self._graph: nx.DiGraph | None = None
        self._drawing: Any = None
        self.runs: deque[Run] = deque(maxlen=HISTORY)
        self.add_stages(*stages)

    # --- building ------------------------------------------------------------
    def add_stages(self, *stages: Stage | Iterable[Stage]) -> Pipeline:
        """Add stages (a list, or several arguments) and every stage they depend on."""
        given: list[Any] = []
        for item in stages:
            given.extend(item if isinstance(item, (list, tuple, set, frozenset)) else [item])
        for position, item in enumerate(given):
            if not isinstance(item, Stage):
                hint = " (call it: load(), not load)" if callable(item) else ""
                raise TypeError(f"add_stages() takes stages; item {position} is a "
                                f"{type(item).__name__}: {item!r}{hint}")
        found: dict[str, Stage] = dict(self._stages)
        stack = list(reversed(given))
        seen: set[int] = {id(s) for s in found.values()}
        while stack:
            item = stack.pop()
            if id(item) in seen:
                continue
            seen.add(id(item))
            other = found.get(item.name)
            if other is not None and other is not item:
                raise ValueError(
                    f"two different stages are named {item.name!r} in pipeline {self.name!r}; "
                    f"give one another name with .named(), e.g. {item.name}(...).named("
                    f"'{item.name}_2')")
            found[item.name] = item
            stack.extend(reversed(item.dependencies))
        self._stages = found
        self._graph = None
        self._drawing = None
        self.graph  # noqa: B018  (build and check it now, so errors show at once)
        return self

    @property
    def stages(self) -> list[Stage]:
        """The stages, in a topological order (every stage after its dependencies)."""
        return [self._stages[name] for name in self._order()]

    def __getitem__(self, name: str) -> Stage:
        try:
            return self._stages[name]
        except KeyError:
            raise KeyError(f"pipeline {self.name!r} has no stage {name!r}; it has: "
                           f"{', '.join(self._stages) or 'no stages'}") from None

    def __contains__(self, item: object) -> bool:
        if isinstance(item, Stage):
            return self._stages.get(item.name) is item
        return item in self._stages

    def __len__(self) -> int:
        return len(self._stages)

    def __iter__(self):
        return iter(self.stages)

    def __repr__(self) -> str:
        edges = self.graph.number_of_edges()
        return f"<Pipeline {self.name!r}: {len(self)} stages, {edges} dependencies>"

    @property
    def graph(self) -> nx.DiGraph:
        """A ``networkx.DiGraph`` of stage names, an edge from each dependency to its stage."""
        if self._graph is None:
            graph = nx.DiGraph()
            graph.add_nodes_from(self._stages)
            for name, item in self._stages.items():
                graph.add_edges_from((dep.name, name) for dep in item.dependencies)
            if not nx.is_directed_acyclic_graph(graph):
                cycle = [edge[0] for edge in nx.find_cycle(graph)]
                raise CycleError(cycle)
            self._graph = graph
        return self._graph

    def _order(self) -> list[str]:
        return list(nx.topological_sort(self.graph))

    def dependencies(self) -> dict[str, set[str]]:
        """Stage name to the names of the stages it waits for."""
        return {name: set(self.graph.predecessors(name)) for name in self._stages}

    # --- drawing -------------------------------------------------------------
    def visualize(self, ax: Any = None, status: Any = None, *, layout: str = "layered",
                  figsize: tuple[float, float] | None = None) -> Figure:
        """Draw the DAG left to right with matplotlib; ``status`` (or a run) colours stages."""
        from pydags.draw import Drawing

        drawing = Drawing(self.graph, ax=ax, layout=layout, figsize=figsize)
        if status is not None:
            drawing.update(status.status if isinstance(status, Run) else status)
        return drawing.figure

    def _repr_png_(self) -> bytes:
        from pydags.draw import Drawing, figure_png

        last = self.runs[-1].status if self.runs else None
        drawing = Drawing(self.graph)
        if last:
            drawing.update(last)
        return figure_png(drawing.figure)

    def widget(self, num_cores: int = 2) -> Any:
        """A live ipywidgets view of this pipeline: DAG, progress, stage details, Run/Cancel."""
        from pydags.widget import PipelineWidget

        widget = PipelineWidget(self, num_cores=num_cores)
        if self.last_run is not None:
            widget.attach(self.last_run)
        return widget

    # --- running -------------------------------------------------------------
    def start(
        self,
        num_cores: int = 1,
        *,
        executor: Any = None,
        block: bool = True,
        show: bool | None = None,
        raise_on_error: bool = True,
        fail_fast: bool = False,
        resume: bool = False,
        cache: bool = False,
        on_event: Any = None,
    ) -> Run:
        """Run the pipeline; returns the run result (or, with ``block=False``, its handle).

        ``num_cores``: stages at once (1 runs here, in this process; -1 uses every core).
        ``executor``: a ``dask.distributed.Client`` or a scheduler address
        (``"tcp://host:8786"``) to run the stages on that cluster.
        ``show``: display the live widget (default: in a notebook). ``fail_fast``: cancel the
        rest at the first failure. ``resume``: keep the stages that succeeded in the last run
        and rerun only the others. ``cache``: reuse results stored by earlier runs for the
        stages whose code and inputs did not change, and store the new ones.
        ``on_event``: a function called with every status change.
        Raises ``PipelineError`` when a stage failed, unless ``raise_on_error=False``.
        """
        cores = _check_cores(num_cores)
        if not self._stages:
            raise ValueError(f"pipeline {self.name!r} has no stages; add some with add_stages()")
        plan = self._plan()
        self._connect_stores(plan)
        run = Run(self.name, list(plan.stages), plan.dependencies)
        run._raise_on_error = raise_on_error
        chosen = self._executor(executor, cores, plan)
        reused = self._resumed(plan) if resume else {}
        if cache:
            from pydags import cache as caching

            prints = caching.fingerprints(plan)
            reused = caching.cached_results(self, prints) | reused
            run.subscribe(caching.remember_results(self, run, prints))
        widget = self._show(run, cores) if (show is None and _in_notebook()) or show else None
        if widget is None and block:  # a background run's prints would land anywhere
            run.subscribe(_echo_worker_output(run))
        if on_event is not None:
            run.subscribe(on_event)
        scheduler = Scheduler(plan, chosen, run, fail_fast=fail_fast, cached=reused)
        self.runs.append(run)
        if block:
            try:
                scheduler.execute()
            finally:
                run._finished.set()
            if raise_on_error:
                run.raise_for_failures()
            return run
        run._thread = threading.Thread(target=copy_context().run, args=(_execute, scheduler, run),
                                       name=f"pydags-{self.name}", daemon=True)
        run._thread.start()
        return run

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
        stages = {name: self._stages[name] for name in order}
        deps = self.dependencies()
        known = self.runs[-1].durations if self.runs else {}
        cost: dict[str, float] = {}
        for name in reversed(order):
            below = max((cost[d] for d in self.graph.successors(name)), default=0.0)
            cost[name] = below + known.get(name, 1.0)
        return Plan(stages, deps, cost)

    def _connect_stores(self, plan: Plan) -> None:
        """Give class stages without a store the pipeline's; check every store is reachable."""
        stores = {}
        for item in plan.stages.values():
            if item._store is None and not isinstance(item, FunctionStage):
                item._store = self.store
            if item._store is not None:
                stores[id(item._store)] = item._store
        for store in stores.values():
            store.check()

    def clear_cache(self) -> int:
        """Delete this pipeline's cached results from its store; returns how many."""
        from pydags.cache import clear

        return clear(self)

    def _executor(self, executor: Any, cores: int, plan: Plan) -> Executor:
        if executor is not None:
            if isinstance(executor, Executor):
                return executor
            if cores != 1:
                raise ValueError("num_cores cannot be combined with a Dask executor: the "
                                 "cluster's workers and threads set how many stages run at "
                                 "once; leave num_cores out")
            from pydags.executors.dask import DaskExecutor

            return DaskExecutor(executor)
        if cores == 1:
            from pydags.executors.inline import InlineExecutor

            return InlineExecutor()
        from pydags.executors.process import ProcessExecutor

        return ProcessExecutor(min(cores, len(plan.stages)))

    def _resumed(self, plan: Plan) -> dict[str, Any]:
        """The results of the stages that succeeded in the last run."""
        last = self.last_run
        if last is None:
            raise ValueError(f"resume=True: pipeline {self.name!r} has no earlier run "
                             "in this session; start it once first")
        return {n: last.results[n] for n, s in last.status.items()
                if s.succeeded and n in plan.stages and n in last.results}

    def _show(self, run: Run, num_cores: int) -> Any:
        from pydags.widget import PipelineWidget

        widget = PipelineWidget(self, num_cores=num_cores)
        widget.attach(run)
        widget.show()
        return widget

    def compare(self, before: Run, after: Run) -> list[dict[str, Any]]:
        """Per stage: seconds in ``before`` and ``after`` and the change, slowest change first."""
        from pydags.timeline import compare_runs

        return compare_runs(before, after)


def _execute(scheduler: Scheduler, run: Run) -> None:
    try:
        scheduler.execute()
    except BaseException as exc:  # kept for wait() to raise in the caller's thread
        run._interrupted = exc
    finally:
        run._finished.set()


def _check_cores(num_cores: Any) -> int:
    if isinstance(num_cores, bool) or not isinstance(num_cores, int):
        raise TypeError(f"num_cores must be a whole number, not {num_cores!r}")
    if num_cores == -1:
        return os.cpu_count() or 1
    if num_cores < 1:
        raise ValueError(f"num_cores must be 1 or more (or -1 for every core), not {num_cores}")
    return num_cores


def _in_notebook() -> bool:
    shell = sys.modules.get("IPython") and sys.modules["IPython"].get_ipython()
    return bool(shell) and type(shell).__name__ == "ZMQInteractiveShell"


def _echo_worker_output(run: Run):
    """Print what a worker stage printed once it ends (in-process stages print live)."""

    def echo(event: Event) -> None:
        if event.status in (StageStatus.DONE, StageStatus.FAILED, StageStatus.RETRYING):
            record = run.stage_records[event.stage]
            if record.output and record.worker != IN_PROCESS:
                sys.stdout.write(record.output)
                sys.stdout.flush()

    return echo

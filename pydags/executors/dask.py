"""Run stages on a Dask distributed cluster, results kept on the workers.

Each stage attempt becomes one Dask task whose arguments hold the futures of its upstream
stages, so Dask moves data from worker to worker. A mapped stage's items go in batches, a
task each; their results stay on the workers, and the stages taking them (a map over a map
included) get them from there. The executor *pipelines*: the scheduler
hands it a stage as soon as its dependencies are submitted, and Dask starts the task the
moment its inputs exist. Each task reports how it ended (``dask_task``): its failure, or
its result when small, comes with that report; a large result is left on the cluster until
it is read, held by its future (when the client outlives the run: one pydags opened from an
address closes with it, so it fetches them).
A task that ends without a report (its worker died and Dask gave up on it) is found
within ``CHECK_SECONDS``. Retries, skipping and statuses stay with the scheduler, as for
every executor.

What Dask cannot do: stop a running task. A stage past its timeout is FAILED at once,
but its thread runs to the end on the worker; cancel releases queued and running tasks
the same way.
"""

from __future__ import annotations

import dataclasses
import itertools
import queue
import time
import uuid
from typing import Any

import cloudpickle

from pydags.calls import SentFunction, StageCall
from pydags.errors import LostResult
from pydags.executors.base import Executor
from pydags.executors.batch import ItemBatch
from pydags.protocol import ErrorKind, Job, Outcome, StageError, Started
from pydags.results import Remote

try:
    from dask._task_spec import TaskRef, parse_input
    from distributed import Client, Future

    from pydags.executors.dask_task import (
        Attempt,
        StageFailed,
        StageTask,
        join_items,
        take_items,
    )
except ImportError:  # pragma: no cover - exercised only without the extra
    Client = None


CHECK_SECONDS = 0.5  # how often the tasks that have not reported are looked at for crashes
_MISSING = object()


class DaskExecutor(Executor):
    """Submit stages to a ``distributed.Client`` (or a scheduler address)."""

    pipelines = True
    capacity = 1 << 30  # the cluster decides how many tasks run at once

    def __init__(self, cluster: Any):
        if Client is None:
            raise ImportError("running on Dask needs the dask extra: "
                              "pip install 'pydags[dask]'")
        if isinstance(cluster, str):
            self.client, self._owns_client = Client(cluster), True
        elif isinstance(cluster, Client):
            self.client, self._owns_client = cluster, False
        else:
            raise TypeError("executor= takes a dask.distributed Client or a scheduler address "
                            f"such as 'tcp://host:8786', not {type(cluster).__name__}")
        self.topic = f"pydags-{uuid.uuid4().hex}"
        self._futures: dict[str, Future] = {}  # stage name -> future of its current attempt
        self._sent: dict[int, SentFunction] = {}  # a function's by-value form, made once
        self._unsent: dict[str, Job] = {}  # task key -> job, until the next poll sends it
        self._keys: dict[str, str] = {}  # stage name -> task key of its current attempt
        self._count = itertools.count()
        self._news: queue.Queue[list[dict]] = queue.Queue()  # workers' reports
        # task key -> (stage, attempt) of the tasks sent that have not reported their end
        self._unreported: dict[str, tuple[str, int]] = {}
        self._checked = time.monotonic()  # when those were last looked for crashes
        self._batches: dict[str, ItemBatch] = {}  # task key -> the batch of items it runs
        # mapped stage -> (first item, items, future) of each batch that ran: where the
        # items' results stay until the stages taking them fetch them
        self._items: dict[str, list[tuple[int, int, Future]]] = {}
        self._threads: int | None = None  # the cluster's, for sizing batches of items

    def start(self) -> None:
        self.client.subscribe_topic(self.topic, self._on_report)

    def submit(self, job: Job) -> None:
        # Jobs wait here until the next poll, so that each burst reaches Dask's scheduler
        # as one graph: a task at a time costs Dask more than the task itself.
        key = f"{_prefix(job.function)}-{next(self._count)}-{job.name}-{job.attempt}-{self.topic}"
        self._unsent[key] = job
        self._keys[job.name] = key
        self._futures.pop(job.name, None)  # an earlier attempt's

    def upstream(self, name: str, results: dict[str, Any]) -> Any:
        if name in self._items:  # a map's results, joined on a worker from its batches'
            return self.client.submit(join_items, len(results[name]), self._items[name],
                                      pure=False)
        if name in self._futures:
            return self._futures[name]
        if name in self._keys:  # in the same burst: a reference within its graph
            return TaskRef(self._keys[name])
        return results[name]

    def items(self, name: str, items: range, values: list[Any]) -> Any:
        parts = [(first, count, future) for first, count, future in self._items.get(name, ())
                 if first < items.stop and first + count > items.start]
        if not parts:
            return super().items(name, items, values)
        return self.client.submit(take_items, items.start, items.stop, parts, pure=False)

    def _send(self) -> None:
        if not self._unsent:
            return
        graph = {}
        for key, job in self._unsent.items():
            # Dask resolves upstream futures inside the arguments on the worker. Workers
            # elsewhere may lack the stage's module: the function goes by value.
            function = self._by_value(job.function)
            if isinstance(function, ItemBatch):
                function = dataclasses.replace(function, function=self._by_value(function.function))
                self._batches[key] = function
            bare = Job(job.name, function, (), {}, job.attempt, job.timeout)
            graph[key] = StageTask(key, Attempt(key, self.topic, bare), parse_input(job.kwargs),
                              *map(parse_input, job.args))
        futures = self.client.get(graph, list(graph), sync=False)
        for (key, job), future in zip(self._unsent.items(), futures, strict=True):
            self._futures[job.name] = future
            self._unreported[key] = (job.name, job.attempt)
        self._unsent.clear()

    def _by_value(self, function: Any) -> Any:
        if not isinstance(function, StageCall):
            return function
        sent = self._sent.get(id(function.function))
        if sent is None:  # pickled once per run, loaded once per worker process
            sent = SentFunction(StageCall(function.function, by_reference=False))
            self._sent[id(function.function)] = sent
        return sent

    @property
    def parallelism(self) -> int:
        if self._threads is None:  # asked of the scheduler once per run
            self._threads = max(1, sum(self.client.nthreads().values()))
        return self._threads

    def poll(self, timeout: float) -> list[Started | Outcome]:
        self._send()
        sent: list[list[dict]] = []  # each, the reports a worker sent together
        try:
            sent.append(self._news.get(timeout=timeout))
            while True:
                sent.append(self._news.get_nowait())
        except queue.Empty:
            pass
        news: list[Started | Outcome] = []
        for report in itertools.chain.from_iterable(sent):
            if self._keys.get(report["name"]) != report["key"]:
                continue  # an attempt withdrawn or cancelled since
            if report["kind"] == "started":
                news.append(Started(report["name"], report["attempt"], report["worker"],
                                    report["time"]))
                continue
            if not report["announced"]:  # a quick stage: its start comes with its end
                news.append(Started(report["name"], report["attempt"], report["worker"],
                                    report["start"]))
            news.append(self._ended(report))
        if time.monotonic() - self._checked >= CHECK_SECONDS:
            news += self._crashed()
        return news

    def cancel(self, names: set[str]) -> None:
        for name in names:
            key = self._keys.pop(name, "")
            self._unsent.pop(key, None)
            self._unreported.pop(key, None)
        futures = [self._futures.pop(n) for n in names if n in self._futures]
        if futures:
            self.client.cancel(futures)

    def shutdown(self) -> None:
        self.client.unsubscribe_topic(self.topic)
        pending = [f for f in self._futures.values() if not f.done()]
        if pending:
            self.client.cancel(pending)
        held = [*self._futures.values(),
                *(future for parts in self._items.values() for *_, future in parts)]
        self._futures.clear()
        self._items.clear()
        self._unreported.clear()
        if self._owns_client:
            self.client.close()
        else:  # let go of them on the client's event loop in one call: from another
            self.client.loop.add_callback(held.clear)  # thread, each would wake it

    # --- news from the cluster --------------------------------------------------
    def _on_report(self, event: tuple[float, list[dict]]) -> None:
        """A worker's reports, on the client's event loop (where Dask's own work waits for
        any Python run here): read on the scheduler's thread."""
        self._news.put(event[1])

    def _crashed(self) -> list[Outcome]:
        """The failures of tasks that ended without a report: their worker died (Dask
        gave up on them), or Dask could not run them. Looked for every ``CHECK_SECONDS``,
        not with a callback per task: each costs the client a wake-up and a thread hop."""
        self._checked = time.monotonic()
        crashed = []
        for key, (name, attempt) in list(self._unreported.items()):
            future = self._futures.get(name)
            if future is None or future.key != key or future.status != "error":
                continue
            try:
                future.result()
            except StageFailed:
                continue  # a stage's own failure (its report comes), or its upstream's
            except Exception as exc:
                del self._unreported[key]
                now = time.time()
                crashed.append(Outcome(name, attempt, False, start=now, end=now, error=StageError(
                    ErrorKind.CRASH,
                    f"Dask could not run stage {name!r}: {type(exc).__name__}: {exc}")))
        return crashed

    def _ended(self, report: dict) -> Outcome:
        name, attempt = report["name"], report["attempt"]
        self._unreported.pop(report["key"], None)
        times = dict(output=report["output"], worker=report["worker"], start=report["start"],
                     end=report["end"])
        if report["error"] is not None:
            return Outcome(name, attempt, False, error=cloudpickle.loads(report["error"]),
                           **times)
        future, small = self._futures.get(name), report["value"]
        try:
            if small is not None:
                value = cloudpickle.loads(small)
            elif self._owns_client or report["key"] in self._batches:  # needed here at once
                value = future.result()
            else:  # stays on the cluster until it is read (the client outlives the run)
                value = OnCluster(future, name, report["preview"])
        except Exception as exc:  # a lost worker, a result that cannot travel
            now = time.time()
            return Outcome(name, attempt, False, start=now, end=now, error=StageError(
                ErrorKind.CRASH, f"the result of stage {name!r} could not be fetched: "
                f"{type(exc).__name__}: {exc}"))
        batch = self._batches.pop(report["key"], None)
        if batch is not None:
            self._items.setdefault(batch.stage, []).append(
                (batch.first, len(value.values), future))
        return Outcome(name, attempt, True, value=value, **times)


class OnCluster(Remote):
    """A stage's result too large to come with its task's report: it stays on the Dask
    cluster, held by its future, and is fetched the first time it is read here."""

    def __init__(self, future: Any, stage: str, preview: str):
        self.future, self.stage, self.preview = future, stage, preview
        self._value: Any = _MISSING

    def value(self) -> Any:
        if self._value is _MISSING:
            try:
                self._value = self.future.result()
            except Exception as exc:  # the worker holding it left, the client closed
                raise LostResult(f"the result of stage {self.stage!r} could not be fetched "
                                 f"from the Dask cluster: {type(exc).__name__}: {exc}. Run "
                                 "the pipeline again (start(resume=True) reruns only what "
                                 "is missing)") from None
            self.future = None  # fetched: the cluster may let it go
        return self._value

    def __reduce__(self) -> tuple:
        return _same, (self.value(),)

    def __repr__(self) -> str:
        where = "fetched" if self._value is not _MISSING else "on the Dask cluster"
        return f"<result of stage {self.stage!r}, {where}>"


def _prefix(function: Any) -> str:
    """What a stage's task key starts with: its function's name, under which Dask groups
    tasks (its dashboard shows them so), as it does a collection's. A name per stage would
    cost Dask's scheduler and workers, which tally tasks by that name, more at every step
    of every task the more stages there are."""
    inner = getattr(function, "function", function)  # a batch of items' call
    inner = getattr(inner, "function", inner)  # a call's function
    return getattr(inner, "__name__", type(inner).__name__)


def _same(value: Any) -> Any:
    return value

"""Run stages on a Dask distributed cluster: the whole graph at once, results kept on workers.

Every stage becomes one Dask task whose arguments are the futures of its upstream stages,
so Dask moves data from worker to worker and starts a task the moment its inputs exist.
A task tells the client when each attempt starts and how it ended through Dask's event
topics; its result (or failure) arrives through the future.

What Dask cannot do: stop a running task. A stage past its timeout is FAILED at once,
but its thread runs to the end on the worker; cancel releases queued and running tasks
the same way.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
import uuid
from typing import Any

from pydags.executors.attempt import execute
from pydags.executors.base import Executor, Job, Outcome, StageError, Started
from pydags.stage import StageCall

try:
    from distributed import Client, Future, get_worker
except ImportError:  # pragma: no cover - exercised only without the extra
    Client = None


class StageFailed(Exception):
    """A stage's last attempt failed on a Dask worker; carries what the scheduler needs."""

    def __init__(self, error: StageError, outcome: dict):
        super().__init__(error.message)
        self.error, self.outcome = error, outcome

    def __reduce__(self):
        return (StageFailed, (self.error, self.outcome))


class DaskExecutor(Executor):
    """Submit a pipeline to a ``distributed.Client`` (or a scheduler address)."""

    eager = True
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
        self._futures: dict[str, Future] = {}
        self._news: queue.Queue[Started | Outcome] = queue.Queue()
        self._values: dict[str, tuple[Any, int]] = {}
        self._reports: dict[str, dict] = {}
        self._lock = threading.Lock()

    def start(self) -> None:
        self.client.subscribe_topic(self.topic, self._on_report)

    def handle(self, name: str) -> Any:
        return self._futures[name]

    def submit(self, job: Job) -> None:
        # Upstream futures inside the arguments are resolved by Dask on the worker; those
        # of .after() dependencies are passed too, so Dask waits for them.
        # Workers elsewhere may lack the stage's module: send the function by value.
        function = job.function
        if isinstance(function, StageCall):
            function = StageCall(function.function, by_reference=False)
        bare = dataclasses.replace(job, function=function, args=(), kwargs={})
        waits = [self._futures[name] for name in job.upstream]
        future = self.client.submit(run_on_worker, self.topic, bare, list(job.args),
                                    dict(job.kwargs), waits,
                                    key=f"{job.name}-{uuid.uuid4().hex}", pure=False)
        self._futures[job.name] = future
        future.add_done_callback(lambda f, name=job.name: self._on_done(name, f))

    def poll(self, timeout: float) -> list[Started | Outcome]:
        news = []
        try:
            news.append(self._news.get(timeout=timeout))
            while True:
                news.append(self._news.get_nowait())
        except queue.Empty:
            return news

    def cancel(self, names: set[str]) -> None:
        futures = [self._futures[n] for n in names if n in self._futures]
        if futures:
            self.client.cancel(futures)

    def shutdown(self) -> None:
        self.client.unsubscribe_topic(self.topic)
        pending = [f for f in self._futures.values() if not f.done()]
        if pending:
            self.client.cancel(pending)
        self._futures.clear()
        if self._owns_client:
            self.client.close()

    # --- news from the cluster --------------------------------------------------
    def _on_report(self, event: tuple[float, dict]) -> None:
        report = event[1]
        if report["kind"] == "started":
            self._news.put(Started(report["name"], report["attempt"], report["worker"],
                                   report["time"]))
            return
        with self._lock:  # the value may come before or after this report
            self._reports[report["name"]] = report
            self._deliver(report["name"])

    def _on_done(self, name: str, future: Future) -> None:
        if future.status == "cancelled":
            return
        try:
            value = future.result()
        except StageFailed as failure:
            self._news.put(Outcome(name, ok=False, error=failure.error, **failure.outcome))
            return
        except Exception as exc:  # lost worker, cancelled upstream, unpicklable result
            now = time.time()
            self._news.put(Outcome(name, 0, False, start=now, end=now, error=StageError(
                "crash", f"Dask could not run stage {name!r}: {type(exc).__name__}: {exc}")))
            return
        with self._lock:
            self._values[name] = value
            self._deliver(name)

    def _deliver(self, name: str) -> None:
        if name in self._values and name in self._reports:
            report = self._reports.pop(name)
            self._news.put(Outcome(name, report["attempt"], True, value=self._values.pop(name),
                                   output=report["output"], worker=report["worker"],
                                   start=report["start"], end=report["end"]))


def run_on_worker(topic: str, job: Job, args: list, kwargs: dict, _upstream: list) -> Any:
    """The Dask task of one stage: attempts with retries and timeout, reported as events."""
    worker = get_worker()
    for attempt in range(1, job.retries + 2):
        worker.log_event(topic, dict(kind="started", name=job.name, attempt=attempt,
                                     worker=worker.address, time=time.time()))
        attempt_job = Job(job.name, job.function, tuple(args), kwargs, attempt=attempt)
        outcome = _with_timeout(attempt_job, job.timeout)
        if outcome.ok:
            worker.log_event(topic, dict(kind="ended", name=job.name, attempt=attempt,
                                         worker=worker.address, start=outcome.start,
                                         end=outcome.end, output=outcome.output))
            return outcome.value
        if attempt <= job.retries:
            time.sleep(job.retry_delay)
    assert outcome.error is not None
    outcome.error.exception = None  # the text travels; the object may not pickle
    raise StageFailed(outcome.error, dict(attempt=outcome.attempt, output=outcome.output,
                                          worker=worker.address, start=outcome.start,
                                          end=outcome.end))


def _with_timeout(job: Job, timeout: float | None) -> Outcome:
    if timeout is None:
        return execute(job)
    box: list[Outcome] = []
    thread = threading.Thread(target=lambda: box.append(execute(job)), daemon=True)
    start = time.time()
    thread.start()
    thread.join(timeout)
    if box:
        return box[0]
    return Outcome(job.name, job.attempt, False, start=start, end=time.time(), error=StageError(
        "timeout", f"stage {job.name!r} timed out after {timeout:g} s on Dask (the worker "
        "cannot stop it: its thread runs on and its result is dropped)"))

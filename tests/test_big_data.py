"""Big results move once: through shared memory, never copied through the driver."""

from __future__ import annotations

import gc
import os

import numpy
import pytest
from workload import array_sum, big_array, big_bytes, bytes_info, pass_along

from pydags.executors import buffers
from pydags.executors.kept import Kept
from pydags.known import settle
from pydags.pipeline import Pipeline

pytestmark = pytest.mark.usefixtures("no_orphans")


def anonymous() -> int:
    """Bytes of this process's own memory (a copy would be; pages it only maps are not)."""
    with open("/proc/self/smaps_rollup") as rollup:
        for line in rollup:
            if line.startswith("Anonymous:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no Anonymous line in /proc/self/smaps_rollup")


def shared_files() -> list[str]:
    return os.listdir(buffers.folder())


def test_a_big_array_reaches_two_consumers_without_the_driver_copying_it():
    size = 64  # megabytes
    expected = float(numpy.arange(size * (1 << 20) // 8, dtype=numpy.float64).sum())
    data = big_array(size)
    pipeline = Pipeline().add_stages(array_sum(data).named("a"), array_sum(data, 1).named("b"))
    before = anonymous()
    run = pipeline.start(num_cores=2)
    settle()  # the result persisted, written from the pages it shares with the workers
    grown = anonymous() - before
    assert run.results["a"] == (expected, False)  # read-only in the consumers, as in Ray
    assert run.results["b"] == (expected + 1, False)
    assert grown < size * (1 << 20) / 2, f"the driver made {grown >> 20} MB of copies"
    result = run.results["big_array"]
    assert result.shape == (size * (1 << 20) // 8,) and not result.flags.writeable
    assert len(shared_files()) == 1  # the one result, shared by everyone
    del run, result
    pipeline.runs.clear()
    settle()  # its results persisted: the keeper no longer holds them
    gc.collect()
    assert shared_files() == []  # gone once nothing holds the result


def test_an_array_passed_along_a_chain_stays_in_its_worker_until_read():
    stages = [big_array(16)]
    for i in range(5):
        stages.append(pass_along(stages[-1]).named(f"hop{i}"))
    run = Pipeline().add_stages(stages).start(num_cores=2)
    assert len({run.stage_records[s.name].worker for s in stages}) == 1  # sent to its data
    assert shared_files() == []  # nothing was copied on the way
    assert isinstance(run.results.held("hop4"), Kept)
    assert "shape (2097152,) dtype float64" in run.results.preview("hop4")
    assert run.results["hop4"].sum() == float(numpy.arange(2097152).sum())
    assert len(shared_files()) == 1  # read: written once, mapped here
    del run
    settle()  # its results persisted: the keeper no longer holds them
    gc.collect()
    assert shared_files() == []


def test_an_array_given_as_an_argument_goes_through_shared_memory_and_is_deleted_after():
    given = numpy.ones(3 * (1 << 20) // 8)
    run = Pipeline().add_stages(array_sum(given)).start(num_cores=2)
    assert run.results["array_sum"] == (float(given.sum()), False)
    settle()  # its results persisted: the keeper no longer holds them
    gc.collect()
    assert shared_files() == []


def test_the_garbage_collector_may_close_a_mapping_while_the_registry_is_locked():
    # A finalizer runs wherever the collector does, maybe inside the registry's lock.
    with buffers._lock:
        buffers._forget(0, os.path.join(buffers.folder(), "never-written"))
    with buffers._lock:
        buffers._purge()


@pytest.mark.parametrize("kind", [bytes, bytearray])
def test_large_bytes_reach_two_consumers_through_shared_memory_as_what_they_are(kind):
    size = 32  # megabytes
    data = big_bytes(size, kind)
    pipeline = Pipeline().add_stages(bytes_info(data).named("a"), bytes_info(data).named("b"))
    before = anonymous()
    run = pipeline.start(num_cores=2)
    settle()
    grown = anonymous() - before
    for name in "ab":
        assert run.results[name] == (kind.__name__, size << 20, kind(b"\x01\x01"))
    assert grown < (size << 20) / 2, f"the driver made {grown >> 20} MB of copies"
    assert len(shared_files()) == 1  # written once, by the worker that made it
    result = run.results["big_bytes"]
    assert type(result) is kind and result == kind(b"\x01" * (size << 20))
    assert run.results["big_bytes"] is result
    assert f"{kind.__name__} of 33,554,432 bytes" in run.results.preview("big_bytes")

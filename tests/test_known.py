"""Results known before a run and kept for the runs after it: the keeper stores them off the
scheduler's thread; a result kept in a worker is written by that worker."""

from __future__ import annotations

import numpy
import pytest
from workload import array_sum, big_array

from pydags import Pipeline, Stage, StageStatus
from pydags.known import settle
from pydags.store import DiskStore


def test_a_result_kept_in_a_worker_is_stored_by_that_worker_not_brought_here(tmp_path):
    store = DiskStore(tmp_path)
    build = lambda: Pipeline("kept", store=store).add_stages(array_sum(big_array(16)))  # noqa: E731
    run = build().start(num_cores=2, cache=True)
    held = run.results.held("big_array")
    assert type(held).__name__ == "Kept"  # one stage takes it: it stayed in its worker
    settle(store)
    assert held.worker is not None and held.on(held.worker)  # never fetched here
    again = build().start(num_cores=2, cache=True)
    assert again.status == {"big_array": StageStatus.CACHED, "array_sum": StageStatus.CACHED}
    value = again.results["big_array"]
    assert numpy.array_equal(value, numpy.arange(16 * (1 << 20) // 8, dtype=numpy.float64))
    assert value.flags.writeable  # as any unpickled array is
    assert again.results["array_sum"] == run.results["array_sum"]


def test_results_are_stored_in_the_background_and_read_once_stored(tmp_path):
    store = DiskStore(tmp_path)
    pipeline = Pipeline("later", store=store).add_stages(array_sum(big_array(4)))
    pipeline.start(num_cores=1, cache=True)
    assert pipeline.stale() == {"big_array": None, "array_sum": None}  # waits for them
    assert pipeline.start(num_cores=1, cache=True).counts()[StageStatus.CACHED] == 2


class Scaled(Stage):
    def __init__(self, factor, source):
        super().__init__(source)
        self.factor = factor

    def run(self, values):
        return [v * self.factor for v in values]


def test_a_class_stages_cache_key_reads_the_attributes_its_init_sets_and_nothing_else(tmp_path):
    store = DiskStore(tmp_path)

    def start(factor, **later):
        scaled = Scaled(factor, [1, 2])
        for name, value in later.items():
            setattr(scaled, name, value)
        return Pipeline("scaled", store=store).add_stages(scaled).start(cache=True)

    assert start(2).results["Scaled"] == [2, 4]
    assert start(2, _progress=object(), note="set after").status["Scaled"] is StageStatus.CACHED
    changed = start(3)
    assert changed.results["Scaled"] == [3, 6]
    assert changed.stage_records["Scaled"].cache == (
        "runs again: attribute `factor` changed: 2 → 3")


def test_a_result_that_cannot_be_pickled_is_not_cached_and_one_warning_names_its_stage(tmp_path):
    from workload import unpicklable_result

    pipeline = Pipeline("lock", store=DiskStore(tmp_path)).add_stages(unpicklable_result())
    said = "the result of stage 'unpicklable_result' was not kept"
    with pytest.warns(UserWarning, match=said) as seen:
        pipeline.start(cache=True)
        settle()
    assert len([w for w in seen if said in str(w.message)]) == 1
    assert pipeline.stale()["unpicklable_result"].startswith("its last result was not kept")

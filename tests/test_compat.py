"""Code written for the published pydags 0.1 runs unchanged."""

from __future__ import annotations

import diskcache
import pytest

import pydags
from pydags.pipeline import Pipeline
from pydags.stage import DiskCacheStage


class Produce(DiskCacheStage):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)

    def run(self, *args, **kwargs):
        self.disk_cache.set("scratch", "temporary")
        self.write("numbers", [1, 2, 3])


class Consume(DiskCacheStage):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)

    def run(self, *args, **kwargs):
        self.delete("scratch")
        return sum(self.read("numbers")) + len(self.disk_cache)


@pytest.mark.parametrize("cores", [None, 1, 2])
def test_the_01_readme_example_with_add_stage_disk_cache_and_delete(tmp_path, cores,
                                                                   no_orphans):
    cache = diskcache.Cache(str(tmp_path / "cache"))
    produce = Produce(cache=cache)
    consume = Consume(cache=cache).after(produce)
    pipeline = Pipeline()
    pipeline.add_stage(produce)
    pipeline.add_stage(consume)
    assert consume.preceding_stages == [produce]
    assert pipeline.topological_sort_grouped() == [["Produce"], ["Consume"]]
    run = pipeline.start(num_cores=cores)
    assert run.results["Consume"] == 6 + 1  # "scratch" was deleted: one key is left
    assert "scratch" not in cache


def test_the_01_names_of_errors_and_run_stage(tmp_path):
    from workload import clean, load

    with pytest.raises(pydags.DAGVerificationException):
        a, b = load(), clean([1])
        Pipeline().add_stages(a.after(b), b.after(a))
    with pytest.raises(pydags.InvalidStageTypeException, match="item 0"):
        Pipeline().add_stage("not a stage")
    assert Pipeline(store=pydags.DiskStore(tmp_path)).add_stage(clean(load())).run_stage(
        "clean") == [1, 2, 3]


def test_the_01_exceptions_import_from_pipeline_and_keep_their_bases():
    from workload import clean, load

    from pydags.pipeline import (
        DAGException,
        DAGVerificationException,
        InvalidStageTypeException,
        StageException,
    )

    with pytest.raises(DAGException):
        a, b = load(), clean([1])
        Pipeline().add_stages(a.after(b), b.after(a))
    assert issubclass(DAGVerificationException, DAGException)
    for bad in (lambda: Pipeline().add_stage(42), lambda: load().after("load")):
        with pytest.raises(StageException):
            bad()
        with pytest.raises(InvalidStageTypeException):
            bad()
        with pytest.raises(TypeError):  # as pydags 0.2 says it
            bad()

"""Caching that is never silently wrong, and says why a stage ran again."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import textwrap

import pytest

from pydags import Stage, StageStatus, stage
from pydags.known import settle
from pydags.pipeline import Pipeline
from pydags.store import DiskStore, UnreadableKey

SOURCE = """
from pydags import stage

SCALE = {scale}

def helper(x):
    return x * {factor}

@stage
def load():
    return 21

@stage
def compute(x):
    return helper(x) * SCALE

@stage
def report(value):
    return f"result {{value}}"
"""


def build(tmp_path, scale=1, factor=2):
    namespace: dict = {}
    exec(SOURCE.format(scale=scale, factor=factor), namespace)
    return Pipeline("cached", store=DiskStore(tmp_path)).add_stages(
        namespace["report"](namespace["compute"](namespace["load"]())))


def notes(run):
    return {name: record.cache for name, record in run.stage_records.items()}


def test_a_change_to_a_helper_or_a_module_constant_runs_the_stage_again(tmp_path):
    first = build(tmp_path).start(cache=True)
    assert first.results["compute"] == 42
    assert set(notes(first).values()) == {"runs: no cached result yet"}
    again = build(tmp_path).start(cache=True)
    assert set(again.status.values()) == {StageStatus.CACHED}
    assert notes(again)["compute"].startswith("cached")
    helper_changed = build(tmp_path, factor=2040).start(cache=True)
    assert helper_changed.results["compute"] == 21 * 2040
    assert helper_changed.status["load"] is StageStatus.CACHED
    assert notes(helper_changed)["compute"] == "runs again: its code changed: `helper` (<string>:6)"
    assert notes(helper_changed)["report"] == "runs again: upstream `compute` changed"
    constant_changed = build(tmp_path, scale=10, factor=2040).start(cache=True)
    assert constant_changed.results["compute"] == 21 * 2040 * 10
    assert notes(constant_changed)["compute"] == (
        "runs again: global `SCALE` changed: 1 → 10")


def test_an_argument_change_is_named_as_the_reason(tmp_path):
    @stage
    def scaled(x):
        return x * 2

    store = DiskStore(tmp_path)
    Pipeline("args", store=store).add_stages(scaled(1)).start(cache=True)
    run = Pipeline("args", store=store).add_stages(scaled(2)).start(cache=True)
    assert run.results["scaled"] == 4
    assert run.stage_records["scaled"].cache == "runs again: argument `x` changed: 1 → 2"
    assert run.records()[0]["cache"] == "runs again: argument `x` changed: 1 → 2"


def add(a, b):
    return a + b


def test_partials_and_builtins_are_cached_by_what_they_are(tmp_path):
    store = DiskStore(tmp_path)

    def once(item):
        return Pipeline("partials", store=store).add_stages(item).start(cache=True)

    assert once(stage(functools.partial(add, 2))(1).named("p")).results["p"] == 3
    assert once(stage(functools.partial(add, 3))(1).named("p")).results["p"] == 4
    assert once(stage(sorted)([3, 1, 2]).named("s")).results["s"] == [1, 2, 3]
    again = once(stage(sorted)([3, 1, 2]).named("s"))
    assert again.status["s"] is StageStatus.CACHED and again.results["s"] == [1, 2, 3]


def test_a_set_argument_hits_the_cache_in_a_later_session(tmp_path):
    script = textwrap.dedent(f"""
        from pydags import Pipeline, stage
        from pydags.store import DiskStore

        @stage
        def size(values):
            return len(values)

        run = Pipeline("sets", store=DiskStore({str(tmp_path)!r})).add_stages(
            size({{"apple", "pear", "plum", "fig", "kiwi"}})).start(cache=True)
        print(run.status["size"].value)
    """)
    seen = []
    for seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=seed,
                   PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                              text=True, timeout=120, cwd=tmp_path)
        seen.append(done.stdout.strip() or done.stderr)
    assert seen == ["done", "cached"]


def test_a_corrupted_cached_result_is_a_miss_that_says_so(tmp_path):
    build(tmp_path).start(cache=True)
    settle()  # results are stored in the background: wait for them before spoiling one
    for path in tmp_path.glob("*.pkl"):
        if "compute" in path.name and "last" not in path.name:
            path.write_bytes(path.read_bytes()[:-1])  # truncated
    with pytest.warns(UserWarning, match="stage 'compute' runs again: its cached result key"):
        run = build(tmp_path).start(cache=True)
    assert run.status["compute"] is StageStatus.DONE and run.results["compute"] == 42
    assert run.stage_records["compute"].cache == "runs again: its cached result could not be read"


def test_a_stage_reading_a_truncated_artifact_is_told_which_and_where(tmp_path):
    class Reader(Stage):
        def run(self):
            return self.read("model")

    store = DiskStore(tmp_path)
    store.set("model", list(range(100)))
    next(tmp_path.glob("model*.pkl")).write_bytes(b"\x80\x05garbage")
    run = Pipeline(store=store).add_stages(Reader()).start(raise_on_error=False)
    error = run.errors["Reader"]
    assert "UnreadableKey" in error and "stage 'Reader'" in error
    assert "key 'model'" in error and str(tmp_path) in error
    with pytest.raises(UnreadableKey):
        store.get("model")


def test_a_very_long_stage_name_can_be_cached(tmp_path):
    long = "x" * 300
    store = DiskStore(tmp_path)
    first = Pipeline("long", store=store).add_stages(stage(sorted)([2, 1]).named(long))
    assert first.start(cache=True).results[long] == [1, 2]
    again = Pipeline("long", store=store).add_stages(stage(sorted)([2, 1]).named(long))
    assert again.start(cache=True).status[long] is StageStatus.CACHED


class Keeper(Stage):
    def run(self):
        self.write("artifact", "kept")


def test_a_class_stage_in_two_pipelines_writes_to_each_ones_store(tmp_path):
    keeper = Keeper()
    first, second = DiskStore(tmp_path / "one"), DiskStore(tmp_path / "two")
    Pipeline("one", store=first).add_stages(keeper).start()
    Pipeline("two", store=second).add_stages(keeper).start()
    assert first.get("artifact") == "kept" and second.get("artifact") == "kept"

"""The core model: stages, data passing, scheduling, failures and bad input."""

from __future__ import annotations

import os
import pickle
import re
import sys
import threading
import time
import types

import cloudpickle
import pytest
from conftest import random_dag
from workload import Named, Scale, add, after_boom, boom, clean, independent, load, total

import pydags
from pydags import PipelineError, Stage, StageStatus
from pydags.errors import CycleError
from pydags.examples import tutorial
from pydags.pipeline import Pipeline
from pydags.stage import stage


def test_calling_a_stage_function_does_not_run_it():
    calls = []

    @stage
    def record():
        calls.append(1)

    s = record()
    assert isinstance(s, Stage) and s.name == "record" and calls == []
    assert record.func() is None and calls == [1]  # the plain function stays callable


def test_tutorial_runs_every_stage_after_its_dependencies_and_in_parallel(no_orphans):
    pipeline = tutorial.build()
    assert len(pipeline) == 6 and pipeline.graph.number_of_edges() == 6
    run = pipeline.start(num_cores=2)
    assert run.ok and set(run.status.values()) == {StageStatus.DONE}
    rec = run.stage_records
    for name in pipeline.graph:
        for dep in pipeline.graph.predecessors(name):
            assert rec[dep].end <= rec[name].start, (dep, name)
    one, two = rec["stage_1"], rec["stage_2"]
    assert one.start < two.end and two.start < one.end  # stage_1 and stage_2 overlapped
    assert run.outputs["stage_1"] == "Running stage 1\n"
    workers = {rec[n].worker for n in rec}
    assert len(workers) == 2 and all(re.fullmatch(r"worker-[12] \(pid \d+\)", w) for w in workers)


def test_results_flow_downstream_positionally_and_by_keyword():
    raw = load()
    rows = clean(raw)
    result = total(rows, offset=total(raw).named("raw_total"))
    pipeline = Pipeline("data")
    pipeline.add_stages(result)  # dependencies come along
    assert {s.name for s in pipeline.stages} == {"load", "clean", "raw_total", "total"}
    for cores in (1, 2):
        run = pipeline.start(num_cores=cores)
        assert run.results["clean"] == [1, 2, 3]
        assert run.results["total"] == 12
    run = Pipeline().add_stages(total(clean(load()), offset=10)).start(num_cores=2)
    assert run.results["total"] == 16


def test_stages_inside_lists_and_dicts_are_resolved():
    @stage
    def combine(parts, named):
        return sum(parts) + named["x"]

    @stage
    def number(n):
        return n

    a, b = number(1).named("a"), number(2).named("b")
    run = Pipeline().add_stages(combine([a, b], {"x": number(10).named("c")})).start(num_cores=2)
    assert run.results["combine"] == 13


def test_class_stages_take_arguments_and_upstream_results():
    scaled = Scale(clean(load()), factor=3)
    pipeline = Pipeline().add_stages(scaled, Named().after(scaled))
    for cores in (1, 2):
        run = pipeline.start(num_cores=cores)
        assert run.results["Scale"] == [3, 6, 9]
        assert run.results["custom_name"] == "named"


def test_failure_skips_descendants_runs_independent_branches_and_raises():
    pipeline = Pipeline("failing").add_stages(after_boom(boom()), independent())
    with pytest.raises(PipelineError) as info:
        pipeline.start(num_cores=2)
    error = info.value
    assert "boom" in str(error) and "no data today" in str(error)
    assert isinstance(error.__cause__, ValueError)
    run = error.run
    assert run.status == {"boom": StageStatus.FAILED, "after_boom": StageStatus.SKIPPED,
                          "independent": StageStatus.DONE}
    assert run.results == {"independent": "still ran"}
    trace = run.errors["boom"]
    assert "in boom" in trace and "ValueError: no data today" in trace
    assert "workload.py" in trace and 'raise ValueError("no data today")' in trace
    assert not frames_of_the_package(trace), "pydags' own frames are not the user's business"
    run = pipeline.start(num_cores=1, raise_on_error=False)
    assert not run.ok and run.status["after_boom"] is StageStatus.SKIPPED


def frames_of_the_package(trace: str) -> list[str]:
    """The files of a traceback's frames that are pydags' own modules."""
    package = os.path.dirname(os.path.abspath(pydags.__file__)) + os.sep
    files = re.findall(r'File "([^"]+)"', trace)
    return [f for f in files if os.path.abspath(f).startswith(package)]


def test_a_traceback_check_sees_package_frames():
    inside = os.path.join(os.path.dirname(pydags.__file__), "scheduler.py")
    assert frames_of_the_package(f'  File "{inside}", line 1, in x\n') == [inside]
    assert not frames_of_the_package('  File "/somewhere/pydags/tests/workload.py", line 1\n')


def test_a_cycle_is_named_before_anything_runs():
    a, b = load(), clean(None)
    a.after(b)
    b.after(a)
    with pytest.raises(CycleError) as info:
        Pipeline().add_stages(a, b)
    assert set(info.value.cycle) == {"load", "clean"}
    assert "load" in str(info.value) and "clean" in str(info.value)


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: Pipeline().add_stages([load(), "not a stage"]), ["item 1", "str"]),
        (lambda: Pipeline().add_stages(load), ["call it", "load()"]),
        (lambda: load().after(42), ["after()", "int"]),
        (lambda: Pipeline().add_stages(load()).start(num_cores=0), ["num_cores", "0"]),
        (lambda: Pipeline().add_stages(load(), load()), ["load", ".named()"]),
        (lambda: Pipeline().start(), ["no stages"]),
        (lambda: stage(retries=-1)(lambda: 1), ["retries"]),
    ],
)
def test_bad_input_gets_a_clear_error(make, words):
    with pytest.raises((TypeError, ValueError)) as info:
        make()
    for word in words:
        assert word in str(info.value)


def test_unpicklable_result_fails_with_the_stage_and_type_named(no_orphans):
    @stage
    def make_lock():
        return threading.Lock()

    run = Pipeline().add_stages(make_lock(), independent()).start(num_cores=2,
                                                                  raise_on_error=False)
    assert run.status["make_lock"] is StageStatus.FAILED
    assert "make_lock" in run.errors["make_lock"] and "lock" in run.errors["make_lock"]
    assert run.results["independent"] == "still ran"


def test_functions_defined_by_exec_in_a_main_namespace_run_in_spawned_workers(no_orphans):
    import multiprocessing

    source = (
        "from pydags.stage import stage\n"
        "scale = 10\n"
        "@stage\n"
        "def base():\n    return 4\n"
        "@stage\n"
        "def times(x):\n    return (lambda v: v * scale)(x)\n"
    )
    module = types.ModuleType("__main__")
    exec(source, module.__dict__)
    previous = multiprocessing.get_start_method(allow_none=True)
    multiprocessing.set_start_method("spawn", force=True)
    try:
        run = Pipeline().add_stages(module.times(module.base())).start(num_cores=2)
    finally:
        multiprocessing.set_start_method(previous, force=True)
    assert run.results == {"base": 4, "times": 40}


def test_a_2000_stage_random_dag_completes_correctly_on_two_cores(no_orphans):
    parents = random_dag(2000, seed=1)
    stages = []
    for i, ps in enumerate(parents):
        stages.append(add(*[stages[p] for p in ps]).named(f"s{i}"))
    run = Pipeline("big").add_stages(stages).start(num_cores=2)
    expected = []
    for ps in parents:
        expected.append(1 + sum(expected[p] for p in ps))
    assert [run.results[f"s{i}"] for i in range(2000)] == expected


def test_events_report_every_status_change_in_order():
    events = []
    Pipeline().add_stages(clean(load())).start(on_event=events.append)
    assert [(e.stage, e.status.value) for e in events] == [
        ("load", "queued"), ("load", "running"), ("load", "done"),
        ("clean", "queued"), ("clean", "running"), ("clean", "done")]
    assert all(isinstance(e.time, float) for e in events)


def test_num_cores_minus_one_means_every_core_and_block_false_returns_a_handle(no_orphans):
    pipeline = Pipeline().add_stages(total(clean(load())))
    run = pipeline.start(num_cores=-1, block=False)
    assert run.wait(timeout=30).results["total"] == 6 and run.done()
    assert pipeline.last_run is run and len(pipeline.runs) == 1


def test_pipeline_basics_and_public_imports():
    pipeline = pydags.Pipeline("p", [clean(load())])
    assert repr(pipeline) == "<Pipeline 'p': 2 stages, 1 dependencies>"
    assert "load" in pipeline and pipeline["clean"].name == "clean"
    assert list(pipeline.graph.edges) == [("load", "clean")]
    with pytest.raises(KeyError, match="no stage 'x'"):
        pipeline["x"]
    assert pydags.stage is stage and pydags.StageStatus.DONE.value == "done"


def test_stages_pickle_without_the_graph_around_them():
    s = clean(load())
    data = cloudpickle.dumps(s)
    assert len(data) < len(cloudpickle.dumps(s.dependencies[0])) * 2
    assert pickle.loads(data).function([2, 1]) == [1, 2]
    assert pickle.loads(data).dependencies == []


def test_in_process_stages_print_live_and_capture(capsys):
    @stage
    def talk():
        print("hello from a stage")
        print("to stderr", file=sys.stderr)

    run = Pipeline().add_stages(talk()).start(num_cores=1)
    assert "hello from a stage" in capsys.readouterr().out
    assert run.outputs["talk"] == "hello from a stage\nto stderr\n"


def test_ten_thousand_stages_build_and_validate_quickly():
    parents = random_dag(10_000, seed=2, fan_in=2)
    start = time.perf_counter()
    stages = []
    for i, ps in enumerate(parents):
        stages.append(load().named(f"n{i}").after(*[stages[p] for p in ps]))
    pipeline = Pipeline().add_stages(stages)
    assert len(pipeline.stages) == 10_000
    assert time.perf_counter() - start < 10  # a hang catcher; the benchmark prints the time


def test_resume_reruns_only_what_did_not_succeed(tmp_path):
    flag = tmp_path / "fixed"

    @stage
    def counted(path):
        with open(path, "a") as f:
            f.write("x")
        return 1

    @stage
    def needs_fix(x, path):
        if not path.exists():
            raise RuntimeError("not fixed yet")
        return x + 1

    runs_file = tmp_path / "runs"
    pipeline = Pipeline().add_stages(needs_fix(counted(str(runs_file)), flag))
    first = pipeline.start(raise_on_error=False)
    assert first.status["needs_fix"] is StageStatus.FAILED
    flag.write_text("yes")
    second = pipeline.start(resume=True)
    assert second.status == {"counted": StageStatus.CACHED, "needs_fix": StageStatus.DONE}
    assert second.results["needs_fix"] == 2 and runs_file.read_text() == "x"


def test_worker_tracebacks_of_notebook_functions_keep_file_line_and_source(tmp_path):
    import linecache

    cells = {"helper.py": "def _check(x):\n    if x:\n        raise ValueError(x)\n",
             "stage.py": "from pydags import stage\n@stage\ndef parse(x):\n"
                         "    return _check(x)\n"}
    module = types.ModuleType("__main__")
    for name, source in cells.items():
        cell = str(tmp_path / name)  # IPython registers each cell in linecache like this
        linecache.cache[cell] = (len(source), None, source.splitlines(True), cell)
        exec(compile(source, cell, "exec"), module.__dict__)
    run = Pipeline().add_stages(module.parse("bad row")).start(num_cores=2,
                                                               raise_on_error=False)
    trace = run.errors["parse"]
    assert f'File "{tmp_path / "stage.py"}", line 4, in parse' in trace
    assert "return _check(x)" in trace
    # a helper from another cell that the stage calls: its own file, line and source too
    assert f'File "{tmp_path / "helper.py"}", line 3, in _check' in trace
    assert "raise ValueError(x)" in trace and "dynamic-code" not in trace


def test_output_capture_is_per_thread(capsys):
    from pydags.executors.attempt import execute
    from pydags.protocol import Job

    def talk(word):
        for _ in range(200):
            print(word)
            time.sleep(0.0005)
        return word

    outcomes = {}
    threads = [threading.Thread(target=lambda w=w: outcomes.__setitem__(
        w, execute(Job(w, talk, (w,), {})))) for w in ("left", "right")]
    for thread in threads:
        thread.start()
    print("from the main thread")
    for thread in threads:
        thread.join()
    assert outcomes["left"].output == "left\n" * 200
    assert outcomes["right"].output == "right\n" * 200
    assert "from the main thread" in capsys.readouterr().out
    assert type(sys.stdout).__name__ != "_Router"  # the stand-in left with the last capture


@pytest.mark.parametrize(("options", "words"), [
    (dict(timeout=float("nan")), "timeout must be a finite number"),
    (dict(timeout=float("inf")), "timeout must be a finite number"),
    (dict(timeout=True), "timeout must be"),
    (dict(retries=True), "retries must be a whole number"),
    (dict(retry_delay=float("nan")), "retry_delay must be a finite number"),
    (dict(retry_delay=float("inf")), "retry_delay must be"),
])
def test_settings_that_would_not_mean_what_they_say_are_refused(options, words):
    with pytest.raises(ValueError, match=words):
        stage(**options)(lambda: None)
    with pytest.raises(ValueError, match=f"stage 'load': {words}"):
        load().options(**options)


def test_a_class_attribute_setting_is_checked_before_anything_runs():
    class Slow(Stage):
        timeout = "5"

        def run(self):
            return 1

    ran = []
    with pytest.raises(ValueError, match="stage 'Slow': timeout must be a finite number"):
        Pipeline().add_stages(Slow()).start(on_event=ran.append)
    assert not ran


def test_stages_inside_arguments_are_found_again_once_a_container_of_them_grows():
    parts = [load().named("first")]
    combined = total(parts)
    assert [d.name for d in combined.dependencies] == ["first"]
    assert combined.dependencies == combined.dependencies  # walked once, while unchanged
    parts.append(load().named("second"))
    assert {d.name for d in combined.dependencies} == {"first", "second"}
    assert Pipeline("grown", [combined]).graph.has_edge("second", "total")

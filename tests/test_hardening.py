"""Bad input and odd faults end truthfully: a clear error naming the stage, no hang."""

from __future__ import annotations

import collections
import ctypes
import dataclasses
import os

import pytest
from workload import asks_for_input, dies_leaving_a_child, fine, keyword_echo, reconnects

from pydags import StageStatus
from pydags.known import settle
from pydags.pipeline import Pipeline
from pydags.stage import Stage, stage

pytestmark = pytest.mark.usefixtures("no_orphans")


def run(*stages, **options):
    options.setdefault("num_cores", 2)
    return Pipeline("hardening").add_stages(*stages).start(raise_on_error=False, **options)


def test_a_worker_that_dies_while_its_child_holds_its_pipe_fails_its_stage():
    result = run(dies_leaving_a_child(), fine())
    assert result.status["dies_leaving_a_child"] is StageStatus.FAILED
    assert "worker died (exit code 3)" in result.errors["dies_leaving_a_child"]
    assert result.results["fine"] == "fine"


def test_input_in_a_worker_fails_at_once_instead_of_waiting_for_a_terminal():
    result = run(asks_for_input(), fine())
    assert result.status["asks_for_input"] is StageStatus.FAILED
    assert "EOFError" in result.errors["asks_for_input"]


@pytest.mark.parametrize("error", ["OSError", "EOFError"])
def test_a_result_that_fails_to_load_here_fails_its_stage_not_the_worker(error):
    result = run(reconnects(error), fine())
    assert result.status["reconnects"] is StageStatus.FAILED
    message = result.errors["reconnects"]
    assert "result of stage 'reconnects' could not be loaded" in message
    assert f"{error}: not reachable from here" in message


def test_a_module_that_starts_a_pipeline_when_imported_is_refused_in_workers(tmp_path):
    import sys
    import textwrap

    (tmp_path / "unguarded.py").write_text(textwrap.dedent("""
        from pydags import Pipeline, stage

        @stage
        def hello():
            return "hi"

        run = Pipeline("unguarded", [hello()]).start(num_cores=2, raise_on_error=False)
    """))
    sys.path.insert(0, str(tmp_path))
    try:
        import unguarded
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("unguarded", None)
    assert unguarded.run.status["hello"] is StageStatus.FAILED
    error = unguarded.run.errors["hello"]
    assert "pipeline 'unguarded' was started while a worker process imported" in error
    assert 'if __name__ == "__main__":' in error


@pytest.mark.parametrize("cores", [1, 2])
def test_a_stage_running_a_pipeline_of_its_own_keeps_all_it_printed(cores, capsys):
    from workload import runs_a_pipeline_inside

    result = run(runs_a_pipeline_inside(), num_cores=cores)
    assert result.results["runs_a_pipeline_inside"] == "from the inner stage"
    assert result.outputs["runs_a_pipeline_inside"] == (
        "from the inner stage\nafter the inner run\n")


@pytest.mark.parametrize("cores", [1, 2])
def test_async_stages_are_awaited(cores):
    from workload import fetch

    result = run(fetch(21), num_cores=cores)
    assert result.results["fetch"] == 42 and result.outputs["fetch"] == "fetched 21\n"


def test_async_stages_are_awaited_where_an_event_loop_already_runs():
    import asyncio

    from workload import fetch

    async def in_a_notebook():  # a kernel's cell runs while its event loop does
        return run(fetch(5), num_cores=1)

    result = asyncio.run(in_a_notebook())
    assert result.results["fetch"] == 10 and result.outputs["fetch"] == "fetched 5\n"


def test_generator_stages_are_refused_with_what_to_do():

    with pytest.raises(TypeError, match=r"stage 'numbers' is a generator function.*return a list"):
        @stage
        def numbers():
            yield 1

    with pytest.raises(TypeError, match="stage 'Rows' is a generator function"):
        class Rows(Stage):
            def run(self):
                yield 1


@dataclasses.dataclass
class Settings:
    rows: object
    scale: int = 2


Pair = collections.namedtuple("Pair", "left right")


class Rows(list):
    pass


@pytest.mark.parametrize("cores", [1, 2])
def test_stages_inside_containers_that_can_be_rebuilt_are_replaced_by_results(cores):
    from workload import echo, load

    raw = load()
    made = [
        Settings(raw), Pair(raw, 1), collections.OrderedDict(a=raw),
        collections.defaultdict(list, a=raw), Rows([raw]), {"deep": [(raw,)]},
    ]
    stages = [echo(value).named(f"e{i}") for i, value in enumerate(made)]
    result = run(*stages, num_cores=cores)
    assert all(s.dependencies == [raw] for s in stages)
    got = [result.results[f"e{i}"] for i in range(len(made))]
    assert got[0] == Settings([3, 1, 2]) and got[1] == Pair([3, 1, 2], 1)
    assert got[2] == {"a": [3, 1, 2]} and type(got[2]) is collections.OrderedDict
    assert type(got[3]) is collections.defaultdict and got[3]["a"] == [3, 1, 2]
    assert type(got[4]) is Rows and got[4] == [[3, 1, 2]]
    assert got[5] == {"deep": [([3, 1, 2],)]}


def test_a_stage_where_its_result_cannot_go_is_a_clear_error_before_anything_runs():
    import numpy
    from workload import echo, load

    with pytest.raises(TypeError, match="stage 'echo', argument 0 uses stage 'load' as a dict"):
        Pipeline().add_stages(echo({load(): 1}))
    array = numpy.empty(2, dtype=object)
    array[0] = load()
    with pytest.raises(TypeError, match="argument 'value' holds stage 'load' in a numpy array"):
        Pipeline().add_stages(echo(value=array))
    loop: list = [load()]
    loop.append(loop)
    with pytest.raises(TypeError, match="contains itself"):
        Pipeline().add_stages(echo(loop))


def test_deep_and_self_containing_arguments_do_not_overflow():
    from workload import echo, load

    deep: list = [load()]
    for _ in range(3000):
        deep = [deep]
    loop: list = [1]
    loop.append(loop)
    result = run(echo(deep), echo(loop).named("loop"), num_cores=1)
    inner = result.results["echo"]
    for _ in range(3000):
        inner = inner[0]
    assert inner == [[3, 1, 2]]  # the innermost list held the stage
    assert result.results["loop"] is loop  # no stage inside: passed as it is


@pytest.mark.parametrize("cores", [1, 2])
def test_arguments_named_self_or_cls_reach_the_stage(cores):
    from workload import echo

    result = run(echo(value=1).named("plain"), keyword_echo(self=7, cls=8), num_cores=cores)
    assert result.results["keyword_echo"] == {"self": 7, "cls": 8}


def test_only_the_last_runs_keep_their_results():
    import gc

    import psutil

    @stage
    def megabytes():
        return bytearray(20 << 20)

    pipeline = Pipeline("heavy").add_stages(megabytes())
    first = pipeline.start()
    gc.collect()
    before = psutil.Process().memory_info().rss
    for _ in range(8):
        pipeline.start()
    settle()  # a result is held until it is persisted
    gc.collect()
    ctypes.CDLL(None).malloc_trim(0)  # freed memory back to the system: RSS counts what lives
    assert psutil.Process().memory_info().rss - before < 3 * (20 << 20)
    assert first.status["megabytes"] is StageStatus.DONE and first.durations["megabytes"] >= 0
    with pytest.raises(RuntimeError, match=r"keep more with Pipeline\(keep_results=N\)"):
        first.results  # noqa: B018
    two = Pipeline("two", keep_results=2).add_stages(megabytes())
    a, b = two.start(), two.start()
    assert len(a.results["megabytes"]) == len(b.results["megabytes"]) == 20 << 20
    with pytest.raises(ValueError, match="keep_results"):
        Pipeline(keep_results=0)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors in /proc")
def test_too_many_open_files_is_a_clear_error_and_leaks_no_descriptor(tmp_path):
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent("""
        import os, resource, threading, time
        import pydags.quota
        from pydags import Pipeline
        from pydags.known import settle
        from pydags.scribe import flush
        from workload import fine

        def quiet():  # results stored and journaled, the journal's writer ended
            settle()
            flush()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and any(
                    t.name == "pydags-journal" for t in threading.enumerate()):
                time.sleep(0.01)

        Pipeline("warm", [fine()]).start(num_cores=1)  # imports done, nothing spawned
        quiet()
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(
            resource.RLIMIT_NOFILE)[1]))
        hog = []
        try:
            while True:
                hog.append(os.open(os.devnull, os.O_RDONLY))
        except OSError:
            pass
        for fd in hog[-3:]:  # room for one pipe, not two
            os.close(fd)
        before = len(os.listdir("/proc/self/fd"))
        try:
            Pipeline("p", [fine(), fine().named("f2")]).start(num_cores=2)
        except OSError as exc:
            print("error:", exc)
        quiet()
        print("leaked:", len(os.listdir("/proc/self/fd")) - before)
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert "error: [Errno 24] pydags could not start a worker process" in done.stdout, (
        done.stdout + done.stderr)
    assert "too many files open" in done.stdout and "leaked: 0" in done.stdout

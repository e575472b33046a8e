"""The %%pydags and %pydags magics in a real IPython InteractiveShell."""

from __future__ import annotations

import os

import pytest
from IPython.core.error import UsageError
from IPython.testing.globalipapp import start_ipython

from pydags import StageStatus
from pydags.pipeline import Pipeline

CELL = """
def load():
    return [3, 1, 2]

def clean(load):
    return sorted(load)

def total(clean, offset=0):
    return sum(clean) + offset
"""


@pytest.fixture(scope="module")
def shell():
    ip = start_ipython()
    ip.run_line_magic("load_ext", "pydags")
    return ip


@pytest.fixture(autouse=True)
def fresh_namespace(shell):
    for key in [k for k in shell.user_ns if not k.startswith("_") and k not in ("In", "Out")]:
        shell.user_ns.pop(key, None)
    yield


def test_a_three_function_cell_builds_the_graph_and_runs_on_two_cores(shell):
    shell.run_cell_magic("pydags", "flow --cores 2 --no-widget", CELL)
    flow = shell.user_ns["flow"]
    assert isinstance(flow, Pipeline)
    assert sorted(flow.graph.edges) == [("clean", "total"), ("load", "clean")]
    assert flow.last_run.results == {"load": [3, 1, 2], "clean": [1, 2, 3], "total": 6}
    assert shell.user_ns["clean"]([2, 1]) == [1, 2]  # still a plain function


def test_no_run_builds_without_running_and_line_magics_work(shell, capsys):
    shell.run_cell_magic("pydags", "flow --no-run", CELL)
    flow = shell.user_ns["flow"]
    assert flow.last_run is None and len(flow) == 3
    shell.run_line_magic("pydags", "status flow")
    assert "not run yet" in capsys.readouterr().out
    shell.run_line_magic("pydags", "run flow --cores 2")
    assert flow.last_run.ok
    shell.run_line_magic("pydags", "status flow")
    out = capsys.readouterr().out
    assert "total" in out and "done" in out
    shell.run_line_magic("pydags", "")
    assert "flow: <Pipeline 'flow': 3 stages" in capsys.readouterr().out


def test_parameters_from_the_namespace_and_options(shell):
    shell.user_ns["factor"] = 10
    shell.run_cell_magic("pydags", "scaled --no-widget --retries 2 --timeout 30",
                         "def base():\n    return 4\n\ndef scale(base, factor):\n"
                         "    return base * factor\n\ndef _helper():\n    pass\n")
    scaled = shell.user_ns["scaled"]
    assert scaled.last_run.results["scale"] == 40 and "_helper" not in scaled
    assert scaled["scale"].retries == 2 and scaled["scale"].timeout == 30


def test_stage_objects_made_in_the_cell_join(shell):
    shell.run_cell_magic("pydags", "mixed --no-widget",
                         "from pydags import stage\n@stage\ndef extra():\n    return 1\n"
                         "e = extra().named('e2')\n\ndef main():\n    return 2\n")
    assert set(shell.user_ns["mixed"].last_run.results) == {"e2", "main", "extra"}


@pytest.mark.parametrize(
    ("line", "cell", "words"),
    [
        ("flow --cores x", CELL, "--cores"),
        ("flow --cores 0", CELL, "--cores"),
        ("", CELL, "NAME"),
        ("flow", "def broken(:\n    pass\n", "syntax error"),
        ("flow", "x = 1\n", "defines no function"),
        ("flow", "def needs(missing_thing):\n    return 1\n", "missing_thing"),
        ("keep", CELL, "already holds a int"),
        ("load", CELL, "also a function name"),
    ],
)
def test_bad_input_raises_usage_error_and_keeps_the_namespace(shell, line, cell, words):
    shell.user_ns["keep"] = 41
    shell.run_cell_magic("pydags", "good --no-widget", "def one():\n    return 1\n")
    before = dict(shell.user_ns)
    with pytest.raises(UsageError, match=words):
        shell.run_cell_magic("pydags", line, cell)
    assert shell.user_ns["keep"] == 41
    assert shell.user_ns["good"] is before["good"] and shell.user_ns["good"].last_run.ok
    assert "flow" not in shell.user_ns


def test_unknown_names_and_commands(shell):
    with pytest.raises(UsageError, match="no pipeline named 'nope'"):
        shell.run_line_magic("pydags", "run nope")
    with pytest.raises(UsageError, match="unknown command"):
        shell.run_line_magic("pydags", "fly away")


def test_a_failing_stage_shows_its_own_traceback_and_keeps_the_partial_run(shell, capsys):
    with pytest.raises(UsageError, match=r"fails.*failed"):
        shell.run_cell_magic("pydags", "bad --no-widget",
                             "def ok():\n    return 1\n\ndef fails(ok):\n"
                             "    raise ValueError('bad value')\n")
    err = capsys.readouterr().err
    assert "ValueError: bad value" in err and "scheduler" not in err
    run = shell.user_ns["bad"].last_run
    assert run.status == {"ok": StageStatus.DONE, "fails": StageStatus.FAILED}


@pytest.mark.parametrize(("line", "cell", "words"), [
    ("flow", "def a(b):\n    return b\n\ndef b(a):\n    return a\n", "form a cycle"),
    ("flow", "def a(a):\n    return a\n", "parameter named like itself"),
    ("flow --timeout -1", CELL, "--timeout must be seconds > 0"),
    ("flow --timeout nan", CELL, "--timeout must be seconds > 0"),
    ("flow --retries -1", CELL, "--retries must be 0 or more"),
])
def test_cells_that_cannot_make_a_pipeline_stop_with_a_usage_error(shell, line, cell, words):
    with pytest.raises(UsageError, match=words):
        shell.run_cell_magic("pydags", line, cell)
    assert "flow" not in shell.user_ns


def test_a_cell_run_again_runs_only_what_changed_and_says_why(shell):
    shell.run_cell_magic("pydags", "again --no-widget", CELL)
    assert set(shell.user_ns["again"].last_run.status.values()) == {StageStatus.DONE}
    shell.run_cell_magic("pydags", "again --no-widget", CELL.replace("sorted(load)",
                                                                    "sorted(load)[::-1]"))
    run = shell.user_ns["again"].last_run
    assert run.status == {"load": StageStatus.CACHED, "clean": StageStatus.DONE,
                          "total": StageStatus.DONE}
    assert run.stage_records["clean"].cache.startswith("runs again: its code changed: `clean`")
    assert run.stage_records["total"].cache == "runs again: upstream `clean` changed"
    shell.run_cell_magic("pydags", "again --no-widget --all", CELL)
    assert set(shell.user_ns["again"].last_run.status.values()) == {StageStatus.DONE}


def test_a_failed_run_raises_in_a_cell_without_pydags_frames(shell, capsys):
    result = shell.run_cell(
        "from pydags import Pipeline, stage\n"
        "@stage\n"
        "def broken():\n"
        "    raise ValueError('broken on purpose')\n"
        "Pipeline('frames', [broken()]).start(show=False)\n")
    assert result.error_in_exec is not None
    shown = capsys.readouterr().out
    assert "PipelineError" in shown and "broken on purpose" in shown
    assert "raise ValueError('broken on purpose')" in shown  # the stage's own frame
    assert "pydags" + os.sep not in shown, shown  # none of pydags' frames, not even the last


"""The terminal front end, run as a real command in a subprocess."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
from pydags import Pipeline, stage

@stage
def load():
    print("loading")
    return 2

@stage
def double(x):
    return 2 * x

flow = Pipeline("flow").add_stages(double(load()))
"""

FAILING = SCRIPT + """
@stage
def broken(x):
    raise ValueError("broken stage")

bad = Pipeline("bad").add_stages(broken(load()))
"""


def pydags(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pydags.views.cli", *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd)


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "flows.py"
    path.write_text(SCRIPT)
    return path


def test_run_prints_a_summary_and_exits_zero(script):
    result = pydags("run", str(script), "--cores", "2")
    assert result.returncode == 0, result.stderr
    assert "loading\n" in result.stdout  # printed by a stage in a worker
    assert "double" in result.stdout and "done" in result.stdout
    assert "parallel efficiency" in result.stdout


def test_a_failing_stage_exits_non_zero_with_its_traceback(tmp_path):
    path = tmp_path / "flows.py"
    path.write_text(FAILING)
    result = pydags("run", f"{path}:bad")
    assert result.returncode == 1
    assert "failed" in result.stdout and "ValueError: broken stage" in result.stdout


def test_show_saves_the_drawing(script, tmp_path):
    out = tmp_path / "dag.png"
    result = pydags("show", str(script), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert out.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "missing.py"], "no such file: missing.py"),
        (["run", "{script}:nope"], "no pipeline named 'nope'"),
        (["run", "{several}"], "several pipelines"),
        (["run", "{script}", "--cores", "0"], "--cores"),
        (["fly"], "invalid choice"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(script, tmp_path, args, message):
    several = tmp_path / "several.py"
    several.write_text(FAILING)
    args = [a.format(script=script, several=several) for a in args]
    result = pydags(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 3  # argparse adds its usage line


def test_run_with_cache_says_why_each_stage_ran_or_was_reused(script, tmp_path):
    import os

    env = dict(os.environ, PYDAGS_STORE=str(tmp_path / "store"), COLUMNS="200")

    def run_it():
        return subprocess.run([sys.executable, "-m", "pydags.views.cli", "run", str(script),
                               "--cache"], capture_output=True, text=True, timeout=120,
                              env=env)

    first = run_it()
    assert first.returncode == 0, first.stderr
    assert "runs: no cached result yet" in first.stdout
    script.write_text(SCRIPT.replace("2 * x", "3 * x"))
    second = run_it()
    assert "cached: code, arguments and upstream unchanged" in second.stdout  # load
    assert "runs again: its code changed" in second.stdout  # double


def test_run_counts_the_items_of_a_mapped_stage(tmp_path):
    path = tmp_path / "mapped.py"
    path.write_text(SCRIPT + """
@stage
def odd_only(x):
    if x % 2 == 0:
        raise ValueError(f"{x} is even")
    return x

numbers = Pipeline("numbers").add_stages(double.map(range(30)), odd_only.map([1, 2, 3]))
""")
    result = pydags("run", f"{path}:numbers", "--cores", "2")
    assert result.returncode == 1
    assert "30 items: 30 done" in result.stdout
    assert "3 items: 2 done · 1 failed" in result.stdout
    assert "1 of 3 items of stage 'odd_only' failed: item 1 (2)" in result.stdout


def test_names_and_errors_print_as_written_not_as_markup(tmp_path):
    import os

    path = tmp_path / "marked.py"
    path.write_text(SCRIPT + """
TABLE = {}

@stage
def lookup(x, key="k"):
    raise KeyError("no row [/y] in TABLE[key]")

marked = Pipeline("marked").add_stages(lookup(load()).named("[bold]loud[/bold]"))
""")
    result = subprocess.run([sys.executable, "-m", "pydags.views.cli", "run", f"{path}:marked"],
                            capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, COLUMNS="200"))
    assert result.returncode == 1, result.stderr
    assert "MarkupError" not in result.stderr
    assert "[bold]loud[/bold]" in result.stdout
    assert "no row [/y] in TABLE[key]" in result.stdout


def test_a_dry_run_says_what_would_run_and_why_and_runs_nothing(script, tmp_path):
    import os

    env = dict(os.environ, PYDAGS_STORE=str(tmp_path / "store"), COLUMNS="200")

    def command(*extra):
        return subprocess.run([sys.executable, "-m", "pydags.views.cli", "run", str(script),
                               *extra],
                              capture_output=True, text=True, timeout=120, env=env)

    before = command("--dry-run")
    assert before.returncode == 0, before.stderr
    assert "2 of 2 stages would run" in before.stdout and "never run" in before.stdout
    assert "loading" not in before.stdout  # no stage ran
    assert command("--cache").returncode == 0
    script.write_text(SCRIPT.replace("2 * x", "3 * x"))
    after = command("--dry-run")
    assert "1 of 2 stages would run" in after.stdout
    assert "its code changed: `double` (flows.py:" in after.stdout
    assert "its result is known (cached)" in after.stdout

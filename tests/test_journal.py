"""Runs that outlive the kernel: the journal, persisted results, resume in a new process,
history, watch, the quota, and the journal's own faults."""

from __future__ import annotations

import ast
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import warnings
from contextlib import closing
from pathlib import Path

import pytest
from workload import boom, load, total, unpicklable_result

import pydags
from pydags import Pipeline, journal, scribe, stage
from pydags.known import settle
from pydags.past_runs import history, load_run
from pydags.scribe import reading
from pydags.store import DiskStore

pytestmark = pytest.mark.usefixtures("no_orphans")
HERE = Path(__file__).parent
DRIVER = HERE / "journaled.py"


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A journal and a store of the test's own."""
    monkeypatch.setenv("PYDAGS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PYDAGS_STORE", str(tmp_path / "store"))
    return tmp_path


def env(home: Path) -> dict[str, str]:
    return dict(os.environ, PYDAGS_HOME=str(home / "home"), PYDAGS_STORE=str(home / "store"),
                PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))


def drive(home: Path, action: str) -> dict:
    done = subprocess.run([sys.executable, str(DRIVER), action], env=env(home),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def wait_for(condition, what: str, seconds: float = 120.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_run_is_journaled_with_its_stages_attempts_errors_and_items(home):
    failing = boom().named("boom").options(retries=1)
    pipeline = Pipeline("told", [total(load()), failing])
    run = pipeline.start(num_cores=2, raise_on_error=False)
    runs = history(limit=5)
    assert list(runs["id"]) == [run.id] and list(runs["state"]) == ["failed"]
    again = load_run(run.id[:10])  # a unique start of the id is enough
    assert again.state == "failed" and again.status == run.status
    assert "ValueError" in again.errors["boom"]
    assert [a.number for a in again.stage_records["boom"].attempts] == [1, 2]
    assert again.results["total"] == run.results["total"]  # read from the store
    assert pipeline.compare(run.id, run)[0]["stage"] in run.status
    with reading() as db:
        row = journal.run_row(db, run.id)
    assert (row["host"], row["pid"]) == (journal.HOST, os.getpid())
    assert json.loads(row["options"])["num_cores"] == 2
    assert row["origin"] == __file__
    mode = Path(os.environ["PYDAGS_HOME"]).stat().st_mode & 0o777
    assert mode == 0o700 and journal.path().stat().st_mode & 0o777 == 0o600


def test_a_map_journals_its_item_counts_and_failed_items(home):
    @stage
    def inverse(x):
        return 1 / x

    run = Pipeline("inverses", [inverse.map([1, 2, 0, 4])]).start(raise_on_error=False)
    with reading() as db:
        (row,) = journal.map_rows(db, run.id)
    assert json.loads(row["counts"]) == {"done": 3, "failed": 1}
    assert [i for i, _ in json.loads(row["failed"])] == [2]
    assert json.loads(row["done"]) == [[0, 2], [3, 4]]
    assert load_run(run.id).items["inverse"].counts()[pydags.StageStatus.FAILED] == 1


def test_the_driver_killed_at_ten_random_moments_resumes_exactly_what_had_not_succeeded(
        tmp_path):
    whole = drive(tmp_path / "whole", "run")  # an uninterrupted run, to compare with
    assert set(whole["status"].values()) == {"done"}
    chance = random.Random(2026)
    for trial in range(10):
        home = tmp_path / f"trial{trial}"
        driver = subprocess.Popen([sys.executable, str(DRIVER), "run"], env=env(home),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        db_file = home / "home" / "runs.db"

        def started(db_file=db_file):
            if not db_file.exists():
                return None
            with closing(journal.connect(db_file)) as db:
                return db.execute("SELECT id FROM runs").fetchone()

        wait_for(started, "the run to be journaled")
        time.sleep(chance.uniform(0.0, 2.5))  # a random moment of the run
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=60)
        with closing(journal.connect(db_file)) as db:
            (row,) = db.execute("SELECT * FROM runs").fetchall()
            before = {r["stage"]: r["status"] for r in journal.stage_rows(db, row["id"])}
        assert journal.state(row) in ("interrupted", "ok"), journal.state(row)
        resumed = drive(home, "resume")
        # every stage and item the killed run left undone, run or found stored, in place:
        assert resumed["results"] == whole["results"] and resumed["square"] == whole["square"]
        for name, status in resumed["status"].items():
            note = resumed["notes"][name]
            if status == "cached":  # its result was stored under its fingerprint
                assert note.startswith(f"resumed: it succeeded in run {row['id']}"), note
            elif before.get(name) == "done":  # killed before its result was written
                assert note == "runs again: its result was not kept", (name, note)
            else:  # it had not succeeded (or not been stored): it ran
                assert status == "done" and note.startswith("runs"), (name, status, note)


def test_two_processes_write_while_a_third_reads_and_nothing_is_lost(home):
    script = ("from pydags import Pipeline\nfrom workload import load, total\n"
              "for i in range(20):\n"
              "    Pipeline(f'writer{W}').add_stages(total(load())).start(show=False)\n")
    writers = [subprocess.Popen([sys.executable, "-c", script.replace("{W}", str(w))],
                                env=env(home), stderr=subprocess.PIPE, text=True)
               for w in range(2)]
    reads = 0
    while any(w.poll() is None for w in writers):
        history()  # raises if the journal were locked
        reads += 1
    for writer in writers:
        errors = writer.stderr.read()
        assert writer.wait() == 0 and not errors, errors
    runs = history()
    assert reads > 0 and len(runs) == 40 and set(runs["state"]) == {"ok"}
    with reading() as db:
        assert db.execute("SELECT count(*) FROM attempts").fetchone()[0] == 80


def test_a_run_that_draws_an_id_already_journaled_takes_another(home, monkeypatch):
    drawn = iter(["261203-071208-03bc", "261203-071208-03bc", "261203-071208-5f14"])
    monkeypatch.setattr(scribe, "new_id", lambda: next(drawn))
    first = Pipeline("one").add_stages(total(load())).start(show=False)
    scribe.flush()  # journaled before the second run draws the same id
    second = Pipeline("two").add_stages(total(load())).start(show=False)
    runs = history()  # the second run is journaled: it took another id
    assert (first.id, second.id) == ("261203-071208-03bc", "261203-071208-5f14")
    assert sorted(zip(runs["id"], runs["pipeline"], runs["state"], strict=True)) == [
        ("261203-071208-03bc", "one", "ok"), ("261203-071208-5f14", "two", "ok")]
    assert load_run(second.id).results["total"] == 6


def test_a_transaction_that_rolls_back_loses_no_run_written_in_it(home, monkeypatch):
    runs = [Pipeline(f"p{i}").add_stages(total(load())).start(show=False) for i in range(2)]
    entries = [scribe.Entry(scribe.new_id(), run._recorder, origin="here", options={},
                            store=None, prints={}, mapped=set()) for run in runs]
    for entry in entries:
        entry._finished(None)
    write, failed = scribe.Entry._write, []

    def locked_once(entry, *args):
        if entry is entries[1] and not failed:
            failed.append(entry)
            raise sqlite3.OperationalError("database is locked")
        return write(entry, *args)

    monkeypatch.setattr(scribe.Entry, "_write", locked_once)
    with closing(journal.connect()) as db:
        scribe.Scribe()._write(db, entries)  # the first try rolls back, the second commits
        written = db.execute("SELECT id, state FROM runs WHERE id IN (?, ?)",
                             tuple(e.id for e in entries)).fetchall()
        stages = db.execute("SELECT count(*) FROM stages WHERE run IN (?, ?)",
                            tuple(e.id for e in entries)).fetchone()[0]
    assert failed and sorted(map(tuple, written)) == sorted((e.id, "ok") for e in entries)
    assert stages == 4 and all(e.clean and e.written for e in entries)


def test_resume_in_a_fresh_process_says_why_a_changed_stage_runs_again(home):
    module = home / "flowmod.py"
    module.write_text("from pydags import Pipeline, stage\nC = 1\n@stage\ndef a():\n"
                      "    return 1\n@stage\ndef b(x):\n    return x + C\n"
                      "flow = Pipeline('flow').add_stages(b(a()))\n")
    code = ("import json, flowmod\nrun = flowmod.flow.start(resume={r}, show=False)\n"
            "print(json.dumps({{n: [s.value, run.stage_records[n].cache] "
            "for n, s in run.status.items()}}))")
    environ = dict(env(home), PYTHONPATH=f"{home}{os.pathsep}{HERE}")

    def start(resume: bool) -> dict:
        done = subprocess.run([sys.executable, "-c", code.format(r=resume)], env=environ,
                              capture_output=True, text=True, timeout=120, cwd=home)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.splitlines()[-1])

    start(False)
    module.write_text(module.read_text().replace("C = 1", "C = 2"))
    said = start(True)
    assert said["a"][0] == "cached" and said["a"][1].startswith("resumed")
    assert said["b"] == ["done", "runs again: global `C` changed: 1 → 2"]


def test_resume_with_no_run_anywhere_says_so(home):
    with pytest.raises(ValueError, match="no earlier run, in this session or in the journal"):
        Pipeline("never", [load()]).start(resume=True)
    with pytest.raises(KeyError, match="no run 'nope'"):
        Pipeline("never", [load()]).start(resume="nope")


def test_a_result_that_cannot_be_pickled_is_skipped_with_one_warning(home):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = Pipeline("odd", [unpicklable_result()]).start()
        settle()
    said = [str(w.message) for w in caught if "unpicklable_result" in str(w.message)]
    assert run.ok and len(said) == 1 and "was not kept" in said[0]


def test_persist_off_keeps_nothing(home, monkeypatch):
    Pipeline("light", [total(load())]).start(persist=False)
    monkeypatch.setenv("PYDAGS_PERSIST", "0")
    Pipeline("light2", [total(load())]).start()
    settle()
    assert DiskStore().keys("pydags-cache/") == []
    assert len(history()) == 2  # journaled all the same
    with pytest.raises(RuntimeError, match=r"kept no results .*persist=False"):
        load_run(history()["id"][0]).results  # noqa: B018


def test_the_quota_evicts_the_least_recently_used_but_never_the_latest_run(home,
                                                                             monkeypatch):
    monkeypatch.setenv("PYDAGS_QUOTA", "50MB")

    @stage
    def ten_megabytes(seed):
        return bytes([seed % 256]) * 10_000_000

    for seed in range(20):
        Pipeline("heavy", [ten_megabytes(seed).named("blob")]).start()
        settle()
        kept = sum(size for _, size, _ in DiskStore().sizes("pydags-cache/"))
        assert kept <= 50_000_000, f"{kept / 1e6:.0f} MB kept after run {seed}"
    resumed = Pipeline("heavy", [ten_megabytes(19).named("blob")]).start(resume=True)
    assert resumed.status["blob"] is pydags.StageStatus.CACHED
    assert resumed.results["blob"] == bytes([19]) * 10_000_000


def test_a_corrupt_journal_is_moved_aside_and_a_new_one_started(home):
    journal.path().parent.mkdir(parents=True)
    journal.path().write_bytes(random.Random(1).randbytes(8192))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = Pipeline("after", [load()]).start()
        runs = history()
    assert run.ok and list(runs["id"]) == [run.id]
    said = [str(w.message) for w in caught if "journal" in str(w.message)]
    assert len(said) == 1 and "was corrupt: it was moved to" in said[0]
    assert len(list(journal.path().parent.glob("runs.db.corrupt-*"))) == 1


def run_elsewhere(home: Path, code: str) -> subprocess.CompletedProcess:
    """``code`` in a new process (the journal's writer warns once per process)."""
    script = ("import warnings\nfrom pydags import Pipeline\nfrom workload import load\n"
              "with warnings.catch_warnings(record=True) as caught:\n"
              "    warnings.simplefilter('always')\n" + code +
              "    run = Pipeline('p', [load()]).start(show=False)\n"
              "    run2 = Pipeline('p', [load()]).start(show=False)\n"
              "    from pydags.scribe import flush; flush()\n"
              "print(run.ok and run2.ok)\n"
              "print([str(w.message) for w in caught])\n")
    return subprocess.run([sys.executable, "-c", script], env=env(home), capture_output=True,
                          text=True, timeout=120)


def journal_warning(home: Path, code: str = "") -> str:
    """The one warning about the journal of two runs in a new process, which both succeed."""
    done = run_elsewhere(home, code)
    ok, said = done.stdout.splitlines()[-2:]
    assert ok == "True", done.stderr
    (warning,) = [w for w in ast.literal_eval(said) if "journal" in w]
    return warning


def test_a_journal_from_a_newer_pydags_is_left_alone_with_one_warning(home):
    folder = home / "home"
    folder.mkdir()
    with sqlite3.connect(folder / "runs.db") as db:
        db.execute(f"PRAGMA user_version = {journal.VERSION + 1}")
    warning = journal_warning(home)
    assert "newer pydags" in warning and "upgrade pydags" in warning


def test_a_journal_folder_that_cannot_be_written_warns_once_and_runs_go_on(home):
    (home / "home").write_text("a file where the folder should be")
    warning = journal_warning(home)
    assert "cannot be opened" in warning and "PYDAGS_HOME" in warning


def test_a_full_disk_under_the_journal_warns_once_and_runs_go_on(home):
    limit = ("    import resource, signal\n"
             "    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
             "    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n")
    warning = journal_warning(home, limit)
    assert "runs are not journaled" in warning and "free some space" in warning


def test_a_dead_drivers_run_reads_interrupted(home):
    script = ("import os, time\nfrom pydags import Pipeline\nfrom workload import sleepy\n"
              "run = Pipeline('dies').add_stages(sleepy(300)).start(num_cores=1, block=False)\n"
              "deadline = time.monotonic() + 60\n"
              "while run.status['sleepy'].value != 'running' and time.monotonic() < deadline:\n"
              "    time.sleep(0.01)\n"
              "from pydags.scribe import flush\nflush()\nos._exit(0)\n")
    done = subprocess.run([sys.executable, "-c", script], env=env(home), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    (row,) = history("dies").to_dict("records")
    assert row["state"] == "interrupted"
    assert load_run(row["id"]).state == "interrupted"


def test_the_cli_lists_shows_resumes_and_prunes(home):
    script = home / "flows.py"
    script.write_text("from pydags import Pipeline\nfrom workload import load, total\n"
                      "flow = Pipeline('flow').add_stages(total(load()))\n")

    def pydags_cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "pydags.views.cli", *args], env=dict(
            env(home), COLUMNS="200"), capture_output=True, text=True, timeout=120)

    first = pydags_cli("run", str(script))
    assert first.returncode == 0, first.stderr
    (run_id,) = history()["id"]
    listed = pydags_cli("runs")
    assert run_id in listed.stdout and "ok" in listed.stdout
    shown = pydags_cli("show", run_id)
    assert f"run {run_id} of 'flow': ok" in shown.stdout and "total" in shown.stdout
    resumed = pydags_cli("resume", str(script))
    assert resumed.returncode == 0 and "cached" in resumed.stdout
    sizes = pydags_cli("cache")
    assert "flow" in sizes.stdout
    pruned = pydags_cli("cache", "prune", "--keep-last", "1")
    assert pruned.returncode == 0 and "pruned" in pruned.stdout
    assert pydags_cli("show", "nope").returncode == 2
    assert "no run 'nope'" in pydags_cli("show", "nope").stderr


def test_history_lists_ten_thousand_runs_newest_first(home):
    with reading() as db, journal.transaction(db):
        db.executemany("INSERT INTO runs (id, pipeline, state, started, ended, stages, counts) "
                       "VALUES (?, ?, 'ok', ?, ?, 3, '{\"done\": 3}')",
                       [(f"r{i:05d}", f"p{i % 7}", i, i + 1.0) for i in range(10_000)])
    runs = history()  # its speed: tests/benchmarks/bench_journal.py
    assert len(runs) == 10_000 and runs["id"][0] == "r09999"
    assert list(history("p3", limit=2)["id"]) == ["r09999", "r09992"]


def test_the_live_view_shows_a_stages_times_in_recent_runs(home):
    pipeline = Pipeline("timed", [total(load())])
    first, second = pipeline.start(), pipeline.start()
    view = pipeline.widget()
    assert view.drawn.wait(60)
    recent = view.recent["total"]
    assert [run_id for run_id, _ in recent] == [first.id, second.id]
    assert all(seconds >= 0 for _, seconds in recent)


WATCHED = '''
import time
from pydags import Pipeline, stage

@stage
def nap(i, *upstream):
    time.sleep(0.3)
    return i

first = [nap(i).named(f"nap_{i}") for i in range(4)]
watched = Pipeline("watched", [nap(9, *first).named("last")])
'''


def test_watch_in_a_kernel_follows_a_pydags_run_elsewhere_to_the_end(home):
    import nbformat
    from nbclient import NotebookClient

    (home / "flows.py").write_text(WATCHED)
    cells = [f"""
import json, subprocess, sys, time
import pydags
from pydags.views.widget import PipelineWidget

shown = []  # the live view watch() shows
show = PipelineWidget.show
PipelineWidget.show = lambda view: (shown.append(view), show(view))
driver = subprocess.Popen([sys.executable, "-m", "pydags.views.cli", "run",
                           {str(home / "flows.py")!r}, "--cores", "2"])
deadline = time.monotonic() + 120
while not len(pydags.history("watched")) and time.monotonic() < deadline:
    time.sleep(0.05)
""", """
run = pydags.watch("watched")
driver.wait(timeout=120)
print(json.dumps({"state": run.state, "view": {n: s["status"] for n, s in
                                               shown[0].stages.items()}}))
"""]
    notebook = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(c) for c in cells],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}})
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(home)}}).execute()
    printed = [o["text"] for o in notebook.cells[1].outputs if o.get("name") == "stdout"]
    said = json.loads(printed[-1])
    assert said["state"] == "ok"
    assert said["view"] == {name: "done" for name in ("nap_0", "nap_1", "nap_2", "nap_3",
                                                      "last")}


def test_pydags_watch_in_a_terminal_follows_a_run_to_its_table(home):
    (home / "flows.py").write_text(WATCHED)
    environ = dict(env(home), COLUMNS="200")
    driver = subprocess.Popen([sys.executable, "-m", "pydags.views.cli", "run",
                               str(home / "flows.py"), "--cores", "2"], env=environ,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_for(lambda: len(history("watched")), "the run to be journaled")
    watched = subprocess.run([sys.executable, "-m", "pydags.views.cli", "watch", "watched"],
                             env=environ, capture_output=True, text=True, timeout=120)
    assert driver.wait(timeout=120) == 0, driver.stderr.read()
    assert watched.returncode == 0, watched.stderr
    (run_id,) = history("watched")["id"]
    assert f"run {run_id} of 'watched': ok" in watched.stdout
    rows = [line.split("│")[1:3] for line in watched.stdout.splitlines() if "│" in line]
    assert [[cell.strip() for cell in row] for row in rows] == [
        [name, "done"] for name in ("nap_0", "nap_1", "nap_2", "nap_3", "last")]


def test_bad_resume_and_quota_values_are_clear_errors_before_anything_runs(home,
                                                                           monkeypatch):
    pipeline = Pipeline("strict", [load()])
    with pytest.raises(TypeError, match=r"resume is True .* not 3"):
        pipeline.start(resume=3)
    monkeypatch.setenv("PYDAGS_QUOTA", "lots")
    with pytest.raises(ValueError, match="PYDAGS_QUOTA='lots': give bytes, or a size"):
        pipeline.start()
    assert len(history()) == 0  # nothing ran

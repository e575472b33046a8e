"""The live view in a real JupyterLab, driven by Playwright in Debian's headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest
from conftest import free_port
from nbclient import NotebookClient

pytestmark = pytest.mark.browser

CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run"]

NOTEBOOKS = {
    # a pipeline run twice, then its live view: the inspector shows the runs' times
    "recent": """
from pydags.examples import tutorial
pipeline = tutorial.build()
for _ in range(2):
    pipeline.start(num_cores=2, show=False)
pipeline.widget()
""",
    # 100 stages, a blocking run on 2 cores
    "big": """
import time
from pydags import Pipeline, stage

@stage
def step(i, *upstream):
    time.sleep(0.2)
    return i

stages = []
for i in range(100):
    stages.append(step(i, *stages[-3:-1]).named(f"step_{i}"))
run = Pipeline("big", stages).start(num_cores=2)
""",
    # a blocking run whose one long stage leaves the finished ones to be clicked
    "long": """
import time
from pydags import Pipeline, stage

@stage
def quick(i):
    return i

@stage
def slow(*upstream):
    time.sleep(12)

firsts = [quick(i).named(f"quick_{i}") for i in range(3)]
run = Pipeline("long", [slow(*firsts)]).start(num_cores=2)
""",
    # one core: the stage runs in the kernel's own process
    "inline": """
import time
from pydags import Pipeline, stage

@stage
def sleeper():
    time.sleep(6)

run = Pipeline("inline", [sleeper()]).start()
""",
    # a map over 100,000 items, its last item holding the blocking run for a while
    "mapped": f"""
import sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from pydags import Pipeline
from workload import fails_for

run = Pipeline("mapped", [fails_for.map(range(100_000), bad=(7,), seconds=15)]).start(
    num_cores=2, raise_on_error=False)
""",
    # 32 stages of a forecasting project, one failing, on 2 cores
    "forecast": f"""
import sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from workload import ml_pipeline

run = ml_pipeline(flag="never-there", seconds=1.0).start(num_cores=2, raise_on_error=False)
""",
    # the same after a run: a view to keep, whose Retry runs the failed stage again
    "retry": f"""
import sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from workload import ml_pipeline

pipeline = ml_pipeline(flag="fixed.flag", seconds=0.1)
pipeline.start(num_cores=2, raise_on_error=False, show=False)
pipeline.widget()
""",
    # 200 stages of 50 ms, named fit_000 ... fit_199
    "wide": f"""
import sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from workload import wide_pipeline

run = wide_pipeline(200, 0.05).start(num_cores=2)
""",
    # a view to keep, run from its button, then saved and reopened with a new kernel
    "kept": """
from pydags.examples import tutorial
pipeline = tutorial.build()
pipeline.widget()
""",
    # a view that stays: pipeline.widget()
    "themed": """
from pydags.examples import tutorial
tutorial.build().widget()
""",
}


TEN = """%%pydags tenfold
import time

def _wait(value):
    time.sleep(1.5)
    return value

def s0(): return _wait(1)
def s1(s0): return _wait(s0 + 1)
def s2(s0): return _wait(s0 + 2)
def s3(s1): return _wait(s1 * 2)
def s4(s2): return _wait(s2 * 2)
def s5(s3, s4): return _wait(s3 + s4)
def s6(s1): return _wait(s1 - 1)
def s7(s6): return _wait(s6 * 3)
def s8(s5): return _wait(s5 + 1)
def s9(s7): return _wait(s7 + 1)
"""


def ready_view(page, timeout: int = 120_000) -> None:
    page.wait_for_selector(".pydags-view svg g[id^='pydags-stage:']", timeout=timeout)


def statuses(page) -> list[str]:
    return page.eval_on_selector_all(".pydags-view svg g[id^='pydags-stage:']",
                                     "gs => gs.map(g => g.dataset.status || '')")


def notebook(path: Path, source: str) -> None:
    cell = {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
            "source": source.strip()}
    path.write_text(json.dumps({"cells": [cell], "metadata": {"kernelspec": {
        "name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5}))


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    chromium = shutil.which("chromium")
    assert chromium, "chromium is missing: .ci/run installs Debian's chromium"
    root = tmp_path_factory.mktemp("lab")
    for name, source in NOTEBOOKS.items():
        notebook(root / f"{name}.ipynb", source)
    nbformat.write(nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell("%load_ext pydags"), nbformat.v4.new_code_cell(TEN)],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                 "language": "python"}}), root / "stale.ipynb")
    port, token = free_port(), "pydags-test-token"
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(root / ".config"),
               JUPYTER_RUNTIME_DIR=str(root / ".runtime"), IPYTHONDIR=str(root / ".ipython"))
    log = (root / "server.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1",
         f"--port={port}", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
         "--allow-root", "--LabApp.news_url=", "--LabApp.check_for_updates_class="
         "jupyterlab.NeverCheckForUpdate", "--LabApp.expose_app_in_browser=True"],
        env=env, cwd=root, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=log)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
            break
        except OSError:
            time.sleep(0.3)
    else:
        pytest.fail("JupyterLab did not start: " + (root / "server.log").read_text()[-2000:])
    yield {"base": base, "token": token, "root": root, "chromium": chromium}
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
    log.close()


@pytest.fixture
def page(lab):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=lab["chromium"],
                                             args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        yield page
        if errors:  # shown when a test fails: what the view's script said
            print("browser errors:", *errors[-10:], sep="\n")
        browser.close()


def open_notebook(page, lab, name: str) -> None:
    page.goto(f"{lab['base']}/lab/tree/{name}?reset&token={lab['token']}")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)


def open_and_run_all(page, lab, name: str) -> None:
    page.goto(f"{lab['base']}/lab/tree/{name}?reset&token={lab['token']}")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    page.wait_for_function(
        "() => [...document.querySelectorAll('.jp-StatusBar-TextItem, .jp-StatusBar-Item')]"
        ".some(e => /Python 3.*Idle/.test(e.textContent))", timeout=60_000)
    page.click("li.lm-MenuBar-item:has-text('Run')")
    page.click('li[data-command="runmenu:run-all"]')


def prompt(page) -> str:
    return page.inner_text(".jp-Cell .jp-InputPrompt").strip()


def test_labels_of_a_100_stage_dag_are_at_least_11_pixels_high(page, lab, tmp_path):
    open_and_run_all(page, lab, "big.ipynb")
    ready_view(page)
    heights = page.eval_on_selector_all(
        ".pydags-view .pydags-dag svg text",
        "ts => ts.filter(t => /^step_/.test(t.textContent))"
        ".map(t => t.getBoundingClientRect().height)")
    assert len(heights) >= 100, len(heights)
    assert min(heights) >= 11, min(heights)
    shots = os.environ.get("PYDAGS_SCREENSHOTS")
    if shots:
        page.screenshot(path=str(Path(shots) / "big_view.png"))


def test_the_stage_chosen_stays_in_the_inspector_and_its_state_is_live(page, lab):
    open_and_run_all(page, lab, "big.ipynb")
    ready_view(page)
    page.click(".pydags-view g[id='pydags-stage:step_60']")
    head = ".pydags-view .pydags-inspector-head"
    assert re.search(r"step_60 · \S (pending|queued)", page.inner_text(head)), page.inner_text(head)
    page.wait_for_function(  # no other click: it follows the stage through its run
        f"() => /step_60 · . done/.test(document.querySelector({json.dumps(head)}).innerText)",
        timeout=120_000)


def test_the_inspector_shows_a_stages_times_in_the_pipelines_recent_runs(page, lab):
    open_and_run_all(page, lab, "recent.ipynb")
    ready_view(page)
    page.click(".pydags-view g[id='pydags-stage:stage_2']")
    recent = ".pydags-view .pydags-recent"
    page.wait_for_selector(recent, timeout=60_000)
    said = page.inner_text(recent)
    assert re.fullmatch(r"recent runs: 00:0\d\.\d · 00:0\d\.\d", said), said
    shots = os.environ.get("PYDAGS_SCREENSHOTS")
    if shots:
        page.screenshot(path=str(Path(shots) / "recent_runs.png"))


def test_a_blocking_run_stays_clickable_and_its_clock_ticks(page, lab, tmp_path):
    open_and_run_all(page, lab, "long.ipynb")
    ready_view(page)
    page.wait_for_function(
        "() => document.querySelector(\".pydags-view g[id='pydags-stage:slow']\")"
        "?.dataset.status === 'running'", timeout=120_000)
    page.click(".pydags-view g[id='pydags-stage:quick_1']")
    head = page.inner_text(".pydags-view .pydags-inspector-head")
    assert "quick_1" in head and "done" in head, head
    cancel = page.locator(".pydags-view .pydags-cancel")
    assert cancel.is_disabled() and "interrupt the kernel" in cancel.get_attribute("title")
    clocks, before = set(), statuses(page)
    for _ in range(12):
        clocks.add(page.inner_text(".pydags-view .pydags-clock"))
        time.sleep(0.15)
    assert statuses(page) == before, "a status changed while the clock was watched"
    assert len(clocks) >= 3, clocks
    shots = os.environ.get("PYDAGS_SCREENSHOTS")
    if shots:
        page.locator(".pydags-view").screenshot(path=str(Path(shots) / "long_view.png"))
    assert prompt(page) == "[*]:", "the cell was meant to be still running"


def test_a_map_of_100000_items_shows_its_progress_and_lists_its_items_mid_run(page, lab):
    open_and_run_all(page, lab, "mapped.ipynb")
    ready_view(page)
    node = ".pydags-view g[id='pydags-stage:fails_for']"
    page.wait_for_function(  # the batch holding the slow item is all that is left
        "() => { const m = /^(\\d+)\\/100000/.exec("
        "document.querySelector('.pydags-note')?.textContent || ''); return m && +m[1] > 50000 }",
        timeout=120_000)
    assert page.locator(".pydags-item-bar rect").count() >= 4  # back, done, failed, running
    assert "1 failed" in page.text_content(".pydags-note")
    page.click(node)
    head = page.inner_text(".pydags-view .pydags-items-head")
    assert "100000 items" in head and "1 failed" in head and "running" in head, head
    page.wait_for_selector(".pydags-view .pydags-item", timeout=10_000)
    rows = page.locator(".pydags-view .pydags-item")
    assert 5 <= rows.count() <= 40  # only the rows in sight are drawn
    page.click(".pydags-item-filters button:has-text('failed')")
    failed = page.inner_text(".pydags-view .pydags-item")
    assert "#7" in failed and "ValueError: item 7 is bad" in failed, failed
    assert re.search(r"\d\.\d{3}s", failed), failed  # how long it took
    page.click(".pydags-item-filters button:has-text('all')")
    page.eval_on_selector(".pydags-view .pydags-items", "list => list.scrollTop = 1e9")
    page.wait_for_selector(".pydags-view .pydags-item:has-text('#99999')", timeout=10_000)
    assert "running" in page.inner_text(".pydags-view .pydags-item:has-text('#99999')")
    shots = os.environ.get("PYDAGS_SCREENSHOTS")
    if shots:
        page.locator(".pydags-view").screenshot(path=str(Path(shots) / "mapped_view.png"))
    assert prompt(page) == "[*]:", "the cell was meant to be still running"


def test_with_one_core_a_running_stage_is_shown_running(page, lab):
    open_and_run_all(page, lab, "inline.ipynb")
    ready_view(page)
    page.wait_for_function(
        "() => document.querySelector(\".pydags-view g[id='pydags-stage:sleeper']\")"
        "?.dataset.status === 'running'", timeout=120_000)
    assert prompt(page) == "[*]:"


def test_the_dark_theme_changes_the_views_background(page, lab):
    open_and_run_all(page, lab, "themed.ipynb")
    ready_view(page)
    background = "() => getComputedStyle(document.querySelector('.pydags-dag')).backgroundColor"
    light = page.evaluate(background)
    page.evaluate("() => window.jupyterapp.commands.execute('apputils:change-theme', "
                  "{theme: 'JupyterLab Dark'})")
    page.wait_for_function(f"() => ({background})() !== {json.dumps(light)}", timeout=60_000)
    shots = os.environ.get("PYDAGS_SCREENSHOTS")
    if shots:
        page.wait_for_selector("#jupyterlab-splash", state="detached", timeout=60_000)
        page.locator(".pydags-view").screenshot(path=str(Path(shots) / "dark_view.png"))
    page.evaluate("() => window.jupyterapp.commands.execute('apputils:change-theme', "
                  "{theme: 'JupyterLab Light'})")


@pytest.fixture(scope="module")
def executed(lab):
    """Two runs executed by nbclient and saved without widget state, as papermill would."""
    source = ("from pydags.examples import tutorial\npipeline = tutorial.build()\n"
              "run = pipeline.start(num_cores=2)")
    later = "handle = pipeline.start(num_cores=2, block=False)"
    cells = [nbformat.v4.new_code_cell(c) for c in (source, later, "result = handle.wait()")]
    notebook_ = nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": {
        "name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}})
    NotebookClient(notebook_, timeout=300, kernel_name="python3", store_widget_state=False,
                   resources={"metadata": {"path": str(lab["root"])}}).execute()
    path = lab["root"] / "executed.ipynb"
    nbformat.write(notebook_, path)
    return path


def test_a_saved_notebook_reopened_shows_each_runs_dag_and_no_widget_error(page, lab,
                                                                          executed):
    open_notebook(page, lab, executed.name)
    dags = ".jp-OutputArea-output img[src^='data:image/svg+xml']"
    page.wait_for_selector(dags, timeout=60_000)
    page.wait_for_function(f"() => [...document.querySelectorAll(\"{dags}\")]"
                           ".every(i => i.complete && i.naturalWidth > 300)", timeout=60_000)
    # the text of every cell, those JupyterLab has not laid out below the fold too, once
    # it has rendered both reports' headers (on a busy machine, a moment after the images)
    page.wait_for_function("() => document.querySelector('.jp-Notebook').textContent"
                           ".split('6/6 done').length === 3", timeout=60_000)
    text = page.eval_on_selector(".jp-Notebook", "notebook => notebook.textContent")
    assert "model not found" not in text and "Error displaying widget" not in text
    assert len(page.query_selector_all(dags)) == 2 and text.count("6/6 done") == 2
    shots = os.environ.get("PYDAGS_SCREENSHOTS")
    if shots:
        page.screenshot(path=str(Path(shots) / "reopened.png"))


def test_an_html_export_shows_each_runs_dag_offline(page, lab, executed, tmp_path):
    subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "html",
                    "--output-dir", str(tmp_path), str(executed)], check=True,
                   capture_output=True, timeout=300)
    exported = tmp_path / executed.with_suffix(".html").name
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(
        "file:") else route.abort())
    page.goto(exported.as_uri())
    sizes = page.eval_on_selector_all(
        "img[src^='data:image/svg+xml']", "imgs => imgs.map(i => i.complete && i.naturalWidth)")
    assert len(sizes) == 2 and all(width > 300 for width in sizes), sizes


def test_a_kept_view_run_saved_and_reopened_without_its_kernel_shows_its_dag(page, lab):
    open_and_run_all(page, lab, "kept.ipynb")
    ready_view(page)  # the live view, before any run
    run_all = ".pydags-view .pydags-run"
    page.wait_for_selector(f"{run_all}:not([disabled])", timeout=60_000)
    page.click(run_all)
    page.wait_for_function(  # the run ended and the kernel made the output again
        "() => /6\\/6 done/.test(document.querySelector('.jp-OutputArea .pydags-report')"
        "?.textContent)", timeout=120_000)
    page.wait_for_selector(f"{run_all}:not([disabled])", timeout=60_000)  # live still
    page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
    saved = lab["root"] / "kept.ipynb"
    deadline = time.time() + 60
    while "6/6 done" not in saved.read_text() and time.time() < deadline:
        time.sleep(0.2)
    kept = nbformat.read(saved, as_version=4).cells[0].outputs
    assert [set(o.data) for o in kept] == [{"text/html", "text/plain"}], kept
    page.evaluate("() => window.jupyterapp.serviceManager.sessions.shutdownAll()")
    open_notebook(page, lab, "kept.ipynb")  # reopened: a new kernel, without the widget
    page.wait_for_function(
        "() => [...document.querySelectorAll('.jp-StatusBar-TextItem, .jp-StatusBar-Item')]"
        ".some(e => /Python 3.*Idle/.test(e.textContent))", timeout=60_000)
    ready_view(page)  # mounted from the state saved in the output
    assert "6/6 done" in page.inner_text(".pydags-view .pydags-counts")
    assert page.locator(f"{run_all}[disabled]").count() == 1  # Run needs the kernel's view
    text = page.eval_on_selector(".jp-Notebook", "notebook => notebook.textContent")
    assert "model not found" not in text and "Error displaying widget" not in text
    assert "Loading widget" not in text
    shot(page, "kept_reopened")


def test_a_magic_cell_edited_and_run_again_runs_only_what_changed(page, lab):
    open_and_run_all(page, lab, "stale.ipynb")
    report = ".jp-OutputArea-output .pydags-report"
    # the first run ended, all ran: the report is there (hidden by the view it turned into)
    page.wait_for_selector(report, state="attached", timeout=120_000)
    assert "10/10 done" in page.text_content(report)
    page.evaluate("""source => {
        const notebook = window.jupyterapp.shell.currentWidget.content;
        notebook.widgets[1].model.sharedModel.setSource(source);
        notebook.activeCellIndex = 1;
        window.jupyterapp.commands.execute('notebook:run-cell');  // not awaited: it runs on
    }""", TEN.replace("_wait(s1 * 2)", "_wait(s1 * 3)"))
    node = ".pydags-view g[id='pydags-stage:{}']"
    page.wait_for_function(  # the edited stage runs; the two below it wait, stale
        "sel => document.querySelector(sel)?.dataset.status === 'running'",
        arg=node.format("s3"), timeout=120_000)
    shown = dict(zip([f"s{i}" for i in range(10)], [
        page.get_attribute(node.format(f"s{i}"), "data-status") for i in range(10)],
        strict=True))
    assert shown == {**dict.fromkeys(["s0", "s1", "s2", "s4", "s6", "s7", "s9"], "cached"),
                     "s3": "running", "s5": "stale", "s8": "stale"}, shown
    page.click(node.format("s5"))
    shots = os.environ.get("PYDAGS_SCREENSHOTS")
    if shots:  # the README's picture of a cell run again after an edit
        page.locator(".pydags-view").screenshot(path=str(Path(shots) / "stale_view.png"))
    said = page.inner_text(".pydags-view .pydags-inspector")
    assert "runs again: upstream `s3` changed" in said, said
    assert page.text_content(node.format("s8") + " title") == (  # its tooltip
        "s8\n✎ stale\npending: waiting for `s5`\nruns again: upstream `s5` changed")
    page.wait_for_selector(report, state="attached", timeout=120_000)
    rows = {row: page.text_content(f"{report} tr#pydags-s{row}") for row in range(10)}
    assert "runs again: its code changed: `s3`" in rows[3] and "done" in rows[3], rows[3]
    for row in (5, 8):
        assert "done" in rows[row] and "runs again: upstream" in rows[row], rows[row]
    for row in (0, 1, 2, 4, 6, 7, 9):
        assert "cached" in rows[row], rows[row]


def shot(page, name: str, selector: str | None = ".pydags-view") -> None:
    """Keep a screenshot where ``$PYDAGS_SCREENSHOTS`` says."""
    shots = os.environ.get("PYDAGS_SCREENSHOTS")
    if shots:
        target = page.locator(selector).first if selector else page
        target.screenshot(path=str(Path(shots) / f"{name}.png"))


def box_of(page, name: str) -> dict:
    return page.eval_on_selector(f".pydags-view g[id='pydags-stage:{name}'] path",
                                 "p => p.getBoundingClientRect().toJSON()")


def test_the_first_view_of_32_stages_shows_the_running_work_with_little_blank(page, lab):
    open_and_run_all(page, lab, "forecast.ipynb")
    ready_view(page)
    page.wait_for_function("() => document.querySelector(\".pydags-view g[data-status="
                           "'running']\")", timeout=120_000)
    page.wait_for_timeout(300)  # the first frame after the view appears: as a user sees it
    seen = page.evaluate("""() => {
        const port = document.querySelector('.pydags-dag').getBoundingClientRect();
        const inside = (r) => r.left >= port.left - 1 && r.right <= port.right + 1 &&
                              r.top >= port.top - 1 && r.bottom <= port.bottom + 1;
        const boxes = [...document.querySelectorAll(".pydags-view g[id^='pydags-stage:'] path")]
            .map((p) => p.getBoundingClientRect());
        const running = [...document.querySelectorAll(".pydags-view g[data-status='running'] path")]
            .map((p) => p.getBoundingClientRect());
        const clip = (r) => ({ left: Math.max(r.left, port.left),
                               right: Math.min(r.right, port.right),
                               top: Math.max(r.top, port.top),
                               bottom: Math.min(r.bottom, port.bottom) });
        const shown = boxes.map(clip).filter((r) => r.right > r.left && r.bottom > r.top);
        const used = clip({ left: Math.min(...shown.map((r) => r.left)),
                            right: Math.max(...shown.map((r) => r.right)),
                            top: Math.min(...shown.map((r) => r.top)),
                            bottom: Math.max(...shown.map((r) => r.bottom)) });
        const area = (r) => Math.max(0, r.right - r.left) * Math.max(0, r.bottom - r.top);
        return { anyRunningInside: running.some(inside), used: area(used) / area(port),
                 labels: Math.min(...[...document.querySelectorAll('.pydags-dag svg text')]
                     .filter((t) => /^(load|clean|fit|score)_/.test(t.textContent))
                     .map((t) => t.getBoundingClientRect().height)) };
    }""")
    if os.environ.get("PYDAGS_SCREENSHOTS"):  # the README's pictures, mid-run, light and dark
        page.wait_for_function("() => +(/(\\d+)\\/32 done/.exec(document.querySelector("
                               "'.pydags-counts').textContent) || [0, 0])[1] >= 8",
                               timeout=120_000)
        shot(page, "live_view")
        page.evaluate("() => window.jupyterapp.commands.execute('apputils:change-theme', "
                      "{theme: 'JupyterLab Dark'})")
        page.wait_for_function("() => document.body.dataset.jpThemeLight === 'false'",
                               timeout=60_000)
        page.wait_for_selector("#jupyterlab-splash", state="detached", timeout=60_000)
        shot(page, "live_view_dark")
        page.evaluate("() => window.jupyterapp.commands.execute('apputils:change-theme', "
                      "{theme: 'JupyterLab Light'})")
    assert seen["anyRunningInside"], seen
    assert seen["used"] >= 0.75, seen  # under a quarter of the DAG's visible area is blank
    assert seen["labels"] >= 11, seen


def test_a_stage_chosen_while_it_waits_reads_running_then_done_by_itself(page, lab):
    open_and_run_all(page, lab, "forecast.ipynb")
    ready_view(page)
    page.locator(".pydags-view g[id='pydags-stage:compare']").click()
    head = ".pydags-view .pydags-inspector-head"
    assert re.search(r"compare · \S (pending|queued)", page.inner_text(head))
    assert "waiting for" in page.inner_text(".pydags-view .pydags-why")
    for status in ("skipped",):  # its upstream fails: it never runs, and the view says why
        page.wait_for_function(f"() => /compare · . {status}/.test("
                               f"document.querySelector({json.dumps(head)}).innerText)",
                               timeout=120_000)
    assert "skipped: `fit_prophet` failed" in page.inner_text(".pydags-view .pydags-why")
    page.locator(".pydags-view g[id='pydags-stage:fit_forest']").click()
    page.wait_for_function(f"() => /fit_forest · . done/.test("
                           f"document.querySelector({json.dumps(head)}).innerText)",
                           timeout=120_000)


def test_a_stage_followed_from_queued_to_done_and_the_inspector_after_retry(page, lab):
    open_and_run_all(page, lab, "retry.ipynb")
    ready_view(page)
    head = ".pydags-view .pydags-inspector-head"
    page.wait_for_function(f"() => /fit_prophet · . failed/.test("
                           f"document.querySelector({json.dumps(head)})?.innerText)",
                           timeout=120_000)  # nothing chosen: the failure is pinned
    page.locator(".pydags-view g[id='pydags-stage:score_prophet']").click()
    assert "skipped" in page.inner_text(head)
    (lab["root"] / "fixed.flag").write_text("")
    page.click(".pydags-view .pydags-retry")
    page.wait_for_function(f"() => /score_prophet · . (queued|running|pending|done)/.test("
                           f"document.querySelector({json.dumps(head)}).innerText)",
                           timeout=120_000)
    page.wait_for_function(f"() => /score_prophet · . done/.test("
                           f"document.querySelector({json.dumps(head)}).innerText)",
                           timeout=120_000)
    assert page.locator(".pydags-view .pydags-retry").count() == 0  # nothing failed now
    assert "failed" not in page.inner_text(".pydags-view .pydags-counts")


def test_twenty_clicks_during_a_run_of_200_short_stages_each_open_the_stage_clicked(page, lab):
    import random

    open_and_run_all(page, lab, "wide.ipynb")
    ready_view(page)
    page.wait_for_function("() => document.querySelector(\".pydags-view g[data-status="
                           "'running']\")", timeout=120_000)
    rng = random.Random(3)
    head = ".pydags-view .pydags-inspector-head"
    page.hover(".pydags-view .pydags-dag")  # as a user about to click: following pauses
    for name in (f"fit_{rng.randrange(200):03d}" for _ in range(20)):
        target = page.locator(f".pydags-view g[id='pydags-stage:{name}']")
        target.evaluate("g => g.scrollIntoView({block: 'center', inline: 'center'})")
        box = box_of(page, name)
        page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        assert page.inner_text(head).startswith(f"{name} ·"), (name, page.inner_text(head))


def test_the_search_box_finds_a_stage_of_200_and_shows_it_readable(page, lab):
    open_and_run_all(page, lab, "wide.ipynb")
    ready_view(page)
    page.click(".pydags-view .pydags-zoom_out")  # from a zoom too small to read
    page.click(".pydags-view .pydags-zoom_out")
    page.fill(".pydags-view .pydags-search", "fit_099")
    page.press(".pydags-view .pydags-search", "Enter")
    page.wait_for_function("""() => {
        const port = document.querySelector('.pydags-dag').getBoundingClientRect();
        const r = document.querySelector(".pydags-view g[id='pydags-stage:fit_099'] path")
            .getBoundingClientRect();
        return r.left >= port.left && r.right <= port.right && r.top >= port.top &&
               r.bottom <= port.bottom;
    }""", timeout=10_000)  # it scrolls there smoothly
    assert page.inner_text(".pydags-view .pydags-inspector-head").startswith("fit_099 ·")
    height = page.eval_on_selector(".pydags-view g[id='pydags-label:fit_099'] text",
                                   "t => t.getBoundingClientRect().height")
    assert height >= 11, height
    shot(page, "wide_search")


def test_at_800_pixels_wide_nothing_is_clipped(page, lab):
    page.set_viewport_size({"width": 800, "height": 900})
    open_and_run_all(page, lab, "forecast.ipynb")
    ready_view(page)
    page.wait_for_selector(".pydags-view .pydags-inspector-head", timeout=120_000)
    clipped = page.evaluate("""() => {
        const view = document.querySelector('.pydags-view');
        const outer = view.getBoundingClientRect();
        const out = [];
        if (view.scrollWidth > view.clientWidth + 1) out.push('the view scrolls sideways');
        for (const part of view.querySelectorAll(
                '.pydags-header > *, .pydags-tools > *, .pydags-inspector, .pydags-dag')) {
            const r = part.getBoundingClientRect();
            if (r.width && (r.left < outer.left - 1 || r.right > outer.right + 1))
                out.push(part.className + ' sticks out');
        }
        const header = view.querySelector('.pydags-header').getBoundingClientRect();
        if (header.height > 3 * 30) out.push('the header takes ' + header.height + ' px');
        return out;
    }""")
    shot(page, "narrow_view")
    assert clipped == [], clipped


def test_when_the_run_ends_the_view_stays_as_the_user_left_it(page, lab):
    open_and_run_all(page, lab, "forecast.ipynb")
    ready_view(page)
    page.locator(".pydags-view g[id='pydags-stage:split']").click()
    page.click(".pydags-view .pydags-zoom_in")
    width = page.get_attribute(".pydags-view .pydags-dag svg", "width")
    before = page.eval_on_selector(".jp-OutputArea", "o => o.getBoundingClientRect().height")
    page.wait_for_selector(".jp-OutputArea [id^='pydags-final-']", state="attached",
                           timeout=120_000)  # the run ended: the output is its final form
    page.wait_for_selector(".jp-OutputArea .pydags-view svg g[id^='pydags-stage:']")
    assert page.locator(".jp-OutputArea [id^='pydags-final-']").is_hidden()  # the report
    head = page.inner_text(".pydags-view .pydags-inspector-head")
    assert head.startswith("split · ✓ done"), head
    assert page.get_attribute(".pydags-view .pydags-dag svg", "width") == width
    after = page.eval_on_selector(".jp-OutputArea", "o => o.getBoundingClientRect().height")
    shot(page, "forecast_final")
    assert abs(after - before) <= 0.15 * before, (before, after)
    assert "1 failed" in page.inner_text(".pydags-view .pydags-counts")
    assert page.locator(".pydags-view .pydags-retry").count() == 0  # it needs the kernel
    page.click(".pydags-view .pydags-tab:has-text('Timeline')")
    facts = page.inner_text(".pydags-view .pydags-facts")
    assert "parallel efficiency" in facts and "critical path" in facts, facts
    page.locator(".pydags-view .pydags-bar").first.click()  # a bar inspects its stage
    shot(page, "forecast_final")


def test_jupyter_notebook_7_shows_the_live_view_and_then_the_report(page, lab):
    page.goto(f"{lab['base']}/notebooks/forecast.ipynb?token={lab['token']}")
    page.wait_for_selector(".jp-Notebook .jp-Cell .cm-content", timeout=60_000)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']",
                           state="attached", timeout=60_000)  # the kernel is up
    page.click(".jp-Notebook .jp-Cell .cm-content")
    page.keyboard.press("Shift+Enter")
    ready_view(page)
    page.wait_for_function("() => document.querySelector(\".pydags-view g[data-status="
                           "'running']\")", timeout=120_000)
    shot(page, "notebook7_live")
    page.wait_for_selector(".jp-OutputArea [id^='pydags-final-'] .pydags-report",
                           state="attached", timeout=120_000)
    report = page.text_content(".jp-OutputArea .pydags-report")
    assert "27/32 done" in report and "skipped: `fit_prophet` failed" in report, report
    page.wait_for_selector(".jp-OutputArea .pydags-view svg g[id^='pydags-stage:']")
    assert "27/32 done" in page.inner_text(".pydags-view .pydags-counts")


def test_keys_move_between_stages_and_the_pointer_zooms_and_pans(page, lab):
    sys.path.insert(0, str(Path(__file__).parent))
    from workload import wide_pipeline

    children = {n: set(wide_pipeline(200, 0.05).graph.successors(n)) for n in ("fit_000",)}
    open_and_run_all(page, lab, "wide.ipynb")
    ready_view(page)
    page.locator(".pydags-view g[id='pydags-stage:fit_000']").focus()
    page.keyboard.press("Enter")
    head = ".pydags-view .pydags-inspector-head"
    assert page.inner_text(head).startswith("fit_000 ·")
    page.keyboard.press("ArrowRight")  # along an edge, to a stage that takes fit_000's result
    page.keyboard.press("Enter")
    child = page.inner_text(head).split(" ·")[0]
    assert child in children["fit_000"], (child, children)
    svg = ".pydags-view .pydags-dag svg"
    width = page.eval_on_selector(svg, "s => s.getBoundingClientRect().width")
    port = page.eval_on_selector(".pydags-view .pydags-dag",
                                 "p => p.getBoundingClientRect().toJSON()")
    page.mouse.move(port["x"] + port["width"] / 2, port["y"] + port["height"] / 2)
    page.keyboard.down("Control")
    page.mouse.wheel(0, -300)  # Ctrl + wheel: zoom in about the pointer
    page.keyboard.up("Control")
    page.wait_for_function(f"() => document.querySelector({json.dumps(svg)})"
                           f".getBoundingClientRect().width > {width * 1.2}", timeout=10_000)
    left = page.eval_on_selector(".pydags-view .pydags-dag", "p => p.scrollLeft")
    page.mouse.down()
    page.mouse.move(port["x"] + port["width"] / 2 - 150, port["y"] + port["height"] / 2, steps=5)
    page.mouse.up()  # dragged to the left: the view moved right
    assert page.eval_on_selector(".pydags-view .pydags-dag", "p => p.scrollLeft") >= left + 100
    assert not page.locator(".pydags-view .pydags-follow-box").is_checked()  # the user took over

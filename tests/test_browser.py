"""The live widget in a real JupyterLab, driven by Playwright in Debian's headless Chromium."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import free_port

from pydags.status import PALETTE, StageStatus

pytestmark = pytest.mark.browser

CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run"]

LIVE_RUN = """
import time
from pydags import Pipeline, stage

@stage
def step(i, *upstream):
    time.sleep(0.4)
    return i

stages = []
for i in range(12):
    stages.append(step(i, *stages[-2:-1]).named(f"step_{i}"))
pipeline = Pipeline("live", stages)
run = pipeline.start(num_cores=2)
"""

CANCEL_RUN = """
import time
from pydags import Pipeline, stage

@stage
def nap(i):
    time.sleep(60)

pipeline = Pipeline("sleepy", [nap(i).named(f"nap_{i}") for i in range(6)])
handle = pipeline.start(num_cores=2, block=False)
"""

# Reads the widget's DAG picture back from the page: pixel counts of the given colours.
COUNT_COLOURS = """
async (colours) => {
  const img = document.querySelector('.jp-OutputArea-output .widget-image');
  if (!img || !img.complete || !img.naturalWidth) return null;
  const canvas = document.createElement('canvas');
  canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
  const ctx = canvas.getContext('2d');
  ctx.drawImage(img, 0, 0);
  const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  const counts = Object.fromEntries(colours.map(c => [c, 0]));
  for (let i = 0; i < data.length; i += 4) {
    const hex = '#' + [data[i], data[i + 1], data[i + 2]]
      .map(v => v.toString(16).padStart(2, '0')).join('');
    if (hex in counts) counts[hex] += 1;
  }
  return {src: img.src, counts: counts};
}
"""


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
    notebook(root / "live.ipynb", LIVE_RUN)
    notebook(root / "cancel.ipynb", CANCEL_RUN)
    port, token = free_port(), "pydags-test-token"
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(root / ".config"),
               JUPYTER_RUNTIME_DIR=str(root / ".runtime"), IPYTHONDIR=str(root / ".ipython"))
    log = (root / "server.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1",
         f"--port={port}", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
         "--allow-root", "--LabApp.news_url=", "--LabApp.check_for_updates_class="
         "jupyterlab.NeverCheckForUpdate"],
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
        yield page
        browser.close()


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


def colours(*statuses: StageStatus) -> list[str]:
    return [PALETTE[s].fill for s in statuses]


BOX = 2000  # a stage box has about 4,000 pixels; a legend swatch fewer than 200


def test_the_dag_picture_changes_during_the_run_and_ends_all_done(page, lab, tmp_path):
    open_and_run_all(page, lab, "live.ipynb")
    page.wait_for_selector(".widget-image", timeout=60_000)
    watched = colours(StageStatus.DONE, StageStatus.RUNNING, StageStatus.QUEUED,
                      StageStatus.PENDING)
    seen, running = set(), True
    deadline = time.time() + 180
    while running and time.time() < deadline:
        running = prompt(page) == "[*]:"
        sample = page.evaluate(COUNT_COLOURS, watched)
        if sample and running:
            seen.add(hashlib.sha1(json.dumps(sample["counts"]).encode()).hexdigest())
        time.sleep(0.15)
    page.screenshot(path=str(tmp_path / "live.png"))
    assert not running, "the cell did not finish"
    assert len(seen) >= 3, f"the picture changed only {len(seen)} times during the run"
    final = page.evaluate(COUNT_COLOURS, watched)["counts"]
    done, run_colour, queued, pending = (final[c] for c in watched)
    assert done >= 12 * BOX, final
    assert run_colour < BOX and queued < BOX and pending < BOX, final
    assert page.locator(".widget-progress .widget-label, .widget-inline-hbox label",
                        has_text="100%").count() >= 1


def test_the_cancel_button_cancels_a_non_blocking_run(page, lab, tmp_path):
    open_and_run_all(page, lab, "cancel.ipynb")
    page.wait_for_selector(".widget-image", timeout=60_000)
    page.wait_for_function("() => document.querySelector('.jp-Cell .jp-InputPrompt')"
                           ".textContent.trim() !== '[*]:'", timeout=60_000)
    running = PALETTE[StageStatus.RUNNING].fill
    page.wait_for_function(  # two stages shown running
        f"async () => ((await ({COUNT_COLOURS})({json.dumps([running])})) || "
        f"{{counts: {{'{running}': 0}}}}).counts['{running}'] >= {2 * BOX}", timeout=120_000)
    page.click("button.jupyter-button:has-text('Cancel')")
    cancelled = PALETTE[StageStatus.CANCELLED].fill
    deadline = time.time() + 120
    while time.time() < deadline:
        counts = (page.evaluate(COUNT_COLOURS, [cancelled]) or {"counts": {cancelled: 0}})
        if counts["counts"][cancelled] >= 6 * BOX:
            break
        time.sleep(0.2)
    page.screenshot(path=str(tmp_path / "cancelled.png"))
    assert counts["counts"][cancelled] >= 6 * BOX, counts

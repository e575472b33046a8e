"""Figures show in Jupyter as pictures, once, with no %matplotlib magic."""

from __future__ import annotations

import os
import sys

import nbformat
import pytest
from nbclient import NotebookClient

CELLS = [
    "from pydags.examples import tutorial\npipeline = tutorial.build()\npipeline.visualize()",
    "run = pipeline.start(num_cores=2, show=False)\nrun.timeline()",
    "import matplotlib.pyplot as plt  # the inline backend is on from here\n"
    "pipeline.visualize(status=run)",
    "pipeline",
]


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    env_path = os.pathsep.join(p for p in sys.path if p)
    os.environ.setdefault("PYTHONPATH", env_path)
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path_factory.mktemp("nb"))}}).execute()
    return notebook


@pytest.mark.parametrize("cell", range(len(CELLS)))
def test_each_figure_cell_shows_one_picture(executed, cell):
    outputs = executed.cells[cell].outputs
    pictures = [o for o in outputs if "image/png" in o.get("data", {})
                or "image/svg+xml" in o.get("data", {})]
    assert len(pictures) == 1, outputs
    assert not any(o.get("output_type") == "error" for o in outputs)
    png = pictures[0]["data"].get("image/png")
    if png is not None:
        assert pictures[0].get("metadata", {}).get("image/png", {}).get("width")

"""A run's final state as static HTML: the coloured DAG and a table of its stages.

It is what a notebook keeps once the live view has gone: it needs no kernel, no widget
and no network, so it shows in a saved notebook, an HTML export and static viewers alike.
Each stage's output, result and traceback open with a click (``<details>``).
"""

from __future__ import annotations

import base64
import html
from typing import TYPE_CHECKING

from pydags.status import PALETTE
from pydags.views.draw import Drawing

if TYPE_CHECKING:
    import networkx as nx

    from pydags.recorder import Snapshot
    from pydags.records import StageRecord

OUTPUT_SHOWN = 20_000  # characters of a stage's output kept in the page


def run_html(graph: nx.DiGraph, run: Snapshot) -> str:
    """The run's DAG in its final colours, its totals, and one row per stage."""
    drawing = Drawing(graph, legend="present")
    drawing.update(run.status)
    rows = "".join(_row(record, run) for record in run.stage_records.values())
    return (f'<div class="pydags-report" style="font-family:sans-serif;font-size:13px">'
            f"<div><b>{html.escape(run.pipeline_name)}</b> · {html.escape(summary(run))}</div>"
            f'<div style="overflow:auto;max-height:80vh">{_image(drawing.svg(), run)}</div>'
            f'<table style="border-collapse:collapse">'
            f"<tr>{_th('stage')}{_th('status')}{_th('time', 'right')}{_th('worker')}"
            f"{_th('details')}</tr>"
            f"{rows}</table></div>")


def summary(run: Snapshot) -> str:
    """``4/6 done · 1 failed · 1 skipped · 3.21s``: counts only for statuses present."""
    return f"{run.summary} · {(run.wall_time or 0.0):.2f}s"


def _row(record: StageRecord, run: Snapshot) -> str:
    look = PALETTE[record.status]
    chip = (f'<span style="background:{look.fill};border:1px solid {look.edge};'
            f'padding:0 4px;border-radius:3px;color:#111">{record.status.value}</span>')
    took = f"{record.duration:.2f}s" if record.duration is not None else ""
    details = []
    if record.cache:
        details.append(html.escape(record.cache))
    if len(record.attempts) > 1:
        details.append(f"{len(record.attempts)} attempts")
    if record.name in run.items:
        details.append(html.escape(run.items[record.name].summary()))
    parts = []
    if record.error is not None:
        parts.append(_details("traceback", f"<pre>{html.escape(str(record.error))}</pre>",
                              open_=True))
    if record.output:
        parts.append(_details("output", f"<pre>{html.escape(record.output[-OUTPUT_SHOWN:])}"
                                        "</pre>"))
    try:
        result = run.results.preview(record.name)
    except RuntimeError:  # a run whose results were let go
        result = ""
    if result:
        parts.append(_details("result", result))
    return (f'<tr id="pydags-{html.escape(record.name)}" style="border-top:1px solid #8884">'
            f'<td style="text-align:left">{html.escape(record.name)}</td><td>{chip}</td>'
            f"<td align=right>{took}</td>"
            f'<td style="text-align:left">{html.escape(record.worker or "")}</td>'
            f'<td style="text-align:left">{" · ".join(details)}{"".join(parts)}</td></tr>')


def _th(title: str, align: str = "left") -> str:
    # JupyterLab right-aligns table cells unless told otherwise
    return f'<th style="text-align:{align}">{title}</th>'


def _details(title: str, body: str, open_: bool = False) -> str:
    return (f"<details{' open' if open_ else ''}><summary>{title}</summary>"
            f'<div style="max-height:20em;overflow:auto">{body}</div></details>')


def _image(svg: str, run: Snapshot) -> str:
    """The SVG as an image: notebook front ends keep it when they sanitize the HTML of an
    untrusted notebook (they strip inline SVG), and it needs no network."""
    data = base64.b64encode(svg.encode()).decode("ascii")
    return (f'<img alt="DAG of {html.escape(run.pipeline_name)}: {html.escape(summary(run))}" '
            f'src="data:image/svg+xml;base64,{data}" style="max-width:none">')

"""A run's final state as static HTML: the coloured DAG and a table of its stages.

It is what a notebook keeps once the live view has gone: it needs no kernel, no widget
and no network, so it shows in a saved notebook, an HTML export and static viewers alike.
Each stage's output, result and traceback open with a click (``<details>``).
"""

from __future__ import annotations

import base64
import html
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING

from pydags.status import PALETTE, StageStatus
from pydags.views.draw import Drawing

if TYPE_CHECKING:
    import networkx as nx

    from pydags.recorder import Snapshot
    from pydags.records import StageRecord

OUTPUT_SHOWN = 20_000  # characters of a stage's output kept in the page
PRE = 'style="white-space:pre;word-break:normal;overflow-wrap:normal"'  # lines whole


def run_html(graph: nx.DiGraph, run: Snapshot) -> str:
    """The run's DAG in its final colours with each stage's time, its totals, and one row
    per stage: failures first, then the rest in the pipeline's order."""
    drawing = Drawing(graph, legend="present")
    drawing.update(run.status)
    drawing.annotate({name: f"{r.duration:.1f}s" for name, r in run.stage_records.items()
                      if r.duration is not None and name in graph})
    records = sorted(run.stage_records.values(), key=lambda r: r.status is not StageStatus.FAILED)
    rows = "".join(_row(record, run) for record in records)
    return (f'<div class="pydags-report" style="font-family:sans-serif;font-size:13px">'
            f"<div><b>{html.escape(run.pipeline_name)}</b> · {html.escape(summary(run))}</div>"
            f'<div style="overflow:auto;max-height:80vh">'
            f"{_image(drawing, run.pipeline_name, summary(run), run.status, rows=True)}</div>"
            f'<table style="border-collapse:collapse">'
            f"<tr>{_th('stage')}{_th('status')}{_th('time', 'right')}{_th('worker')}"
            f"{_th('details')}</tr>"
            f"{rows}</table></div>")


def plan_html(graph: nx.DiGraph, title: str, status: Mapping[str, str], caption: str) -> str:
    """A pipeline before its first run: its DAG, each stage pending, or stale or fresh."""
    drawing = Drawing(graph, legend="present")
    drawing.update(status)
    return (f'<div class="pydags-report" style="font-family:sans-serif;font-size:13px">'
            f"<div><b>{html.escape(title)}</b> · {html.escape(caption)}</div>"
            f'<div style="overflow:auto;max-height:80vh">'
            f"{_image(drawing, title, caption, status)}</div></div>")


def summary(run: Snapshot) -> str:
    """``4/6 done · 1 failed · 1 skipped · 3.21s``: counts only for statuses present."""
    return f"{run.summary} · {(run.wall_time or 0.0):.2f}s"


def _row(record: StageRecord, run: Snapshot) -> str:
    look = PALETTE[record.status]
    chip = (f'<span style="background:{look.fill};border:1px solid {look.edge};'
            f'padding:0 4px;border-radius:3px;color:{look.text};white-space:nowrap">'
            f"{look.glyph} {record.status.value}</span>")
    took = f"{record.duration:.2f}s" if record.duration is not None else ""
    details = []
    if record.status is StageStatus.SKIPPED:
        details.append(html.escape(why_skipped(record.name, run)))
    if record.cache:
        details.append(html.escape(record.cache))
    if len(record.attempts) > 1:
        details.append(f"{len(record.attempts)} attempts")
    if record.name in run.items:
        details.append(html.escape(run.items[record.name].summary()))
    parts = []
    if record.error is not None:
        parts.append(_details("traceback", f"<pre {PRE}>{html.escape(str(record.error))}</pre>",
                              open_=True))
    if record.output:
        parts.append(_details("output", f"<pre {PRE}>{html.escape(record.output[-OUTPUT_SHOWN:])}"
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


def why_skipped(name: str, run: Snapshot) -> str:
    """``skipped: `train` failed``: the nearest stage upstream that failed or was cancelled."""
    queue, seen = list(run.dependencies.get(name, ())), set()
    while queue:
        upstream = queue.pop(0)
        if upstream in seen:
            continue
        seen.add(upstream)
        status = run.stage_records[upstream].status
        if status in (StageStatus.FAILED, StageStatus.CANCELLED):
            return f"skipped: `{upstream}` {status.value}"
        queue += sorted(run.dependencies.get(upstream, ()))
    return "skipped: a stage it needs did not succeed"


def _th(title: str, align: str = "left") -> str:
    # JupyterLab right-aligns table cells unless told otherwise
    return f'<th style="text-align:{align}">{title}</th>'


def _details(title: str, body: str, open_: bool = False) -> str:
    return (f"<details{' open' if open_ else ''}><summary>{title}</summary>"
            f'<div style="max-height:20em;overflow:auto">{body}</div></details>')


def _image(drawing: Drawing, title: str, caption: str, status: Mapping[str, object],
           rows: bool = False) -> str:
    """The SVG as an image: notebook front ends keep it when they sanitize the HTML of an
    untrusted notebook (they strip inline SVG), and it needs no network. Each stage's box
    has its status as a tooltip, and links to its row (an image map) when there are rows."""
    data = base64.b64encode(drawing.svg("white").encode()).decode("ascii")
    name = f"pydags-map-{uuid.uuid4().hex[:12]}"
    areas = "".join(
        f'<area shape="rect" coords="{",".join(map(str, box))}" '
        + (f'href="#pydags-{html.escape(str(node))}" ' if rows else "") +
        f'alt="{html.escape(str(node))}" title="{html.escape(str(node))}: '
        f'{html.escape(str(getattr(status[node], "value", status[node])))}">'
        for node, box in drawing.regions().items() if node in status)
    return (f'<img alt="DAG of {html.escape(title)}: {html.escape(caption)}" '
            f'src="data:image/svg+xml;base64,{data}" style="max-width:none" '
            f'usemap="#{name}"><map name="{name}">{areas}</map>')

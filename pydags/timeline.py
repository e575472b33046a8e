"""Where the time went: a run's Gantt chart, its efficiency figures, and run comparison."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from pydags.draw import InlineFigure
from pydags.run import Attempt
from pydags.status import PALETTE

if TYPE_CHECKING:
    from pydags.run import Run


LABEL_SIZE = 9
LABEL_POINTS_PER_CHAR = 0.6 * LABEL_SIZE  # a DejaVu Sans character is about this wide


def figures(run: Run) -> dict[str, Any]:
    """Wall time, total stage time, workers used, parallel efficiency and the longest stage."""
    bars = [a for r in run.stage_records.values() for a in r.attempts if a.end is not None]
    workers = sorted({a.worker for a in bars}) or ["-"]
    if not bars:
        return dict(wall=0.0, work=0.0, workers=len(workers), efficiency=0.0, longest=None)
    start = min(a.start for a in bars)
    wall = max(a.end for a in bars) - start
    work = sum(a.end - a.start for a in bars)
    longest = max(run.stage_records.values(), key=lambda r: r.duration or 0.0)
    efficiency = work / (wall * len(workers)) if wall > 0 else 1.0
    return dict(wall=wall, work=work, workers=len(workers), efficiency=efficiency,
                longest=(longest.name, longest.duration or 0.0))


def efficiency_summary(run: Run) -> str:
    """The figures as one line of text."""
    f = figures(run)
    longest = ""
    if f["longest"]:
        longest = f"; longest stage {f['longest'][0]} ({f['longest'][1]:.2f}s)"
    return (f"wall {f['wall']:.2f}s, stage time {f['work']:.2f}s on {f['workers']} worker(s), "
            f"parallel efficiency {f['efficiency']:.0%}{longest}")


def critical_path(run: Run) -> list[str]:
    """The chain of stages that ended last, following the latest-ending dependency back."""
    records = run.stage_records
    ended = [r for r in records.values() if r.end is not None]
    if not ended:
        return []
    path = [max(ended, key=lambda r: r.end).name]
    while True:
        deps = [records[d] for d in run.dependencies.get(path[-1], ()) if records[d].end]
        if not deps:
            return path[::-1]
        path.append(max(deps, key=lambda r: r.end).name)


def draw_timeline(run: Run, ax: Any = None) -> Figure:
    """One row per worker, one bar per stage attempt in its status colour."""
    now = time.time()  # attempts still running are drawn up to now
    bars = [(r.name, a if a.end is not None else Attempt(a.number, a.worker, a.start, now))
            for r in run.stage_records.values() for a in r.attempts]
    workers = sorted({a.worker for _, a in bars})
    row = {w: i for i, w in enumerate(workers)}
    if ax is None:
        figure = InlineFigure(figsize=(9, 1.2 + 0.55 * max(len(workers), 1)), dpi=100)
        ax = figure.add_subplot()
    figure = ax.figure
    origin = min((a.start for _, a in bars), default=0.0)
    wall = max((a.end for _, a in bars), default=origin + 1.0) - origin
    span = wall * 1.02 if wall > 0 else 1.0
    points_per_second = 0.85 * ax.get_position().width * figure.get_figwidth() * 72 / span
    on_path = set(critical_path(run))
    for name, attempt in bars:
        look = PALETTE[attempt.status]
        x, width = attempt.start - origin, attempt.end - attempt.start
        y = row[attempt.worker] - 0.38
        ax.add_patch(Rectangle((x, y), width, 0.76, facecolor=look.fill, hatch=look.hatch,
                               edgecolor="black" if name in on_path else look.edge,
                               linewidth=2.2 if name in on_path else 0.8, gid=name))
        if width * points_per_second > LABEL_POINTS_PER_CHAR * (len(name) + 1):  # it fits
            ax.text(x + width / 2, row[attempt.worker], name, ha="center", va="center",
                    fontsize=LABEL_SIZE, clip_on=True)
    ax.set_xlim(0, span)
    ax.set_ylim(-0.6, len(workers) - 0.4)
    ax.set_yticks(range(len(workers)), workers)
    ax.invert_yaxis()
    ax.set_xlabel("seconds since the first stage started")
    ax.set_title(efficiency_summary(run) + "\n(black borders: critical path)", fontsize=8.5)
    figure.tight_layout()
    return figure


def compare_runs(before: Run, after: Run) -> list[dict[str, Any]]:
    """Per stage in both runs: seconds before and after and the change, biggest change first."""
    rows = []
    for name, seconds in after.durations.items():
        if name in before.durations:
            old = before.durations[name]
            rows.append(dict(stage=name, before=old, after=seconds, change=seconds - old,
                             ratio=seconds / old if old else float("inf")))
    return sorted(rows, key=lambda r: -abs(r["change"]))

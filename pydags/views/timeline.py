"""Where the time went: a run's Gantt chart, its efficiency figures, and run comparison."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, NamedTuple

from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from pydags.status import PALETTE, StageStatus
from pydags.views.draw import InlineFigure

if TYPE_CHECKING:
    from pydags.items import Items
    from pydags.recorder import Snapshot


LABEL_SIZE = 9
LABEL_POINTS_PER_CHAR = 0.6 * LABEL_SIZE  # a DejaVu Sans character is about this wide


class Bar(NamedTuple):
    """One bar of the timeline: a stage attempt, or items of a mapped stage run in a row."""

    label: str
    stage: str
    worker: str
    start: float
    end: float
    status: StageStatus
    attempt: int


def bars(run: Snapshot, now: float | None = None, *, maps: bool = True) -> list[Bar]:
    """Every bar of the run's timeline (``maps=False``: but the mapped stages'); what still
    runs ends ``now``."""
    now = time.time() if now is None else now
    found = []
    for record in run.stage_records.values():
        items = run.items.get(record.name)
        if items is not None:
            if maps:
                found += item_bars(record.name, items, now)
            continue
        found += [Bar(record.name, record.name, a.worker, a.start, a.end or now, a.status,
                      a.number) for a in record.attempts]
    return found


def item_bars(stage: str, items: Items, now: float) -> list[Bar]:
    """The bars of a mapped stage's items: those run in a row with one outcome make one."""
    return [Bar(label, stage, *rest) for label, *rest in items.spans(stage, now)]


def figures(run: Snapshot) -> dict[str, Any]:
    """Wall time, total stage time, workers used, parallel efficiency and the longest stage."""
    ended = [b for b in bars(run) if b.status is not StageStatus.RUNNING]
    workers = sorted({b.worker for b in ended}) or ["-"]
    if not ended:
        return dict(wall=0.0, work=0.0, workers=len(workers), efficiency=0.0, longest=None)
    start = min(b.start for b in ended)
    wall = max(b.end for b in ended) - start
    work = sum(b.end - b.start for b in ended)
    longest = max(run.stage_records.values(), key=lambda r: r.duration or 0.0)
    efficiency = work / (wall * len(workers)) if wall > 0 else 1.0
    return dict(wall=wall, work=work, workers=len(workers), efficiency=efficiency,
                longest=(longest.name, longest.duration or 0.0))


def efficiency_summary(run: Snapshot) -> str:
    """The figures as one line of text."""
    f = figures(run)
    longest = ""
    if f["longest"]:
        longest = f"; longest stage {f['longest'][0]} ({f['longest'][1]:.2f}s)"
    return (f"wall {f['wall']:.2f}s, stage time {f['work']:.2f}s on {f['workers']} worker(s), "
            f"parallel efficiency {f['efficiency']:.0%}{longest}")


def critical_path(run: Snapshot) -> list[str]:
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


def draw_timeline(run: Snapshot, ax: Any = None) -> Figure:
    """One row per worker, one bar per stage attempt (per run of items, for a mapped stage)
    in its status colour."""
    drawn = bars(run)
    workers = sorted({b.worker for b in drawn})
    row = {w: i for i, w in enumerate(workers)}
    if ax is None:
        figure = InlineFigure(figsize=(9, 1.2 + 0.55 * max(len(workers), 1)), dpi=100)
        ax = figure.add_subplot()
    figure = ax.figure
    origin = min((b.start for b in drawn), default=0.0)
    wall = max((b.end for b in drawn), default=origin + 1.0) - origin
    span = wall * 1.02 if wall > 0 else 1.0
    points_per_second = 0.85 * ax.get_position().width * figure.get_figwidth() * 72 / span
    on_path = set(critical_path(run))
    for bar in drawn:
        look = PALETTE[bar.status]
        x, width = bar.start - origin, bar.end - bar.start
        y = row[bar.worker] - 0.38
        critical = bar.stage in on_path
        ax.add_patch(Rectangle((x, y), width, 0.76, facecolor=look.fill,
                               edgecolor="black" if critical else look.edge,
                               linewidth=2.2 if critical else 0.8, gid=bar.label))
        if width * points_per_second > LABEL_POINTS_PER_CHAR * (len(bar.label) + 1):  # it fits
            ax.text(x + width / 2, row[bar.worker], bar.label, ha="center", va="center",
                    fontsize=LABEL_SIZE, clip_on=True)
    ax.set_xlim(0, span)
    ax.set_ylim(-0.6, len(workers) - 0.4)
    ax.set_yticks(range(len(workers)), workers)
    ax.invert_yaxis()
    ax.set_xlabel("seconds since the first stage started")
    ax.set_title(efficiency_summary(run) + "\n(black borders: critical path)", fontsize=8.5)
    figure.tight_layout()
    return figure


def compare_runs(before: Snapshot, after: Snapshot) -> list[dict[str, Any]]:
    """Per stage in both runs: seconds before and after and the change, biggest change first."""
    rows = []
    for name, seconds in after.durations.items():
        if name in before.durations:
            old = before.durations[name]
            rows.append(dict(stage=name, before=old, after=seconds, change=seconds - old,
                             ratio=seconds / old if old else float("inf")))
    return sorted(rows, key=lambda r: -abs(r["change"]))

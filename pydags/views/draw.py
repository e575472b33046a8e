"""Draw a DAG left to right with matplotlib: a Figure, or SVG whose stages a front end
can find and recolour.

The layout is layered (Sugiyama style): a stage's column is its longest path from a
source, and a source stands just before its first consumer (as Graphviz ``dot`` puts it);
long edges get invisible waypoints so they run between boxes, and the order in each
column is improved by barycentre sweeps to reduce crossings. ``Drawing.update`` changes
only colours (and the legend).
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Mapping

import networkx as nx
from matplotlib import rc_context
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch, Patch

from pydags.status import LOOKS, Look, StageStatus

BOX_WIDTH = 1.7  # inches; one data unit is one inch
LINE_CHARS = 20  # characters per label line at FONT_SIZE
EDGE = "#6b6b6b"  # arrows and legend text: a grey that reads on light and dark pages
FONT_SIZE = 8.5
GAP_X, GAP_Y = 0.8, 0.25
LINE_HEIGHT = 0.17
MARGIN = 0.3
SWEEPS = 4


def wrap_label(name: str, width: int = LINE_CHARS) -> list[str]:
    """Split ``name`` into lines of at most ``width`` characters, preferring _ - . and spaces."""
    lines = []
    while len(name) > width:
        cut = max(name.rfind(c, 0, width) for c in "_-. ")
        cut = cut + 1 if cut > width // 3 else width
        lines.append(name[:cut])
        name = name[cut:]
    return [*lines, name]


def layered_layout(graph: nx.DiGraph) -> tuple[dict[object, tuple[int, int]], list[list]]:
    """Column and row of every node (waypoints of long edges included), and the columns."""
    column = {}
    for depth, generation in enumerate(nx.topological_generations(graph)):
        for node in generation:
            column[node] = depth
    for node in graph:  # a source waits next to the first stage that takes it
        if graph.in_degree(node) == 0 and graph.out_degree(node):
            column[node] = min(column[s] for s in graph.successors(node)) - 1
    routed = nx.DiGraph()
    routed.add_nodes_from(graph)
    for u, v in graph.edges:
        chain = [u, *[("waypoint", u, v, c) for c in range(column[u] + 1, column[v])], v]
        for a, b in itertools.pairwise(chain):
            column.setdefault(b, column[a] + 1)
            routed.add_edge(a, b)
    columns: list[list] = [[] for _ in range(max(column.values(), default=-1) + 1)]
    for node in routed:  # insertion order: stable and deterministic
        columns[column[node]].append(node)
    for sweep in range(SWEEPS):
        down = sweep % 2 == 0
        order = range(1, len(columns)) if down else range(len(columns) - 2, -1, -1)
        for c in order:
            neighbour = columns[c - 1] if down else columns[c + 1]
            place = {n: i for i, n in enumerate(neighbour)}
            near = routed.predecessors if down else routed.successors

            def barycentre(node: object, place: dict = place, near=near) -> float:
                spots = [place[m] for m in near(node) if m in place]
                return sum(spots) / len(spots) if spots else -1.0

            current = {n: i for i, n in enumerate(columns[c])}
            columns[c].sort(key=lambda n: (b if (b := barycentre(n)) >= 0 else current[n]))
    rows = {node: (c, r) for c, nodes in enumerate(columns) for r, node in enumerate(nodes)}
    return rows, columns


class Drawing:
    """One pipeline drawn once; ``update`` recolours, ``png`` repaints what changed."""

    def __init__(self, graph: nx.DiGraph, ax=None, *, layout: str = "layered",
                 figsize: tuple[float, float] | None = None, legend: str = "present"):
        if layout != "layered":
            raise ValueError(f"layout must be 'layered', not {layout!r}")
        self.graph = graph
        self.legend = legend  # "present": the statuses drawn; "all": every status
        grid, columns = layered_layout(graph)
        labels = {n: wrap_label(str(n)) for n in graph}
        lines = max((len(v) for v in labels.values()), default=1)
        self.box_height = 0.22 + LINE_HEIGHT * lines
        row = self.box_height + GAP_Y
        tallest = max((len(c) for c in columns), default=1)
        centre = {}
        for node, (c, r) in grid.items():
            offset = (tallest - len(columns[c])) / 2
            centre[node] = (MARGIN + c * (BOX_WIDTH + GAP_X) + BOX_WIDTH / 2,
                            MARGIN + (tallest - 1 - r - offset) * row + self.box_height / 2)
        width = 2 * MARGIN + len(columns) * BOX_WIDTH + max(len(columns) - 1, 0) * GAP_X
        self._legend_columns = max(1, int(max(width, 3.0) / 1.05))
        entries = len(LOOKS) if legend == "all" else 4
        band = 0.2 + 0.22 * -(-entries // self._legend_columns)  # room for the legend rows
        height = 2 * MARGIN + tallest * row - GAP_Y + band
        if ax is None:
            size = figsize or (max(width, 3.0), max(height, 1.6))
            self.figure = InlineFigure(figsize=size, dpi=100)
            ax = self.figure.add_axes((0, 0, 1, 1))
        else:
            self.figure = ax.figure
        self.ax = ax
        ax.set_xlim(0, max(width, 3.0))
        ax.set_ylim(-band, max(height, 1.6) - band)
        ax.set_aspect("equal", adjustable="datalim")
        ax.axis("off")
        self._draw_edges(grid, centre)
        self.boxes: dict[object, FancyBboxPatch] = {}
        self.texts = {}
        for node in graph:
            x, y = centre[node]
            if graph.nodes[node].get("mapped"):  # a stack of cards: one per item
                for step in (2, 1):
                    ax.add_patch(FancyBboxPatch(
                        (x - BOX_WIDTH / 2 + 0.05 * step, y - self.box_height / 2 + 0.05 * step),
                        BOX_WIDTH, self.box_height, boxstyle="round,pad=0,rounding_size=0.08",
                        linewidth=1.0, zorder=1.5 - 0.1 * step, facecolor="#fafafa",
                        edgecolor="#8c8c8c"))
            box = FancyBboxPatch((x - BOX_WIDTH / 2, y - self.box_height / 2), BOX_WIDTH,
                                 self.box_height, boxstyle="round,pad=0,rounding_size=0.08",
                                 linewidth=1.4, zorder=2, gid=str(node))
            ax.add_patch(box)
            self.boxes[node] = box
            self.texts[node] = ax.text(x, y, "\n".join(labels[node]), ha="center", va="center",
                                       fontsize=FONT_SIZE, zorder=3, linespacing=1.15,
                                       family="DejaVu Sans")
        self.status: dict[object, str] = {}  # node -> the look it is drawn with
        self._legend = None
        self.update({})

    def _draw_edges(self, grid: dict, centre: dict) -> None:
        segments, heads = [], []
        half = BOX_WIDTH / 2
        for u, v in self.graph.edges:
            cu, cv = grid[u][0], grid[v][0]
            waypoints = [centre[("waypoint", u, v, c)] for c in range(cu + 1, cv)]
            points = [(centre[u][0] + half, centre[u][1])]
            for x, y in waypoints:
                points += [(x - half, y), (x + half, y)]
            points.append((centre[v][0] - half - 0.06, centre[v][1]))
            segments.append(points)
            heads.append((centre[v][0] - half - 0.05, centre[v][1]))
        self.edges = LineCollection(segments, colors=EDGE, linewidths=1.0, zorder=1)
        self.ax.add_collection(self.edges)
        if heads:
            xs, ys = zip(*heads, strict=True)
            self.ax.scatter(xs, ys, marker=">", s=22, color=EDGE, zorder=1, linewidths=0)

    def update(self, status: Mapping[str, StageStatus | str]) -> None:
        """Colour each stage by its status, or as "stale" or "fresh" before a run (stages not
        named stay as they are, or pending)."""
        for node in self.graph:
            new = str(status.get(node, self.status.get(node, StageStatus.PENDING.value)))
            if self.status.get(node) == new:
                continue
            _apply(self.boxes[node], LOOKS[new])
            self.status[node] = new
        present = set(self.status.values())
        shown = [s for s in LOOKS if self.legend == "all" or s in present]
        if self._legend is None or self._legend_statuses != shown:
            if self._legend is not None:
                self._legend.remove()
            handles = [Patch(facecolor=LOOKS[s].fill, edgecolor=LOOKS[s].edge,
                             linestyle=LOOKS[s].linestyle, hatch=LOOKS[s].hatch,
                             label=s) for s in shown]
            columns = min(len(shown), self._legend_columns) or 1
            self._legend = self.ax.legend(handles=handles, loc="lower left", ncol=columns,
                                          frameon=False, fontsize=FONT_SIZE,
                                          labelcolor=EDGE,  # read on light and dark pages
                                          bbox_to_anchor=(0, 0), handlelength=1.6)
            self._legend_statuses = shown

    def svg(self) -> str:
        """The drawing as SVG text: labels stay text (crisp at any zoom, themeable), each
        stage's box is the group ``id="pydags-stage:NAME"``, and the same drawing always
        gives the same text."""
        for node, box in self.boxes.items():
            box.set_gid(f"pydags-stage:{node}")
        out = io.StringIO()
        try:
            with rc_context({"svg.fonttype": "none", "svg.hashsalt": "pydags"}):
                self.figure.savefig(out, format="svg", transparent=True,
                                    metadata={"Date": None})
        finally:
            for node, box in self.boxes.items():
                box.set_gid(str(node))
        return out.getvalue()


def _apply(box: FancyBboxPatch, look: Look) -> None:
    box.set_facecolor(look.fill)
    box.set_edgecolor(look.edge)
    box.set_linestyle(look.linestyle)
    box.set_hatch(look.hatch)


class InlineFigure(Figure):
    """A matplotlib Figure that shows itself in Jupyter, with no ``%matplotlib`` magic: as a
    PNG at twice its size, shown at its size, so it stays sharp on high-density screens."""

    def _repr_png_(self) -> tuple[bytes, dict[str, int]]:
        out = io.BytesIO()
        self.savefig(out, format="png", dpi=2 * self.dpi)
        width, height = self.get_size_inches() * self.dpi
        return out.getvalue(), {"width": round(width), "height": round(height)}

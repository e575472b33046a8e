"""Draw a DAG left to right with matplotlib, and recolour it cheaply as statuses change.

The layout is layered (Sugiyama style): a stage's column is its longest path from a
source, long edges get invisible waypoints so they run between boxes, and the order in
each column is improved by barycentre sweeps to reduce crossings. ``Drawing.update``
changes only colours; ``Drawing.png`` repaints only the stages whose status changed.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Mapping

import networkx as nx
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch, Patch

from pydags.status import PALETTE, StageStatus

BOX_WIDTH = 1.7  # inches; one data unit is one inch
LINE_CHARS = 20  # characters per label line at FONT_SIZE
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
                 figsize: tuple[float, float] | None = None, dpi: float = 100,
                 max_pixels: float | None = None, legend: str = "present"):
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
        height = 2 * MARGIN + tallest * row - GAP_Y + 0.45  # room for the legend
        if ax is None:
            size = figsize or (max(width, 3.0), max(height, 1.6))
            if max_pixels:  # a huge DAG is drawn smaller rather than slower
                dpi = min(dpi, (max_pixels / (size[0] * size[1])) ** 0.5)
            self.figure = Figure(figsize=size, dpi=dpi)
            ax = self.figure.add_axes((0, 0, 1, 1))
        else:
            self.figure = ax.figure
        self.ax = ax
        ax.set_xlim(0, max(width, 3.0))
        ax.set_ylim(-0.45, max(height, 1.6) - 0.45)
        ax.set_aspect("equal", adjustable="datalim")
        ax.axis("off")
        self._draw_edges(grid, centre)
        self.boxes: dict[object, FancyBboxPatch] = {}
        self.texts = {}
        for node in graph:
            x, y = centre[node]
            box = FancyBboxPatch((x - BOX_WIDTH / 2, y - self.box_height / 2), BOX_WIDTH,
                                 self.box_height, boxstyle="round,pad=0,rounding_size=0.08",
                                 linewidth=1.4, zorder=2, gid=str(node))
            ax.add_patch(box)
            self.boxes[node] = box
            self.texts[node] = ax.text(x, y, "\n".join(labels[node]), ha="center", va="center",
                                       fontsize=FONT_SIZE, zorder=3, linespacing=1.15,
                                       gid=str(node), family="DejaVu Sans")
        self.status: dict[object, StageStatus] = {}
        self._legend = None
        self._background = None
        self._pixels: dict = {}  # each box's area on the canvas, padded for its border
        self._dirty: set = set()
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
        self.edges = LineCollection(segments, colors="#6b6b6b", linewidths=1.0, zorder=1)
        self.ax.add_collection(self.edges)
        if heads:
            xs, ys = zip(*heads, strict=True)
            self.ax.scatter(xs, ys, marker=">", s=22, color="#6b6b6b", zorder=1, linewidths=0)

    def update(self, status: Mapping[str, StageStatus]) -> None:
        """Colour each stage by its status (stages not named stay as they are, or pending)."""
        for node in self.graph:
            new = StageStatus(status.get(node, self.status.get(node, StageStatus.PENDING)))
            if self.status.get(node) is new:
                continue
            look = PALETTE[new]
            box = self.boxes[node]
            box.set_facecolor(look.fill)
            box.set_edgecolor(look.edge)
            box.set_linestyle(look.linestyle)
            box.set_hatch(look.hatch)
            self.texts[node].set_color("white" if new in _DARK else "black")
            self.status[node] = new
            self._dirty.add(node)
        present = set(self.status.values())
        shown = [s for s in StageStatus if self.legend == "all" or s in present]
        if self._legend is None or self._legend_statuses != shown:
            if self._legend is not None:
                self._legend.remove()
            handles = [Patch(facecolor=PALETTE[s].fill, edgecolor=PALETTE[s].edge,
                             linestyle=PALETTE[s].linestyle, hatch=PALETTE[s].hatch,
                             label=s.value) for s in shown]
            self._legend = self.ax.legend(handles=handles, loc="lower left", ncol=len(shown),
                                          frameon=False, fontsize=FONT_SIZE,
                                          bbox_to_anchor=(0, 0), handlelength=1.6)
            self._legend_statuses = shown
            self._background = None  # the legend changed: next png() repaints everything

    def png(self) -> bytes:
        """The drawing as PNG bytes, repainting only the stages that changed since last time."""
        canvas = self.figure.canvas
        if not isinstance(canvas, FigureCanvasAgg):
            canvas = FigureCanvasAgg(self.figure)
        if self._background is None:
            for artist in (*self.boxes.values(), *self.texts.values()):
                artist.set_visible(False)
            canvas.draw()
            self._background = canvas.copy_from_bbox(self.figure.bbox)
            for artist in (*self.boxes.values(), *self.texts.values()):
                artist.set_visible(True)
            self._dirty = set(self.graph)
            renderer = canvas.get_renderer()
            self._pixels = {n: b.get_window_extent(renderer).padded(3)
                            for n, b in self.boxes.items()}
        for node in self._dirty:
            box, bbox = self.boxes[node], self._pixels[node]
            canvas.restore_region(self._background, bbox=_ints(bbox), xy=(bbox.x0, bbox.y0))
            self.ax.draw_artist(box)
            self.ax.draw_artist(self.texts[node])
        self._dirty = set()
        return _encode(canvas)


_DARK = {StageStatus.DONE, StageStatus.FAILED}


def _ints(bbox) -> tuple[int, int, int, int]:
    return int(bbox.x0), int(bbox.y0), int(bbox.x1) + 1, int(bbox.y1) + 1


def _encode(canvas: FigureCanvasAgg) -> bytes:
    from PIL import Image

    width, height = canvas.get_width_height(physical=True)
    image = Image.frombuffer("RGBA", (width, height), canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=1)
    return out.getvalue()


def figure_png(figure: Figure) -> bytes:
    """Render a whole figure to PNG bytes."""
    canvas = figure.canvas
    if not isinstance(canvas, FigureCanvasAgg):
        canvas = FigureCanvasAgg(figure)
    out = io.BytesIO()
    canvas.print_png(out)
    return out.getvalue()

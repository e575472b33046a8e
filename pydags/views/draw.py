"""Draw a DAG left to right with matplotlib: a Figure, or SVG whose stages a front end
can find and recolour.

``pydags.views.layout`` places the stages (Graphviz ``dot`` when it is installed) and the
edges, which are drawn as the smooth curves it gives. ``Drawing.update`` changes only
colours, glyphs and the legend.
"""

from __future__ import annotations

import io
from collections.abc import Mapping

import networkx as nx
import numpy as np
from matplotlib import rc_context
from matplotlib.collections import PathCollection, PolyCollection
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch, Patch
from matplotlib.path import Path

from pydags.status import LOOKS, Look, StageStatus
from pydags.views.layout import ARROW, layout

BOX_WIDTH = 1.7  # inches; one data unit is one inch
LINE_CHARS = 20  # characters per label line at FONT_SIZE
EDGE = "#6b6b6b"  # arrows: a grey that reads on light and dark pages
LEGEND = "#333333"  # legend text on the report's white background
FONT_SIZE = 8.5
GAP_X, GAP_Y = 0.8, 0.25
LINE_HEIGHT = 0.17
MARGIN = 0.3
LAYOUTS = {"layered": "auto", "dot": "dot", "builtin": "builtin"}


def wrap_label(name: str, width: int = LINE_CHARS) -> list[str]:
    """Split ``name`` into lines of at most ``width`` characters, preferring _ - . and spaces."""
    lines = []
    while len(name) > width:
        cut = max(name.rfind(c, 0, width) for c in "_-. ")
        cut = cut + 1 if cut > width // 3 else width
        lines.append(name[:cut])
        name = name[cut:]
    return [*lines, name]


class Drawing:
    """One pipeline drawn once; ``update`` recolours, ``png`` repaints what changed."""

    def __init__(self, graph: nx.DiGraph, ax=None, *, layout: str = "layered",
                 figsize: tuple[float, float] | None = None, legend: str = "present",
                 glyphs: bool = True):
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(map(repr, LAYOUTS))}, "
                             f"not {layout!r}")
        self.graph = graph
        self.legend = legend  # "present": the statuses drawn; "all": every status
        labels = {n: wrap_label(str(n)) for n in graph}
        lines = max((len(v) for v in labels.values()), default=1)
        self.box_height = 0.22 + LINE_HEIGHT * lines
        self.layout = place(graph, self.box_height, LAYOUTS[layout])
        width = max(self.layout.width + 2 * MARGIN, 3.0)
        self._legend_columns = max(1, int(width / 1.05))
        entries = len(LOOKS) if legend == "all" else 4
        band = 0.2 + 0.22 * -(-entries // self._legend_columns)  # room for the legend rows
        height = max(self.layout.height + 2 * MARGIN + band, 1.6)
        if ax is None:
            self.figure = InlineFigure(figsize=figsize or (width, height), dpi=100)
            ax = self.figure.add_axes((0, 0, 1, 1))
        else:
            self.figure = ax.figure
        self.ax = ax
        ax.set_xlim(-MARGIN, width - MARGIN)
        ax.set_ylim(-MARGIN - band, height - MARGIN - band)
        ax.set_aspect("equal", adjustable="datalim")
        ax.axis("off")
        self._draw_edges()
        self.boxes: dict[object, FancyBboxPatch] = {}
        self.texts = {}
        self.glyphs = {}
        half_w, half_h = BOX_WIDTH / 2, self.box_height / 2
        for node in graph:
            x, y = self.layout.centre[node]
            # add_artist, not add_patch: the limits are set, and measuring each box costs
            if graph.nodes[node].get("mapped"):  # a stack of cards: one per item
                for step in (2, 1):
                    ax.add_artist(FancyBboxPatch(
                        (x - half_w + 0.05 * step, y - half_h + 0.05 * step),
                        BOX_WIDTH, self.box_height, boxstyle="round,pad=0,rounding_size=0.08",
                        linewidth=1.0, zorder=1.5 - 0.1 * step, facecolor="#d9d9d9",
                        edgecolor="#8c8c8c"))
            box = FancyBboxPatch((x - half_w, y - half_h), BOX_WIDTH, self.box_height,
                                 boxstyle="round,pad=0,rounding_size=0.08", linewidth=1.4,
                                 zorder=2, gid=str(node))
            ax.add_artist(box)
            self.boxes[node] = box
            self.texts[node] = ax.text(x + 0.04, y, "\n".join(labels[node]), ha="center",
                                       va="center", fontsize=FONT_SIZE, zorder=3,
                                       linespacing=1.15, family="DejaVu Sans",
                                       gid=f"pydags-label:{node}")
            if glyphs:  # a front end that recolours may draw its own, at less cost
                self.glyphs[node] = ax.text(x - half_w + 0.1, y, "", ha="center",
                                            va="center", fontsize=FONT_SIZE, zorder=3,
                                            family="DejaVu Sans", gid=f"pydags-glyph:{node}")
        self.status: dict[object, str] = {}  # node -> the look it is drawn with
        self._legend = None
        self.update({})

    def _draw_edges(self) -> None:
        curves, heads = [], []
        for points in self.layout.curves.values():
            codes = [Path.MOVETO] + [Path.CURVE4] * (len(points) - 1)
            curves.append(Path(points, codes))
            end, before = points[-1], points[-2]
            direction = end - before
            direction = direction / (np.hypot(*direction) or 1.0)
            side = np.array([-direction[1], direction[0]]) * ARROW * 0.38
            heads.append([end + direction * ARROW, end + side, end - side])
        self.edges = PathCollection(curves, facecolors="none", edgecolors=EDGE,
                                    linewidths=1.0, zorder=1)
        self.ax.add_collection(self.edges)
        if heads:
            self.ax.add_collection(PolyCollection(heads, facecolors=EDGE, edgecolors="none",
                                                  zorder=1))

    def update(self, status: Mapping[str, StageStatus | str]) -> None:
        """Colour each stage by its status, or as "stale" or "fresh" before a run (stages not
        named stay as they are, or pending)."""
        for node in self.graph:
            new = str(status.get(node, self.status.get(node, StageStatus.PENDING.value)))
            if self.status.get(node) == new:
                continue
            look = LOOKS[new]
            _apply(self.boxes[node], look)
            self.texts[node].set_color(look.text)
            if node in self.glyphs:
                self.glyphs[node].set_color(look.text)
                self.glyphs[node].set_text(look.glyph)
            self.status[node] = new
        present = set(self.status.values())
        shown = [s for s in LOOKS if self.legend == "all" or s in present]
        if self._legend is None or self._legend_statuses != shown:
            if self._legend is not None:
                self._legend.remove()
            handles = [Patch(facecolor=LOOKS[s].fill, edgecolor=LOOKS[s].edge,
                             linestyle=LOOKS[s].linestyle, label=f"{LOOKS[s].glyph} {s}")
                       for s in shown]
            columns = min(len(shown), self._legend_columns) or 1
            self._legend = self.ax.legend(handles=handles, loc="lower left", ncol=columns,
                                          frameon=False, fontsize=FONT_SIZE,
                                          labelcolor=LEGEND,
                                          bbox_to_anchor=(0, 0), handlelength=1.6)
            self._legend_statuses = shown

    def annotate(self, notes: Mapping[object, str]) -> None:
        """Write a short note (a stage's time) in the bottom-right corner of its box."""
        for node, note in notes.items():
            x, y = self.layout.centre[node]
            self.ax.text(x + BOX_WIDTH / 2 - 0.05, y - self.box_height / 2 + 0.04, note,
                         ha="right", va="bottom", fontsize=6.5, zorder=3,
                         color=LOOKS[self.status.get(node, "pending")].text,
                         family="DejaVu Sans")

    def regions(self) -> dict[object, tuple[int, int, int, int]]:
        """Each stage's box in CSS pixels from the top-left corner of the SVG, as a page
        shows it at its own size (an inch is 96 pixels): for links from the picture."""
        left, top = self.ax.get_xlim()[0], self.ax.get_ylim()[1]
        half_w, half_h = BOX_WIDTH / 2, self.box_height / 2
        return {node: (round((x - half_w - left) * 96), round((top - y - half_h) * 96),
                       round((x + half_w - left) * 96), round((top - y + half_h) * 96))
                for node, (x, y) in self.layout.centre.items()}

    def svg(self, background: str | None = None) -> str:
        """The drawing as SVG text: labels stay text (crisp at any zoom, themeable), each
        stage's box is the group ``id="pydags-stage:NAME"``, and the same drawing always
        gives the same text. Transparent, unless a ``background`` colour is given."""
        for node, box in self.boxes.items():
            box.set_gid(f"pydags-stage:{node}")
        out = io.StringIO()
        try:
            with rc_context({"svg.fonttype": "none", "svg.hashsalt": "pydags"}):
                self.figure.savefig(out, format="svg", transparent=background is None,
                                    facecolor=background or "none", metadata={"Date": None})
        finally:
            for node, box in self.boxes.items():
                box.set_gid(str(node))
        return out.getvalue()


def _apply(box: FancyBboxPatch, look: Look) -> None:
    box.set_facecolor(look.fill)
    box.set_edgecolor(look.edge)
    box.set_linestyle(look.linestyle)


def place(graph: nx.DiGraph, box_height: float, engine: str = "auto"):
    """Where each stage's box and each edge go, in inches from the drawing's corner."""
    return layout(graph, BOX_WIDTH, box_height, GAP_X, GAP_Y, engine)


class InlineFigure(Figure):
    """A matplotlib Figure that shows itself in Jupyter, with no ``%matplotlib`` magic: as a
    PNG at twice its size, shown at its size, so it stays sharp on high-density screens."""

    def _repr_png_(self) -> tuple[bytes, dict[str, int]]:
        out = io.BytesIO()
        self.savefig(out, format="png", dpi=2 * self.dpi)
        width, height = self.get_size_inches() * self.dpi
        return out.getvalue(), {"width": round(width), "height": round(height)}

"""Where each stage and each edge of a DAG goes, left to right, in inches.

Graphviz ``dot`` lays it out when it is installed: it is the reference for layered
drawings (network-simplex ranks, median and transposition ordering, spline edges) and
lays out 500 stages in well under a second. Without it, a layered layout of our own does
the same steps more simply: no pip-installable library comes close to ``dot`` (igraph's
Sugiyama layout, measured on a 500-stage DAG, draws five times ``dot``'s crossings), so
this one is hand-written.
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
from collections.abc import Hashable
from dataclasses import dataclass

import networkx as nx
import numpy as np

SWEEPS = 24  # ordering sweeps of the built-in layout (each keeps the best order so far)
ARROW = 0.139  # inches between an edge's end and the box it points at (dot's arrow)
DOT_SECONDS = 30.0
DOT_LIMIT = 5000  # stages; past this, dot is slower than the built-in layout


@dataclass(frozen=True)
class Layout:
    """Each node's centre and each edge's curve: cubic Bézier control points from the
    tail's box to where its arrow starts (``ARROW`` short of the head's box)."""

    centre: dict[Hashable, tuple[float, float]]
    curves: dict[tuple[Hashable, Hashable], np.ndarray]
    width: float
    height: float
    engine: str


def layout(graph: nx.DiGraph, box_width: float, box_height: float, gap_x: float,
           gap_y: float, engine: str = "auto") -> Layout:
    """Lay ``graph`` out with boxes of the size given and at least these gaps between
    columns and rows; ``engine`` is "dot", "builtin" or "auto" (dot if installed)."""
    if engine not in ("auto", "dot", "builtin"):
        raise ValueError(f"layout engine must be 'auto', 'dot' or 'builtin', not {engine!r}")
    size = (box_width, box_height, gap_x, gap_y)
    if engine == "dot" or (engine == "auto" and len(graph) <= DOT_LIMIT and dot_installed()):
        if not dot_installed():
            raise RuntimeError("Graphviz 'dot' is not installed: install Graphviz "
                               "(apt-get install graphviz) or use the built-in layout")
        try:
            return _normalised(dot_layout(graph, *size), box_width, box_height)
        except (OSError, subprocess.SubprocessError, ValueError):
            if engine == "dot":
                raise
    return _normalised(builtin_layout(graph, *size), box_width, box_height)


def dot_installed() -> bool:
    """True when Graphviz's ``dot`` is on the PATH."""
    return shutil.which("dot") is not None


def dot_layout(graph: nx.DiGraph, box_width: float, box_height: float, gap_x: float,
               gap_y: float) -> Layout:
    """Graphviz ``dot``'s layout, read from its plain output."""
    names = {node: f"n{i}" for i, node in enumerate(graph)}
    nodes = {name: node for node, name in names.items()}
    source = [f"digraph{{rankdir=LR;nodesep={gap_y};ranksep={gap_x};",
              f"node[shape=box,fixedsize=true,width={box_width},height={box_height},"
              'label=""];',
              *(f"{names[n]};" for n in graph),
              *(f"{names[u]}->{names[v]};" for u, v in graph.edges), "}"]
    out = subprocess.run(["dot", "-Tplain"], input="\n".join(source), capture_output=True,
                         text=True, timeout=DOT_SECONDS, check=True).stdout
    centre, curves = {}, {}
    for line in out.splitlines():
        field = line.split()
        if field[0] == "node":
            centre[nodes[field[1]]] = (float(field[2]), float(field[3]))
        elif field[0] == "edge":
            count = int(field[3])
            points = np.array(field[4:4 + 2 * count], dtype=float).reshape(count, 2)
            curves[nodes[field[1]], nodes[field[2]]] = points
    if len(centre) != len(graph) or len(curves) != graph.number_of_edges():
        raise ValueError("dot's output misses nodes or edges")
    return Layout(centre, curves, 0.0, 0.0, "dot")


def builtin_layout(graph: nx.DiGraph, box_width: float, box_height: float, gap_x: float,
                   gap_y: float) -> Layout:
    """A layered layout: longest-path columns (a source just before its first consumer),
    long edges through waypoints, barycentre sweeps and transpositions to order each
    column, and rows placed as near their neighbours as the gaps allow."""
    columns, routed = _columns(graph)
    order = _order(columns, routed)
    height = {n: box_height if n in graph else 0.05 for n in routed}
    y = _rows(order, routed, height, gap_y)
    step = box_width + gap_x
    centre = {n: (c * step + box_width / 2, -y[n]) for c, nodes in enumerate(order)
              for n in nodes}
    curves = {}
    half = box_width / 2
    for u, v in graph.edges:
        stops = [(centre[u][0] + half, centre[u][1])]
        for c in range(columns[u] + 1, columns[v]):
            x, yw = centre["waypoint", u, v, c]
            stops += [(x - half, yw), (x + half, yw)]
        stops.append((centre[v][0] - half - ARROW, centre[v][1]))
        curves[u, v] = _smooth(stops)
    return Layout({n: centre[n] for n in graph}, curves, 0.0, 0.0, "builtin")


def _columns(graph: nx.DiGraph) -> tuple[dict, nx.DiGraph]:
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
    return column, routed


def _order(column: dict, routed: nx.DiGraph) -> list[list]:
    order: list[list] = [[] for _ in range(max(column.values(), default=-1) + 1)]
    for node in routed:  # insertion order: stable and deterministic
        order[column[node]].append(node)
    best, fewest = [list(c) for c in order], _crossings(order, routed)
    for sweep in range(SWEEPS):
        down = sweep % 2 == 0
        for c in (range(1, len(order)) if down else range(len(order) - 2, -1, -1)):
            place = {n: i for i, n in enumerate(order[c - 1] if down else order[c + 1])}
            near = routed.predecessors if down else routed.successors
            current = {n: i for i, n in enumerate(order[c])}

            def barycentre(node, place=place, near=near, current=current) -> float:
                spots = [place[m] for m in near(node)]
                return sum(spots) / len(spots) if spots else current[node]

            order[c].sort(key=barycentre)
        _transpose(order, routed)
        if (count := _crossings(order, routed)) < fewest:
            best, fewest = [list(c) for c in order], count
    return best


def _transpose(order: list[list], routed: nx.DiGraph) -> None:
    """Swap neighbours in a column while that removes crossings (as ``dot`` does)."""
    for _ in range(4):
        improved = False
        for c, nodes in enumerate(order):
            sides = [(routed.predecessors, order[c - 1] if c else []),
                     (routed.successors, order[c + 1] if c + 1 < len(order) else [])]
            places = [({n: i for i, n in enumerate(side)}, near) for near, side in sides]
            for i in range(len(nodes) - 1):
                a, b = nodes[i], nodes[i + 1]
                before = after = 0
                for place, near in places:
                    pa, pb = [place[m] for m in near(a)], [place[m] for m in near(b)]
                    before += sum(x > y for x in pa for y in pb)
                    after += sum(y > x for x in pa for y in pb)
                if after < before:
                    nodes[i], nodes[i + 1] = b, a
                    improved = True
        if not improved:
            return


def _crossings(order: list[list], routed: nx.DiGraph) -> int:
    total = 0
    for left, right in itertools.pairwise(order):
        place = {n: i for i, n in enumerate(right)}
        ends = sorted((i, place[m]) for i, n in enumerate(left) for m in routed.successors(n))
        seen = np.array([e for _, e in ends], dtype=np.int64)
        total += int(sum(np.count_nonzero(seen[k + 1:] < seen[k]) for k in range(len(seen))))
    return total


def _rows(order: list[list], routed: nx.DiGraph, height: dict, gap: float) -> dict:
    """Each node's y (downwards): near the mean of its neighbours', in its column's order,
    with at least ``gap`` between boxes; found by isotonic regression, column by column."""
    y = {}
    for nodes in order:
        top = 0.0
        for n in nodes:
            y[n] = top + height[n] / 2
            top += height[n] + gap
    for sweep in range(SWEEPS):
        near = routed.predecessors if sweep % 2 == 0 else routed.successors
        for nodes in (order if sweep % 2 == 0 else reversed(order)):
            wanted = [np.mean([y[m] for m in near(n)]) if any(True for _ in near(n)) else y[n]
                      for n in nodes]
            for n, value in zip(nodes, _packed(nodes, wanted, height, gap), strict=True):
                y[n] = value
    low = min(y[n] - height[n] / 2 for n in y) if y else 0.0
    return {n: v - low for n, v in y.items()}


def _packed(nodes: list, wanted: list[float], height: dict, gap: float) -> list[float]:
    """The positions nearest ``wanted`` (least squares) that keep ``nodes`` in order with
    their gaps: pool-adjacent-violators on the positions less the room before each."""
    room = [0.0]
    for a, b in itertools.pairwise(nodes):
        room.append(room[-1] + (height[a] + height[b]) / 2 + gap)
    blocks: list[list[float]] = []  # [mean, weight]
    for w, r in zip(wanted, room, strict=True):
        blocks.append([w - r, 1.0])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            m2, n2 = blocks.pop()
            m1, n1 = blocks.pop()
            blocks.append([(m1 * n1 + m2 * n2) / (n1 + n2), n1 + n2])
    flat = [m for m, n in blocks for _ in range(int(n))]
    return [z + r for z, r in zip(flat, room, strict=True)]


def _smooth(stops: list[tuple[float, float]]) -> np.ndarray:
    """Cubic Bézier control points through ``stops``, leaving and reaching each one
    horizontally: a curve with no corners, that never runs parallel as a box would."""
    points = [stops[0]]
    for (x0, y0), (x1, y1) in itertools.pairwise(stops):
        bend = (x1 - x0) / 2
        points += [(x0 + bend, y0), (x1 - bend, y1), (x1, y1)]
    return np.array(points, dtype=float)


def _normalised(found: Layout, box_width: float, box_height: float) -> Layout:
    """The layout moved so that its boxes and curves start at (0, 0), with its size."""
    if not found.centre:
        return Layout({}, {}, 0.0, 0.0, found.engine)
    boxes = np.array(list(found.centre.values()))
    half = np.array([box_width / 2, box_height / 2])
    lows, highs = [boxes - half], [boxes + half]
    lows += list(found.curves.values())
    highs += list(found.curves.values())
    low = np.min([p.min(axis=0) for p in lows], axis=0)
    high = np.max([p.max(axis=0) for p in highs], axis=0)
    centre = {n: (x - low[0], y - low[1]) for n, (x, y) in found.centre.items()}
    curves = {e: p - low for e, p in found.curves.items()}
    return Layout(centre, curves, float(high[0] - low[0]), float(high[1] - low[1]),
                  found.engine)

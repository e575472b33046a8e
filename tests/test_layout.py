"""The drawing's layout against Graphviz ``dot`` at the same box size: edge crossings and
area, counted on the curves as drawn, on the tutorial, a 32-stage pipeline and random DAGs
of 200 and 500 stages."""

from __future__ import annotations

import itertools
import random
import shutil

import networkx as nx
import numpy as np
import pytest

from pydags.examples import tutorial
from pydags.views.draw import BOX_WIDTH, GAP_X, GAP_Y, Drawing
from pydags.views.layout import Layout, builtin_layout, dot_layout, layout

pytestmark = pytest.mark.skipif(shutil.which("dot") is None,
                                reason="Graphviz is the reference: .ci/run installs it")


def random_dag(n: int, seed: int, fan_in: int = 3) -> nx.DiGraph:
    rng = random.Random(seed)
    graph = nx.DiGraph()
    for i in range(n):
        graph.add_node(f"s{i}")
        for p in rng.sample(range(i), min(i, rng.randint(0, fan_in))):
            graph.add_edge(f"s{p}", f"s{i}")
    return graph


def ml_pipeline() -> nx.DiGraph:
    """32 stages as an ML project has them: load, clean, features, models, evaluation."""
    graph = nx.DiGraph()
    for source in ("load_sales", "load_weather", "load_calendar", "load_stores"):
        graph.add_edge(source, f"clean_{source[5:]}")
    for feature in ("lags", "holidays", "rolling", "prices", "promos", "store_meta"):
        for clean in ("clean_sales", "clean_calendar") if feature != "store_meta" else \
                ("clean_stores",):
            graph.add_edge(clean, f"feature_{feature}")
        graph.add_edge(f"feature_{feature}", "join_features")
    graph.add_edge("clean_weather", "join_features")
    graph.add_edge("join_features", "split")
    for model in ("ridge", "forest", "boosting", "prophet", "naive"):
        graph.add_edge("split", f"fit_{model}")
        graph.add_edge(f"fit_{model}", f"score_{model}")
        graph.add_edge(f"score_{model}", "compare")
    graph.add_edge("compare", "report")
    graph.add_edge("compare", "deploy")
    return graph


GRAPHS = {"tutorial": lambda: tutorial.build().graph, "ml-32": ml_pipeline,
          "random-200": lambda: random_dag(200, 1), "random-500": lambda: random_dag(500, 2)}


def crossings(found: Layout) -> int:
    """Pairs of edges (without a shared end) whose curves cross, the curves sampled finely."""
    segments, owners = [], []
    for k, (edge, points) in enumerate(found.curves.items()):
        line = _sampled(points)
        segments += list(itertools.pairwise(line))
        owners += [(k, *edge)] * (len(line) - 1)
    a = np.array([s[0] for s in segments])
    b = np.array([s[1] for s in segments])
    strips: dict[int, list[int]] = {}
    for i, (p, q) in enumerate(segments):  # only segments that share a strip can cross
        for strip in range(int(min(p[0], q[0]) // 0.5), int(max(p[0], q[0]) // 0.5) + 1):
            strips.setdefault(strip, []).append(i)
    pairs = set()
    for members in strips.values():
        idx = np.array(members)
        p, q = a[idx], b[idx]
        d1 = _side(p[:, None], q[:, None], p[None]), _side(p[:, None], q[:, None], q[None])
        d2 = _side(p[None], q[None], p[:, None]), _side(p[None], q[None], q[:, None])
        hit = (d1[0] * d1[1] < 0) & (d2[0] * d2[1] < 0)
        for i, j in zip(*np.nonzero(np.triu(hit, 1)), strict=True):
            e, f = owners[idx[i]], owners[idx[j]]
            if e[0] != f[0] and not {e[1], e[2]} & {f[1], f[2]}:
                pairs.add((min(e[0], f[0]), max(e[0], f[0])))
    return len(pairs)


def _side(p, q, r):
    return np.sign((q[..., 0] - p[..., 0]) * (r[..., 1] - p[..., 1])
                   - (q[..., 1] - p[..., 1]) * (r[..., 0] - p[..., 0]))


def _sampled(points: np.ndarray, steps: int = 8) -> np.ndarray:
    t = np.linspace(0, 1, steps + 1)[1:, None]
    line = [points[0]]
    for i in range(0, len(points) - 3, 3):
        p0, p1, p2, p3 = points[i:i + 4]
        line += list((1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1
                     + 3 * (1 - t) * t ** 2 * p2 + t ** 3 * p3)
    return np.array(line)


def reference(graph: nx.DiGraph, box_height: float) -> Layout:
    """``dot`` run directly, at the drawing's box size and gaps."""
    return layout(graph, BOX_WIDTH, box_height, GAP_X, GAP_Y, engine="dot")


@pytest.mark.parametrize("name", GRAPHS)
def test_the_drawing_crosses_and_spreads_no_more_than_dot(name):
    graph = GRAPHS[name]()
    drawing = Drawing(graph)
    dot = reference(graph, drawing.box_height)
    drawn = drawing.layout
    assert crossings(drawn) <= 1.2 * crossings(dot)
    assert drawn.width * drawn.height <= 1.3 * dot.width * dot.height
    box = {n: b.get_bbox() for n, b in drawing.boxes.items()}
    for n, (x, y) in drawn.centre.items():  # the boxes stand where the layout put them
        assert box[n].x0 == pytest.approx(x - BOX_WIDTH / 2)
        assert box[n].y0 == pytest.approx(y - drawing.box_height / 2)


@pytest.mark.parametrize("name", GRAPHS)
def test_the_built_in_layout_stays_compact_without_graphviz(name):
    """Without Graphviz: about dot's area or less, and at most 1.4 times its crossings
    (measured: 0.67-1.01 times the area, 1.0-1.27 times the crossings)."""
    graph = GRAPHS[name]()
    own = builtin_layout(graph, BOX_WIDTH, 0.56, GAP_X, GAP_Y)
    dot = dot_layout(graph, BOX_WIDTH, 0.56, GAP_X, GAP_Y)
    own_size = np.ptp(np.array(list(own.centre.values())), axis=0)
    dot_size = np.ptp(np.array(list(dot.centre.values())), axis=0)
    assert own_size[0] * own_size[1] <= dot_size[0] * dot_size[1] * 1.1
    assert crossings(own) <= 1.4 * crossings(dot) + 2


def test_edges_are_curves_from_box_to_box():
    graph = ml_pipeline()
    drawing = Drawing(graph)
    half_w, half_h = BOX_WIDTH / 2 + 0.2, drawing.box_height / 2 + 0.2
    for (u, v), points in drawing.layout.curves.items():
        assert (len(points) - 1) % 3 == 0  # cubic Bézier pieces
        (ux, uy), (vx, vy) = drawing.layout.centre[u], drawing.layout.centre[v]
        assert abs(points[0][0] - ux) <= half_w and abs(points[0][1] - uy) <= half_h
        assert abs(points[-1][0] - vx) <= half_w + 0.2 and abs(points[-1][1] - vy) <= half_h

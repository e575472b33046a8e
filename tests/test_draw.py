"""visualize(): layout properties, status colours, inline display and a reference image."""

from __future__ import annotations

import itertools
import random

import pytest
from matplotlib.colors import to_hex
from matplotlib.testing.compare import compare_images

from pydags import StageStatus
from pydags.examples import tutorial
from pydags.pipeline import Pipeline
from pydags.stage import stage
from pydags.status import PALETTE
from pydags.views.draw import Drawing, wrap_label

BASELINE = __import__("pathlib").Path(__file__).parent / "baseline"


@stage
def node(*_):
    return None


def random_pipeline(n: int, seed: int) -> Pipeline:
    rng = random.Random(seed)
    stages = []
    for i in range(n):
        parents = rng.sample(stages, min(len(stages), rng.randint(0, 3)))
        name = f"stage_{i}" if i % 7 else f"a_rather_long_stage_name_number_{i}"
        stages.append(node(*parents).named(name))
    return Pipeline().add_stages(stages)


@pytest.mark.parametrize(("n", "seed"), [(10, 1), (60, 2), (300, 3)])
def test_layout_edges_go_left_to_right_and_boxes_never_overlap(n, seed):
    pipeline = random_pipeline(n, seed)
    drawing = Drawing(pipeline.graph)
    boxes = {name: box.get_bbox() for name, box in drawing.boxes.items()}
    assert sorted(boxes) == sorted(pipeline.graph)  # every stage drawn exactly once
    for u, v in pipeline.graph.edges:
        assert boxes[u].x1 < boxes[v].x0, (u, v)
    by_column = {}
    for box in boxes.values():
        by_column.setdefault(round(box.x0, 6), []).append(box)
    for column in by_column.values():
        column.sort(key=lambda b: b.y0)
        for lower, upper in itertools.pairwise(column):
            assert lower.y1 < upper.y0
    for name, text in drawing.texts.items():
        assert text.get_text().replace("\n", "") == name
        assert all(len(line) <= 20 for line in text.get_text().split("\n"))


def test_labels_wrap_without_losing_characters():
    assert wrap_label("short") == ["short"]
    long = "a_rather_long_stage_name_number_42"
    assert "".join(wrap_label(long)) == long and len(wrap_label(long)) == 2


def test_status_colours_after_a_run_with_one_failure():
    @stage
    def fails(x):
        raise RuntimeError("no")

    pipeline = Pipeline().add_stages(node(fails(node().named("first"))).named("last"))
    run = pipeline.start(raise_on_error=False)
    figure = pipeline.visualize(status=run)
    patches = {p.get_gid(): p for p in figure.axes[0].patches if p.get_gid()}
    expected = {"first": StageStatus.DONE, "fails": StageStatus.FAILED, "last": StageStatus.SKIPPED}
    for name, status in expected.items():
        assert to_hex(patches[name].get_facecolor()) == PALETTE[status].fill
    glyphs = {t.get_gid(): t.get_text() for t in figure.axes[0].texts if t.get_gid()}
    for name, status in expected.items():
        assert glyphs[f"pydags-glyph:{name}"] == PALETTE[status].glyph != ""
    legend = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    assert legend == ["✓ done", "✗ failed", "↷ skipped"]


def test_a_status_update_recolours_without_moving_anything():
    pipeline = random_pipeline(40, 5)
    drawing = Drawing(pipeline.graph)
    artists = list(drawing.ax.get_children())
    positions = {n: b.get_bbox().bounds for n, b in drawing.boxes.items()}
    drawing.update({"stage_1": StageStatus.RUNNING})
    assert to_hex(drawing.boxes["stage_1"].get_facecolor()) == PALETTE[StageStatus.RUNNING].fill
    assert {n: b.get_bbox().bounds for n, b in drawing.boxes.items()} == positions
    after = [a for a in drawing.ax.get_children() if a is not drawing._legend]
    assert after == [a for a in artists if a in after] and len(after) == len(artists) - 1


def test_the_svg_names_each_stage_and_is_the_same_every_time():
    pipeline = random_pipeline(30, 4)
    svg = Drawing(pipeline.graph).svg()
    assert all(f'<g id="pydags-stage:{name}">' in svg for name in pipeline.graph)
    assert svg == Drawing(pipeline.graph).svg()
    assert all(box.get_gid() == name for name, box in Drawing(pipeline.graph).boxes.items())


def test_inline_png_and_saving_headless(tmp_path):
    pipeline = tutorial.build()
    png, size = pipeline._repr_png_()
    figure = pipeline.visualize()
    assert png.startswith(b"\x89PNG") and size["width"] == round(figure.get_figwidth() * 100)
    path = tmp_path / "dag.png"
    pipeline.visualize().savefig(path)
    assert path.stat().st_size > 1000


def test_the_tutorial_drawing_matches_the_reference_image(tmp_path):
    actual = tmp_path / "tutorial_dag.png"
    tutorial.build().visualize(layout="dot").savefig(actual, dpi=80)
    reference = BASELINE / "tutorial_dag.png"
    assert compare_images(str(reference), str(actual), tol=3) is None


def test_a_source_stands_just_before_its_first_consumer():
    chain = [node().named("a")]
    for name in "bcd":
        chain.append(node(chain[-1]).named(name))
    late = node().named("late_source")
    chain[-1].after(late)
    drawing = Drawing(Pipeline().add_stages(chain).graph)
    box = {name: b.get_bbox() for name, b in drawing.boxes.items()}
    assert box["late_source"].x0 == box["c"].x0  # the column just before d's, not column 0
    assert box["late_source"].x1 < box["d"].x0

"""Drawing benchmarks: ``python tests/benchmarks/bench_draw.py``.

Prints, for random DAGs of 50/200/500 stages, the full draw time (layout, artists and a
PNG) beside the status-only redraw (recolour and repaint the changed stages), and their
ratio (targets: 200-stage full draw < 1 s, redraw >= 5x cheaper). Then the run time of a
500-stage pipeline with the live widget attached versus without, in the same run
(target: < 10% slower).
"""

from __future__ import annotations

import random
import time

from pydags.draw import Drawing, figure_png
from pydags.pipeline import Pipeline
from pydags.stage import stage
from pydags.status import StageStatus
from pydags.widget import MAX_PIXELS, PipelineWidget


@stage
def tiny(*_):
    time.sleep(0.002)


def random_pipeline(n: int, seed: int = 0) -> Pipeline:
    rng = random.Random(seed)
    stages = []
    for i in range(n):
        stages.append(tiny(*rng.sample(stages, min(len(stages), rng.randint(0, 2))))
                      .named(f"stage_{i}"))
    return Pipeline("bench").add_stages(stages)


def best(repeats: int, work) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def visualize_times() -> None:
    for n in (50, 200, 500):
        pipeline = random_pipeline(n)
        seconds = best(3, lambda p=pipeline: figure_png(p.visualize()))
        print(f"{n:4d} stages: visualize() and render to PNG at full size {seconds:.3f}s "
              "(target: 200 stages < 1 s)")


def draw_times() -> None:
    print(f"as the live widget draws them (dpi 80, at most {MAX_PIXELS:,.0f} pixels):")
    for n in (50, 200, 500):
        graph = random_pipeline(n).graph
        options = dict(dpi=80, max_pixels=MAX_PIXELS, legend="all")
        full = best(3, lambda g=graph, o=options: Drawing(g, **o).png())
        drawing = Drawing(graph, **options)
        drawing.png()
        names = list(graph)
        statuses = [StageStatus.RUNNING, StageStatus.DONE]

        def redraw(d=drawing, names=names, statuses=statuses):
            # a typical throttled update: a handful of stages changed since the last one
            for name in random.sample(names, 5):
                d.update({name: random.choice(statuses)})
            d.png()

        quick = best(5, redraw)
        print(f"{n:4d} stages: full draw {full:.3f}s, status-only redraw {quick:.4f}s, "
              f"ratio {full / quick:.1f}x (targets: 200-stage full < 1 s, ratio >= 5)")


def widget_cost(n: int = 500) -> None:
    pipeline = random_pipeline(n, seed=1)
    plain, watched = [], []
    for _ in range(2):
        plain.append(pipeline.start(num_cores=2, show=False).wall_time)
        widget = PipelineWidget(pipeline)
        run = pipeline.start(num_cores=2, show=False, block=False)
        widget.attach(run)
        run.wait()
        watched.append(run.wall_time)
    p, w = min(plain), min(watched)
    print(f"{n} stages on 2 cores: without widget {p:.2f}s, with widget {w:.2f}s, "
          f"{(w / p - 1) * 100:+.1f}% (target < 10%)")


if __name__ == "__main__":
    visualize_times()
    draw_times()
    widget_cost()

"""The live view's cost: ``python tests/benchmarks/bench_view.py``.

Prints, in one run: a 500-stage pipeline of 50 ms stages on 2 cores with the live view
attached, the first time the DAG is shown (drawn during the run) and again (its drawing
reused), beside the same run without it (target: ratio <= 1.05), the time from
``prepare()`` to the view's first push of state (target: <= 300 ms) and to its drawing of
the DAG (made on a thread of its own), and the view's pushes; the time to lay the 500
stages out (target: under 1 s), with Graphviz dot and with the built-in layout; then a map
over 100,000 numbers with and without the view (the view sends every item's status and
time).
"""

from __future__ import annotations

import statistics
import time

from bench_scheduler import random_parents

from pydags import Pipeline, stage
from pydags.views.draw import place
from pydags.views.layout import dot_installed
from pydags.views.widget import PipelineWidget, drawn_svg


def nap(*_):
    time.sleep(0.05)


def build(n: int = 500) -> Pipeline:
    make = stage(nap)
    stages: list = []
    for i, ps in enumerate(random_parents(n, seed=5, fan_in=2)):
        stages.append(make(*[stages[p] for p in ps]).named(f"s{i}"))
    return Pipeline("view", stages)


def timed(pipeline: Pipeline, with_view: bool) -> tuple[float, float, float, int]:
    start = time.perf_counter()
    run = pipeline.prepare(num_cores=2)
    first = drawn = 0.0
    view = None
    if with_view:
        view = PipelineWidget(pipeline, num_cores=2)
        view.attach(run)
        first = time.perf_counter() - start  # attach() pushes the state so far at once
    run.start()  # as in a notebook: the DAG is drawn on its own thread while the run goes
    wall = time.perf_counter() - start
    if view is not None:
        view.drawn.wait()
        drawn = view.drawn_at - start
    pushes = view.pushes if view is not None else 0
    if view is not None:
        view.close()
    return wall, first, drawn, pushes


def square(x):
    return x * x


def map_with_view(with_view: bool) -> float:
    pipeline = Pipeline("squares", [stage(square).map(range(100_000))])
    start = time.perf_counter()
    run = pipeline.prepare(num_cores=2)
    if with_view:
        PipelineWidget(pipeline, num_cores=2).attach(run)
    run.start()
    return time.perf_counter() - start


def main() -> None:
    pipeline = build()
    pipeline.start(num_cores=2, show=False)  # warm workers
    plain, viewed, again, firsts, drawings, pushes = [], [], [], [], [], []
    for _ in range(3):  # interleaved, so all see the same machine
        plain.append(timed(pipeline, False)[0])
        drawn_svg.cache_clear()  # the first time this DAG is shown: drawn during the run
        wall, first, drawn, count = timed(pipeline, True)
        viewed.append(wall)
        firsts.append(first)
        drawings.append(drawn)
        pushes.append(count)
        again.append(timed(pipeline, True)[0])  # shown again: its drawing is reused
    a, b, c = statistics.median(plain), statistics.median(viewed), statistics.median(again)
    print(f"500 stages of 50 ms on 2 cores: {a:.2f} s without the view; with it, "
          f"{b:.2f} s the first time the DAG is shown (ratio {b / a:.3f}) and {c:.2f} s when "
          f"shown again (ratio {c / a:.3f}; target <= 1.05); "
          f"{statistics.median(pushes):.0f} pushes")
    print(f"prepare() to the view's first state: {statistics.median(firsts) * 1e3:.0f} ms "
          f"(target <= 300 ms); to its 500-stage DAG drawing: "
          f"{statistics.median(drawings) * 1e3:.0f} ms")
    for engine in ("dot", "builtin"):
        if engine == "dot" and not dot_installed():
            print("Graphviz dot is not installed: its layout is not timed")
            continue
        took = []
        for _ in range(5):
            start = time.perf_counter()
            place(pipeline.graph, 0.56, engine)
            took.append(time.perf_counter() - start)
        print(f"laying out the 500 stages ({engine}): {statistics.median(took) * 1e3:.0f} ms "
              f"(target < 1000 ms)")
    map_with_view(True)
    times = {view: [] for view in (False, True)}
    for _ in range(5):
        for view in times:
            times[view].append(map_with_view(view))
    a, b = statistics.median(times[False]), statistics.median(times[True])
    print(f"a map over 100,000 numbers on 2 cores: {a * 1e3:.0f} ms without the view, "
          f"{b * 1e3:.0f} ms with it (every item's status and time sent at the end)")


if __name__ == "__main__":
    main()

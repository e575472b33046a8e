"""Building benchmark: ``python tests/benchmarks/bench_build.py``.

Prints, beside the same pipeline built in one ``add_stages`` call in the same run:
- 10,000 stages added one call at a time, as code written for pydags 0.1 adds them, then
  started once (target: under 1 s to build, within 2x of one call);
- one stage taking 16,000 upstream stages as arguments, and one with 16,000 ``.after()``
  dependencies (target: each under 0.5 s to build).
"""

from __future__ import annotations

import time

from bench_scheduler import random_parents

from pydags import Pipeline, stage


@stage
def trivial(*values):
    return len(values)


def make(parents):
    stages = []
    for i, ps in enumerate(parents):
        stages.append(trivial(*[stages[p] for p in ps]).named(f"s{i}"))
    return stages


def seconds(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def main() -> None:
    parents = random_parents(10_000, seed=3)
    one_call = seconds(lambda: Pipeline().add_stages(make(parents)).graph)

    def one_at_a_time():
        pipeline = Pipeline()
        for item in make(parents):
            pipeline.add_stages(item)
        pipeline.graph  # noqa: B018  (what start() builds first)

    each = seconds(one_at_a_time)
    print(f"10,000 stages: one add_stages call {one_call:.3f} s, one call per stage "
          f"{each:.3f} s, ratio {each / one_call:.2f}x (targets: < 1 s, <= 2x)")
    pipeline = Pipeline()
    for item in make(parents):
        pipeline.add_stages(item)
    ran = seconds(lambda: pipeline.start(num_cores=2, show=False))
    print(f"  then started once on 2 cores: {ran:.3f} s")

    sources = [trivial().named(f"a{i}") for i in range(16_000)]
    wide = seconds(lambda: Pipeline().add_stages(trivial(*sources).named("wide")))
    after = trivial().named("after")
    late = seconds(lambda: Pipeline().add_stages(after.after(*sources)))
    print(f"16,000 upstream arguments: {wide:.3f} s; 16,000 .after() dependencies: "
          f"{late:.3f} s (targets: < 0.5 s each)")


if __name__ == "__main__":
    main()

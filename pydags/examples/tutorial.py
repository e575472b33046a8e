"""The six-stage tutorial pipeline: ``python -m pydags.examples.tutorial [--cores N] [-o dag.png]``.

Each stage sleeps briefly so the parallelism is visible; the run prints the order in
which stages started and ended, the total time, and saves the drawing.
"""

from __future__ import annotations

import argparse
import time

from pydags.pipeline import Pipeline
from pydags.records import Event
from pydags.stage import stage

PAUSE = 0.5


@stage
def stage_1():
    print("Running stage 1")
    time.sleep(PAUSE)


@stage
def stage_2():
    print("Running stage 2")
    time.sleep(PAUSE)


@stage
def stage_3():
    print("Running stage 3")
    time.sleep(PAUSE)


@stage
def stage_4():
    print("Running stage 4")
    time.sleep(PAUSE)


@stage
def stage_5():
    print("Running stage 5")
    time.sleep(PAUSE)


@stage
def stage_6():
    print("Running stage 6")
    time.sleep(PAUSE)


def build() -> Pipeline:
    """The tutorial's pipeline, built exactly as the tutorial writes it."""
    stage1 = stage_1()
    stage2 = stage_2()
    stage3 = stage_3().after(stage2)
    stage4 = stage_4().after(stage2)
    stage5 = stage_5().after(stage1)
    stage6 = stage_6().after(stage3).after(stage4).after(stage5)

    pipeline = Pipeline("tutorial")
    pipeline.add_stages([stage1, stage2, stage3, stage4, stage5, stage6])
    return pipeline


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", type=int, default=2, help="stages at once (default 2)")
    parser.add_argument("-o", "--output", default="tutorial_dag.png", help="drawing file")
    args = parser.parse_args(argv)

    pipeline = build()
    pipeline.visualize().savefig(args.output, dpi=110)
    print(f"{pipeline!r}; drawing saved to {args.output}")

    def report(event: Event) -> None:
        if event.status.value in ("running", "done", "failed", "skipped"):
            print(f"  {event.time - t0:5.2f}s  {event.stage:<8} {event.status.value}")

    t0 = time.time()
    run = pipeline.start(num_cores=args.cores, on_event=report)
    serial = sum(run.durations.values())
    print(f"total {time.time() - t0:.2f}s on {args.cores} cores, of which the run "
          f"{run.wall_time:.2f}s (the stages' own time adds up to {serial:.2f}s)")


if __name__ == "__main__":
    main()

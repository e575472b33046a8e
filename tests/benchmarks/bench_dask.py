"""Dask backend benchmark: ``python tests/benchmarks/bench_dask.py``.

Prints the per-stage overhead of the same 1,000-stage random DAG of trivial stages run by
the local worker processes and by a 2-worker Dask LocalCluster, in the same run.
"""

from __future__ import annotations

from bench_scheduler import build, random_parents, trivial
from distributed import Client, LocalCluster


def main(n: int = 1000) -> None:
    pipeline = build(random_parents(n, seed=11), trivial)
    local = min(pipeline.start(num_cores=2, show=False).wall_time for _ in range(2))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        dask = min(pipeline.start(executor=client, show=False).wall_time for _ in range(2))
    print(f"{n} trivial stages: local workers {local / n * 1e3:.3f} ms/stage, "
          f"Dask LocalCluster {dask / n * 1e3:.3f} ms/stage, ratio {dask / local:.1f}x")


if __name__ == "__main__":
    main()

"""Executors: where stages run (this process, worker processes, a Dask cluster)."""

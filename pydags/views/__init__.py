"""The front ends: the live view in a notebook (``widget``), the static report it leaves
(``report``), the terminal (``cli``), the ``%%pydags`` magic (``magics``), what follows a
run started from Python (``display``), the timeline and the drawing of the DAG. Each reads
a run through its snapshots and events; none changes it."""

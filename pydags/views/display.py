"""The front ends that follow a run started from Python: the live view in a notebook, or
else the printed output of worker stages in the terminal. Each one subscribes to the run."""

from __future__ import annotations

import sys
from typing import Any

from pydags.executors.base import THIS_PROCESS
from pydags.records import Event
from pydags.run import Run
from pydags.status import StageStatus


def follow(pipeline: Any, run: Run, *, show: bool | None, block: bool,
           num_cores: int) -> Any:
    """Attach the live view (``show``, by default in a notebook) or, for a blocking run,
    echo what worker stages print; returns the view, if any."""
    if show or (show is None and in_notebook()):
        from pydags.views.widget import PipelineWidget

        view = PipelineWidget(pipeline, num_cores=num_cores)
        view.blocking = block  # the kernel hears no click until the run ends
        view.attach(run)
        view.show()
        if not block:
            _settle_in_a_later_cell(view, run)
        return view
    if block:  # a background run's prints would land anywhere
        echo, live = echo_worker_output(run)
        run.subscribe(echo, on_output=live)
    return None


def _settle_in_a_later_cell(view: Any, run: Run) -> None:
    """Show a background run's report again from the first cell that ends after the run:
    a notebook executed by nbclient or papermill keeps only messages of the cell running."""
    from IPython import get_ipython

    shell, handle = get_ipython(), view._display
    if shell is None or handle is None:
        return

    def settle(*_: Any) -> None:
        if run.done():
            shell.events.unregister("post_run_cell", settle)
            handle.update(view.final_bundle(), raw=True)

    shell.events.register("post_run_cell", settle)


def in_notebook() -> bool:
    """True inside a Jupyter kernel."""
    shell = sys.modules.get("IPython") and sys.modules["IPython"].get_ipython()
    return bool(shell) and type(shell).__name__ == "ZMQInteractiveShell"


def echo_worker_output(run: Run):
    """Subscribers that print what worker stages print: as it comes where the executor
    streams it, else when the stage ends (stages running in this process print live)."""
    streamed: set[str] = set()

    def live(stage: str, text: str) -> None:
        streamed.add(stage)
        sys.stdout.write(text)
        sys.stdout.flush()

    def at_end(event: Event) -> None:
        if event.status in (StageStatus.DONE, StageStatus.FAILED, StageStatus.RETRYING):
            record = run.stage_records[event.stage]
            if record.output and record.worker != THIS_PROCESS and event.stage not in streamed:
                sys.stdout.write(record.output)
                sys.stdout.flush()

    return at_end, live

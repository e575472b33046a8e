"""Workers never outlive the process that runs the pipeline."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
from conftest import assert_no_orphans

from pydags.executors import buffers

DRIVER = textwrap.dedent("""
    import subprocess, sys, time
    from pydags import Pipeline, stage

    @stage
    def endless(i):
        subprocess.Popen(["sleep", "300"])  # something the stage started, too
        print("started", flush=True)
        while True:
            pass

    run = Pipeline("endless", [endless(i).named(f"e{i}") for i in range(2)]).start(
        num_cores=2, block=False, show=False)
    time.sleep(300)
""")


def test_killing_the_driver_stops_its_workers_and_what_they_started(no_orphans, tmp_path):
    ours = buffers.folder()  # the driver below inherits its variable, and makes its own
    driver = subprocess.Popen([sys.executable, "-c", DRIVER], cwd=tmp_path,
                              env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    process = psutil.Process(driver.pid)

    def busy_descendants():
        return [p for p in process.children(recursive=True) if p.name() == "sleep"]

    deadline = time.time() + 120
    while len(busy_descendants()) < 2:  # both stages have started their sleeps
        assert time.time() < deadline, "the stages never started"
        time.sleep(0.05)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    assert_no_orphans(seconds=10)
    assert os.path.isdir(ours)  # its workers cleaned up the killed driver's folder, not ours

"""Workers never outlive the process that runs the pipeline."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import numpy
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
    held = buffers.loads(buffers.dumps(numpy.ones(1 << 18)))  # 2 MB: a file in our folder
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
    assert held.sum() == 1 << 18


IDLE_DRIVER = textwrap.dedent("""
    import time
    from pydags import Pipeline, stage
    from pydags.executors import buffers

    @stage
    def trivial():
        return 1

    Pipeline("idle", [trivial()]).start(num_cores=2, show=False)  # its workers are idle now
    print(buffers.folder(), flush=True)
    time.sleep(300)
""")


def kill_and_wait_for_cleanup(driver: subprocess.Popen, folder: str) -> None:
    """SIGKILL ``driver``; its workers must delete its shared ``folder`` and exit."""
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    driver.stdout.close()
    deadline = time.time() + 60
    while os.path.exists(folder):
        assert time.time() < deadline, f"{folder} is still there: {os.listdir(folder)}"
        time.sleep(0.05)
    assert_no_orphans(seconds=10)


def test_the_idle_workers_of_a_killed_driver_delete_its_shared_folder(no_orphans, tmp_path):
    driver = subprocess.Popen([sys.executable, "-c", IDLE_DRIVER], cwd=tmp_path,
                              stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    folder = driver.stdout.readline().strip()
    assert os.path.isdir(folder) and folder != buffers.folder()
    kill_and_wait_for_cleanup(driver, folder)


def test_a_worker_whose_driver_died_while_it_started_exits(no_orphans):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a driver that is no more
    job_read, job_write = os.pipe()
    out_read, out_write = os.pipe()
    ours, theirs = socket.socketpair()
    given = (job_read, out_write, theirs.fileno())
    worker = subprocess.Popen(
        [sys.executable, "-m", "pydags.executors.worker", *map(str, given), str(gone.pid)],
        pass_fds=given, start_new_session=True,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    try:
        assert worker.wait(timeout=60) == -signal.SIGKILL  # it stopped itself
    finally:
        for fd in (job_read, job_write, out_read, out_write):
            os.close(fd)
        ours.close()
        theirs.close()


MAPPING_DRIVER = textwrap.dedent("""
    import time
    import numpy
    from pydags import Pipeline, stage
    from pydags.executors import buffers

    @stage
    def rows(x):
        time.sleep(0.01)
        return numpy.full(1 << 20, x % 256, dtype=numpy.uint8)  # 1 MB: a shared file each

    print(buffers.folder(), flush=True)
    done = []

    def count(event):
        if event.item is not None and event.status.value == "done":
            done.append(event.item)
            if len(done) == 40:
                print("40 done", flush=True)

    run = Pipeline("rows", [rows.map(range(400))]).prepare(num_cores=2)
    run.subscribe(count, items=True)
    run.start()
""")


def test_a_driver_killed_mid_map_leaves_no_shared_folder(no_orphans, tmp_path):
    for _ in range(3):  # the workers raced each other to delete it: it was left 1-2 times in 3
        driver = subprocess.Popen([sys.executable, "-c", MAPPING_DRIVER], cwd=tmp_path,
                                  stdout=subprocess.PIPE, text=True,
                                  env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
        folder = driver.stdout.readline().strip()
        assert driver.stdout.readline().strip() == "40 done"
        kill_and_wait_for_cleanup(driver, folder)

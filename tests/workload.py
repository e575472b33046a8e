"""Stages that tests run in worker processes.

Workers import a stage's module to run it, so this module imports nothing heavy: a fresh
worker is ready in a fraction of a second even on a busy machine.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

from pydags.stage import Stage, stage


@stage
def load():
    return [3, 1, 2]


@stage
def clean(rows):
    return sorted(rows)


@stage
def total(rows, offset=0):
    return sum(rows) + offset


@stage
def boom():
    raise ValueError("no data today")


@stage
def after_boom(x):
    return x


@stage
def independent():
    return "still ran"


@stage
def fine():
    return "fine"


@stage
def sleepy(seconds=30):
    time.sleep(seconds)
    return seconds


@stage
def downstream(x):
    return x


@stage
def segfault():
    os.kill(os.getpid(), signal.SIGSEGV)


@stage
def hard_exit():
    os._exit(7)


@stage
def calls_sys_exit():
    sys.exit(3)


class Unpicklable(Exception):
    def __init__(self):
        super().__init__("carries a lock")
        self.lock = threading.Lock()


@stage
def raises_unpicklable():
    raise Unpicklable()


@stage
def loud():
    for _ in range(200_000):
        print("x" * 50)
    return "done"


@stage
def work(fate, *upstream):
    """The soak test's stage: fails (``fail-once:PATH``: unless PATH exists, which it
    makes), kills its own worker, or adds up its inputs."""
    if fate == "fail":
        raise RuntimeError("planned failure")
    if fate.startswith("fail-once:") and not os.path.exists(fate[len("fail-once:"):]):
        open(fate[len("fail-once:"):], "w").close()
        raise RuntimeError("planned failure, the first time")
    if fate == "crash":
        os.kill(os.getpid(), signal.SIGKILL)
    return 1 + sum(upstream)


@stage
def add(*values):
    return 1 + sum(values)


class Scale(Stage):
    def __init__(self, rows, factor=2):
        super().__init__(rows)
        self.factor = factor

    def run(self, rows):
        return [r * self.factor for r in rows]


class Named(Stage):
    @property
    def name(self):
        return "custom_name"

    def run(self):
        return "named"


@stage
def wait_for_file(path, seconds=300):
    """Block until ``path`` exists (a test's way to hold a stage running, then release it)."""
    end = time.time() + seconds
    while not os.path.exists(path) and time.time() < end:
        time.sleep(0.02)
    return os.path.exists(path)


class TwoPartError(Exception):
    """An exception whose constructor takes two arguments: it pickles but cannot be rebuilt."""

    def __init__(self, what, why):
        super().__init__(f"{what} failed because {why}")


@stage
def raises_two_part():
    raise TwoPartError("parsing", "the header is missing")


@stage
def interrupts_itself():
    raise KeyboardInterrupt


@stage
def pid_and_modules():
    """This worker's process id, and whether an earlier stage here imported ``json``."""
    had = "json" in sys.modules
    import json  # noqa: F401  (stays imported in a warm worker)

    return os.getpid(), had


@stage
def talk_then(fate, seconds=300):
    """Print a line, then time out (sleep), crash, or stream more lines."""
    print("before the end", flush=True)
    if fate == "crash":
        time.sleep(0.3)  # the line reaches the driver first
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(seconds)


@stage
def big_array(megabytes):
    import numpy

    return numpy.arange(megabytes * (1 << 20) // 8, dtype=numpy.float64)


@stage
def array_sum(array, offset=0):
    return float(array.sum()) + offset, array.flags.writeable


@stage
def pass_along(array):
    return array


@stage
def dies_leaving_a_child():
    """Fork a child that keeps the worker's pipes open, then let the worker die."""
    if os.fork() == 0:
        time.sleep(300)
        os._exit(0)
    time.sleep(0.2)
    os._exit(3)


@stage
def asks_for_input():
    return input("your name? ")


def _reconnect(error):
    raise {"OSError": OSError, "EOFError": EOFError}[error]("not reachable from here")


class Reconnecting:
    """Reconnects when unpickled, which fails in the driver."""

    def __init__(self, error):
        self.error = error

    def __reduce__(self):
        return (_reconnect, (self.error,))


@stage
def reconnects(error):
    return Reconnecting(error)


@stage
def shout(word):
    print(word)
    return word


@stage
def runs_a_pipeline_inside():
    """A stage that runs a pipeline of its own, in its own process, then prints on."""
    from pydags import Pipeline

    inner = Pipeline("inner", [shout("from the inner stage")]).start(num_cores=1)
    print("after the inner run")
    return inner.results["shout"]


@stage
async def fetch(x):
    import asyncio

    await asyncio.sleep(0.01)
    print("fetched", x)
    return x * 2


@stage
def echo(value):
    return value


@stage
def keyword_echo(**values):
    return values


@stage
def fails_first(path, value="ok", attempts=2):
    """Fail until this is attempt number ``attempts`` (counted in the file at ``path``)."""
    with open(path, "a") as f:
        f.write("x")
    with open(path) as f:
        if len(f.read()) < attempts:
            raise RuntimeError("an early attempt fails")
    return value


# --- mapped stages -----------------------------------------------------------
@stage
def list_files(folder):
    return sorted(os.path.join(folder, name) for name in os.listdir(folder)
                  if name.endswith(".csv"))


@stage
def read_number(path, scale=1):
    with open(path) as file:
        return float(file.read()) * scale


@stage
def summarize(numbers):
    return {"count": len(numbers), "total": sum(numbers)}


@stage
def pause_then_double(x, seconds=0.0):
    time.sleep(seconds)
    return 2 * x


@stage
def unless_stopped(x, stop_file, calls):
    """Fails for ``x == 3`` while ``stop_file`` exists; notes every call in folder ``calls``."""
    with open(os.path.join(calls, f"{x}-{time.time_ns()}"), "w"):
        pass
    if x == 3 and os.path.exists(stop_file):
        raise ValueError(f"item {x} is broken")
    return x * 10


@stage
def held(x, release):
    """Returns ``x`` once ``release`` exists (0 returns at once, a negative ``x`` fails)."""
    if x < 0:
        raise ValueError(f"item {x} fails")
    while x and not os.path.exists(release):
        time.sleep(0.02)
    return x


@stage
def crashes_on(x, bad):
    """Takes its worker down for item ``bad``."""
    if x == bad:
        os.kill(os.getpid(), signal.SIGKILL)
    return x


@stage
def fails_for(x, bad=(), seconds=0.0):
    """Raises for the items in ``bad``; sleeps ``seconds`` for the last of 100,000."""
    if x in bad:
        raise ValueError(f"item {x} is bad")
    if x == 99_999:
        time.sleep(seconds)
    return x * x


@stage
def crashes_once(array, marker):
    """The worker dies the first time (``marker`` does not exist yet); then the sum."""
    if not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(3)
    return float(array.sum())


@stage
def big_bytes(megabytes, kind=bytes):
    return kind(b"\x01" * (megabytes << 20))


@stage
def bytes_info(data):
    return type(data).__name__, len(data), data[:2]


@stage
def exits_for(x, bad):
    """Calls ``sys.exit(4)`` for item ``bad``."""
    if x == bad:
        sys.exit(4)
    return x


@stage
def lock_for(x, bad):
    """Returns a lock, which cannot be pickled, for item ``bad``."""
    return threading.Lock() if x == bad else x


@stage
def where_am_i(_=None, variable="PYDAGS_TEST_X", module=""):
    """The working directory, an environment variable, and a module's ``VALUE``."""
    value = __import__(module).VALUE if module else None
    return os.getcwd(), os.environ.get(variable), value


@stage
def size_of(x, model=None):
    return x + len(model)


@stage
def starts_a_daemon(pid_file, then_sleep=0):
    """Starts a process that leaves its session and parent (setsid, double fork), then ends
    (after ``then_sleep`` seconds)."""
    import subprocess

    subprocess.Popen([sys.executable, "-c", (
        "import os, sys, time\n"
        "if os.fork(): sys.exit(0)\n"
        "os.setsid()\n"
        "if os.fork(): sys.exit(0)\n"
        f"open({pid_file!r} + '.tmp', 'w').write(str(os.getpid()))\n"
        f"os.rename({pid_file!r} + '.tmp', {pid_file!r})\n"
        "time.sleep(600)\n")]).wait()
    wait_for_file.func(pid_file, 60)
    time.sleep(then_sleep)
    return int(open(pid_file).read())


@stage
def needs_fix(x, path):
    """Fails until ``path`` exists."""
    if not path.exists():
        raise RuntimeError("not fixed yet")
    return x + 1


@stage
def unpicklable_result():
    """Returns a lock: it runs in this process (one core) but cannot be stored."""
    return threading.Lock()


@stage
def step(*upstream, seconds=0.05, fail_unless=None):
    """Sleeps ``seconds``; fails while the file ``fail_unless`` (if given) does not exist."""
    time.sleep(seconds)
    if fail_unless is not None and not os.path.exists(fail_unless):
        raise RuntimeError(f"{fail_unless} is missing")
    return len(upstream)


def ml_pipeline(flag: str, seconds: float = 1.0):
    """32 stages as a forecasting project has them; ``fit_prophet`` fails until ``flag``
    exists, and the four stages below it are skipped."""
    from pydags import Pipeline

    made: dict = {}

    def make(name, *parents, **options):
        made[name] = step(*[made[p] for p in parents], seconds=seconds, **options).named(name)

    for source in ("sales", "weather", "calendar", "stores"):
        make(f"load_{source}")
        make(f"clean_{source}", f"load_{source}")
    for feature in ("lags", "holidays", "rolling", "prices", "promos"):
        make(f"feature_{feature}", "clean_sales", "clean_calendar")
    make("feature_store_meta", "clean_stores")
    make("check_sales", "clean_sales")
    make("feature_weather", "clean_weather")
    make("join_features", *[n for n in made if n.startswith("feature_")], "check_sales")
    make("archive_features", "join_features")
    make("split", "join_features")
    for model in ("ridge", "forest", "boosting", "prophet", "naive"):
        make(f"fit_{model}", "split", **({"fail_unless": flag} if model == "prophet" else {}))
        make(f"score_{model}", f"fit_{model}")
    make("compare", *[n for n in made if n.startswith("score_")])
    make("report", "compare")
    make("deploy", "compare")
    return Pipeline("forecast", list(made.values()))


def wide_pipeline(n: int = 200, seconds: float = 0.05):
    """``n`` stages named fit_000 ... of ``seconds`` each, each taking up to two earlier."""
    import random

    from pydags import Pipeline

    rng = random.Random(7)
    made: list = []
    for i in range(n):
        parents = rng.sample(made, min(len(made), rng.randint(0, 2)))
        made.append(step(*parents, seconds=seconds).named(f"fit_{i:03d}"))
    return Pipeline("wide", made)


@stage
def slow_from(x, first_slow=100, seconds=0.02):
    """``x``, at once below ``first_slow``, after ``seconds`` from there on."""
    if x >= first_slow:
        time.sleep(seconds)
    return x


@stage
def stops_on_zero(x):
    """``x``; for 0, the StopIteration of an empty iterator."""
    return next(iter([])) if x == 0 else x

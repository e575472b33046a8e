"""The orphan check itself: it must see a process that escaped the one that started it."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import _older, assert_no_orphans, live_children

ESCAPE = ("import subprocess\n"
          "subprocess.Popen(['sleep', '300'], start_new_session=True)\n")  # then exit at once


@pytest.mark.skipif(sys.platform != "linux", reason="escaped processes are found on Linux")
def test_the_orphan_check_fails_on_an_escaped_process_and_passes_once_it_is_gone():
    _older.clear()
    _older.update(p.pid for p in live_children())
    subprocess.run([sys.executable, "-c", ESCAPE], check=True)  # its parent is gone now
    escaped = [p for p in live_children() if p.cmdline()[:1] == ["sleep"]]
    assert len(escaped) == 1, "the escaped process was not found"
    with pytest.raises(AssertionError, match="sleep"):
        assert_no_orphans(seconds=0.5)
    escaped[0].kill()
    escaped[0].wait(30)
    assert_no_orphans()

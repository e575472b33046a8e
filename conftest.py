"""Settings for the whole test session: tests and the tutorials under nbval alike."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

# Results cached by this session go to a folder of its own, not the user's store: a cell
# magic run again reuses what an earlier run stored, and earlier sessions must not count.
# Notebook kernels and subprocesses started by the tests inherit it.
_store = tempfile.mkdtemp(prefix="pydags-test-store-")
os.environ["PYDAGS_STORE"] = _store
atexit.register(shutil.rmtree, _store, True)

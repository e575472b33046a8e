"""The tutorials run under nbval with a store of their own: a cell magic run again reuses
what an earlier run stored, and earlier test sessions must not count."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

_store = tempfile.mkdtemp(prefix="pydags-notebook-store-")
os.environ["PYDAGS_STORE"] = _store  # the notebooks' kernels inherit it
atexit.register(shutil.rmtree, _store, True)

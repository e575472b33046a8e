"""The room persisted results take in a store on disk: a quota (``$PYDAGS_QUOTA``, default
10 GB) kept by evicting the least recently used results, never those of a pipeline's latest
run; the size per pipeline, and pruning, that ``pydags cache`` shows and does.

Only a ``DiskStore`` is measured: Redis evicts by its own ``maxmemory`` policy, and a
diskcache store by its own ``size_limit``.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from typing import Any

from pydags import cache as caching

DEFAULT = 10 * 1000**3
_UNITS = {"": 1, "B": 1, "KB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4,
          "KIB": 1024, "MIB": 1024**2, "GIB": 1024**3, "TIB": 1024**4}


def quota() -> int:
    """The bytes persisted results may take: ``$PYDAGS_QUOTA`` ("50MB", "10GB", bytes)."""
    given = os.environ.get("PYDAGS_QUOTA", "").strip()
    if not given:
        return DEFAULT
    found = re.fullmatch(r"([0-9.]+)\s*([A-Za-z]*)", given)
    if not found or found.group(2).upper() not in _UNITS:
        raise ValueError(f"PYDAGS_QUOTA={given!r}: give bytes, or a size such as 500MB or "
                         "10GB")
    return int(float(found.group(1)) * _UNITS[found.group(2).upper()])


@dataclass(frozen=True)
class Kept:
    """One stored result: its key, its pipeline, its size, when it was last used."""

    key: str
    pipeline: str
    size: int
    used: float


def kept(store: Any) -> list[Kept]:
    """The results ``store`` keeps (empty for a store that is not a folder on disk)."""
    from pydags.store import DiskStore

    if not isinstance(store, DiskStore):
        return []
    return [Kept(key, key.split("/")[1], size, used)
            for key, size, used in store.sizes(caching.PREFIX + "/") if key.count("/") >= 3]


def latest_keys(runs: int = 1) -> set[str] | None:
    """The keys of the results of each pipeline's last ``runs`` runs, as the journal lists
    them (None when the journal cannot be read: then nothing is evicted)."""
    from pydags.scribe import reading

    try:
        with reading() as db:
            rows = db.execute(
                "SELECT r.pipeline, s.stage, s.fingerprint FROM stages s JOIN runs r ON "
                "s.run = r.id WHERE s.fingerprint IS NOT NULL AND r.id IN (SELECT id FROM "
                "runs WHERE pipeline = r.pipeline ORDER BY started DESC LIMIT ?)",
                (runs,)).fetchall()
    except Exception:
        return None
    keys = set()
    for pipeline, stage, digest in rows:
        keys.add(caching.key(pipeline, stage, digest))
        keys.add(caching.key(pipeline, stage, f"chunk-{digest[:32]}-"))  # a prefix
    return keys


def _protected(key: str, keys: set[str]) -> bool:
    if key.endswith("/last") or key in keys:
        return True
    head, _, _ = key.rpartition("-")  # a chunk of a map's items: ...-<first>-<n>
    return head.rpartition("-")[0] + "-" in keys


def enforce(store: Any, keep: set[str], limit: int | None = None) -> int:
    """Evict the least recently used results of ``store`` until it holds ``limit`` bytes
    (the quota) or less, but ``keep`` and the results of each pipeline's latest run;
    returns the bytes freed."""
    limit = quota() if limit is None else limit
    results = kept(store)
    total = sum(k.size for k in results)
    if total <= limit:
        return 0
    keys = latest_keys()
    if keys is None:
        return 0
    keys |= keep
    freed = 0
    for item in sorted(results, key=lambda k: k.used):
        if total - freed <= limit:
            break
        if not _protected(item.key, keys):
            store.delete(item.key)
            freed += item.size
    return freed


def sizes(store: Any) -> dict[str, tuple[int, int]]:
    """Per pipeline: how many results ``store`` keeps, and their bytes."""
    found: dict[str, tuple[int, int]] = {}
    for item in kept(store):
        count, size = found.get(item.pipeline, (0, 0))
        found[item.pipeline] = (count + 1, size + item.size)
    return found


def prune(store: Any, *, keep_last: int | None = None, older_than: float | None = None,
          ) -> tuple[int, int]:
    """Delete the results that are not of each pipeline's last ``keep_last`` runs, or not
    used for ``older_than`` days (both: either kind); returns how many, and their bytes."""
    keys = latest_keys(keep_last) if keep_last else None
    if keep_last and keys is None:
        raise RuntimeError("the run journal cannot be read: nothing was pruned")
    cutoff = time.time() - older_than * 86400 if older_than is not None else None
    count = size = 0
    for item in kept(store):
        if item.key.endswith("/last"):
            continue
        stale = (keys is not None and not _protected(item.key, keys)) or (
            cutoff is not None and item.used < cutoff)
        if stale:
            store.delete(item.key)
            count, size = count + 1, size + item.size
    return count, size

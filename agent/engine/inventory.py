"""A small inventory of an open repository, for the metrics (agent/daemon/metrics.py).

The daemon never holds a repository open (no passphrase, no network in its own process),
yet a fleet's monitoring wants each repository's size, its snapshots per retention tier
and the compliance rules' states. So the commands that already hold a repository open
(backup, prune, check, repair, restore-test: agent/cli/opening.py) note this inventory
in the state directory's records when they end; the metrics are then computed from the
state directory alone.

What it holds: the snapshots' ids, times, tags and a digest of (host, backed-up paths)
(retention groups snapshots by them: the digest groups alike and names no folder), the
repository's creation time and cipher, the packs' count and bytes, and the newest
snapshot's own counts (files, bytes, duration). Never a path or a file name.
"""

from __future__ import annotations

import hashlib
from typing import Any

from agent.repo.repository import Repository
from agent.repo.snapshot import Snapshot

INVENTORY_RECORD = "inventory"  # the Records kind (agent/state/records.py) it is noted under

# The newest snapshot's counts kept (agent/engine/backup.py BackupReport.as_dict, stored in
# each snapshot's summary): numbers only.
LATEST_COUNTS = ("files_new", "files_changed", "files_unchanged", "dirs", "bytes_total", "bytes_read",
                 "bytes_added", "duration_s", "warnings", "database_failures")


def group_digest(host: str, paths: list[str]) -> str:
    """What retention groups snapshots by, without the folders' names."""
    text = "\0".join([host, *sorted(paths)])
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def take(repo: Repository) -> dict[str, Any]:
    """The inventory as a JSON document (Records.note's detail)."""
    snapshots = repo.snapshots()  # oldest first
    packs = repo.list_pack_names()
    return {
        "created": repo.config.created or None,
        "cipher": repo.config.cipher,
        "packs": len(packs),
        "size_bytes": sum(packs.values()),
        "snapshots": [_entry(s) for s in snapshots if s.id is not None],
        "unreadable_snapshots": len(repo.snapshot_problems),
        "latest": _latest(snapshots[-1]) if snapshots else None,
    }


def _entry(snapshot: Snapshot) -> dict[str, Any]:
    assert snapshot.id is not None
    return {"id": snapshot.id.hex(), "time": snapshot.time.isoformat(), "tags": list(snapshot.tags),
            "group": group_digest(snapshot.host, snapshot.paths)}


def _latest(snapshot: Snapshot) -> dict[str, Any]:
    counts = {k: v for k in LATEST_COUNTS
              if isinstance(v := snapshot.summary.get(k), (int, float)) and not isinstance(v, bool)}
    return {"id": snapshot.id.hex() if snapshot.id else None, "time": snapshot.time.isoformat(),
            "partial": bool(snapshot.summary.get("partial")), **counts}

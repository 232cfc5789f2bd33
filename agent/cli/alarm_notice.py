"""What `backup` does when its snapshot is marked suspect by the ransomware alarm (issue 22):
record the open alarm (state records, audit trail), extend the last good snapshot's object
lock, and the lines to print. Counts and folder names only, never a file name."""

from __future__ import annotations

import datetime as _dt
from typing import Any

from agent import clock
from agent.cli.common import audit
from agent.config import Config
from agent.engine.alarm import open_alarm
from agent.engine.lock_dates import LockDateCache, hold_last_good
from agent.repo.repository import Repository
from agent.repo.snapshot import Snapshot
from agent.state.alarm_state import acknowledged, note_alarm
from agent.state.layout import StateLayout
from agent.state.records import Records


def record_alarm(config: Config, repo: Repository, repository: str, snap: Snapshot,
                 alarm: dict[str, Any] | None) -> list[str]:
    """For a suspect snapshot: note and audit the open alarm, hold the last good snapshot's
    lock; returns the warning lines. Nothing for a snapshot that is not suspect."""
    if not alarm or not alarm.get("suspect") or snap.id is None:
        return []
    records = Records(config.agent.state_dir, repository)
    found = open_alarm(repo.snapshots(), acknowledged(records))
    last_good = found.last_good if found is not None else alarm.get("last_good")
    suspect = snap.id.hex()
    note_alarm(records, snap.time, open=True, snapshot=suspect, last_good=last_good, counts=alarm)
    counts = {k: alarm.get(k) for k in ("files_before", "changed", "removed", "lost_compression", "renamed",
                                         "note_folders")}
    audit(config, "ransomware_alarm", repository=repository, snapshot=suspect, last_good=last_good,
          signs=alarm.get("signs", []), **counts)
    lines = [describe(suspect, alarm)]
    if repo.object_lock_enabled and last_good:
        good = next((s for s in repo.snapshots() if s.id is not None and s.id.hex() == last_good), None)
        if good is not None:
            cache = LockDateCache(StateLayout(config.agent.state_dir).lock_dates(repo.config.repository_id))
            until = clock.now() + _dt.timedelta(days=config.alarm.lock_days)
            hold_last_good(repo, good, until, cache=cache)
            lines.append(f"the object lock of the last good snapshot {last_good[:8]} is extended to {until:%Y-%m-%d}")
    if last_good:
        lines.append(f"prune forgets nothing from the last good snapshot {last_good[:8]} on until "
                     f"`backupctl acknowledge {suspect[:8]}`; see what changed: "
                     f"backupctl diff {last_good[:8]} {suspect[:8]}")
    else:
        lines.append(f"prune forgets nothing until `backupctl acknowledge {suspect[:8]}`")
    return lines


def describe(suspect: str, alarm: dict[str, Any]) -> str:
    folders = ", ".join(str(f) for f in alarm.get("folders", [])) or "-"
    return (f"RANSOMWARE ALARM: snapshot {suspect[:8]} is saved but marked suspect: "
            f"{alarm.get('changed', 0)} changed and {alarm.get('removed', 0)} removed of "
            f"{alarm.get('files_before', 0)} files ({float(alarm.get('changed_share', 0)):.0%}), "
            f"{alarm.get('lost_compression', 0)} no longer compress, {alarm.get('renamed', 0)} renamed to a new "
            f"extension, one same new file in {alarm.get('note_folders', 0)} folders; folders: {folders}")

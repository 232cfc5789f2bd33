"""The ransomware alarm's state on this machine (issue 22), in the state records.

The suspect mark itself is in the repository (the snapshot's tag and `summary.alarm`):
any machine reading it sees it. What a person did about it, `backupctl acknowledge`, is
kept here (and in the audit trail), under the Records kind "ransomware_alarm":

    {"time": ..., "open": bool, "snapshot": suspect hex, "last_good": hex or null,
     ...counts of the suspect snapshot's summary.alarm, "acknowledged": [hex, ...]}

Other consumers (the metrics) read `open`, `snapshot` and `last_good`. The list of
acknowledged snapshots is carried from one note to the next, so a new alarm never
reopens one a person already looked at.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from agent.state.records import Records, Risk

ALARM_RECORD = "ransomware_alarm"
# What of summary.alarm is copied into the record: counts, and the few folder names for the
# daemon's alert (never a file name; a reader that makes metrics labels uses the counts only).
RECORDED_COUNTS = ("files_before", "changed", "removed", "changed_share", "lost_compression", "renamed",
                   "note_folders", "folders", "signs")


def acknowledged(records: Records) -> set[str]:
    event = records.last(ALARM_RECORD)
    listed = event.detail.get("acknowledged") if event is not None else None
    return {str(i) for i in listed} if isinstance(listed, list) else set()


def note_alarm(records: Records, moment: _dt.datetime, *, open: bool, snapshot: str, last_good: str | None,
               counts: dict[str, Any], acknowledge: str | None = None, by: str | None = None) -> None:
    """Record the alarm's state; `acknowledge`: a snapshot a person acknowledged (by `by`)."""
    known = sorted(acknowledged(records) | ({acknowledge} if acknowledge else set()))
    extra = {"acknowledged_by": by} if by else {}
    records.note(ALARM_RECORD, moment, open=open, snapshot=snapshot, last_good=last_good,
                 **{k: counts[k] for k in RECORDED_COUNTS if k in counts}, acknowledged=known, **extra)


def alarm_risk(records: Records) -> Risk | None:
    """The open alarm as a risk for `status` and the daemon's risk alert (counts only)."""
    event = records.last(ALARM_RECORD)
    if event is None or event.detail.get("open") is not True:
        return None
    detail = event.detail
    snapshot = str(detail.get("snapshot") or "?")[:8]
    share = detail.get("changed_share")
    return Risk("ransomware_alarm", {
        "snapshot": snapshot, "last_good": str(detail.get("last_good") or snapshot)[:8],
        "lost_compression": str(detail.get("lost_compression", 0)), "renamed": str(detail.get("renamed", 0)),
        "changed_share": f"{float(share):.0%}" if isinstance(share, (int, float)) else "?"})

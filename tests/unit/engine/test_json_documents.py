"""The `--json` documents of prune, check, restore and the rescue kit, key by key.

The daemon reads them back (agent/daemon/children.py), monitoring reads them, and
docs/REFERENCE.md names their keys: each report filled with distinct values must give exactly
this document, so a key renamed, a value taken from the wrong field or a conversion dropped
fails here and not at a practice.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from agent.engine.check import CheckReport
from agent.engine.lock_dates import LockReport
from agent.engine.prune import PruneReport
from agent.engine.restore import RestoreReport
from agent.engine.retention import Decision
from agent.repo.rescue_kit import NOT_INSTALLED, STORED, UNUSABLE, KitOutcome, KitRecord

PARIS = dt.timezone(dt.timedelta(hours=1))
FRIDAY = dt.datetime(2026, 11, 6, 20, 0, tzinfo=PARIS)


def _decisions() -> list[Decision]:
    return [
        Decision(bytes.fromhex("0a" * 16), FRIDAY, True, ("weekly 2026-W45", "monthly 2026-11"),
                 keep_until=FRIDAY + dt.timedelta(days=365), settled_until=FRIDAY + dt.timedelta(days=28)),
        Decision(bytes.fromhex("0b" * 16), FRIDAY - dt.timedelta(days=7), False, ()),
        Decision(None, FRIDAY - dt.timedelta(days=14), True, ("last",)),
    ]


def test_a_retention_decision() -> None:
    kept, forgotten, unsaved = (d.as_dict() for d in _decisions())
    assert kept == {"snapshot_id": "0a" * 16, "time": "2026-11-06T20:00:00+01:00", "action": "keep",
                    "reasons": ["weekly 2026-W45", "monthly 2026-11"],
                    "keep_until": "2027-11-06T20:00:00+01:00", "settled_until": "2026-12-04T20:00:00+01:00"}
    assert forgotten == {"snapshot_id": "0b" * 16, "time": "2026-10-30T20:00:00+01:00", "action": "forget",
                         "reasons": [], "keep_until": None, "settled_until": None}
    assert unsaved["snapshot_id"] is None and unsaved["action"] == "keep"


def test_a_prune() -> None:
    report = PruneReport(dry_run=False, decisions=_decisions(), snapshots_forgotten=1, packs_deleted=2,
                         packs_rewritten=3, packs_kept=4, bytes_freed=5, bytes_rewritten=6,
                         locked=[("data/0a/0a0b", "locked until 2027-01-01")], stale_locks_removed=7,
                         object_locks=LockReport(objects_checked=8, locks_extended=9,
                                                 latest={"0a" * 16: "2027-11-06"}))
    assert report.as_dict() == {
        "dry_run": False,
        "snapshots": [d.as_dict() for d in _decisions()],
        "snapshots_kept": 2,
        "snapshots_forgotten": 1,
        "packs_deleted": 2,
        "packs_rewritten": 3,
        "packs_kept": 4,
        "bytes_freed": 5,
        "bytes_rewritten": 6,
        "locked_objects": [{"object": "data/0a/0a0b", "reason": "locked until 2027-01-01"}],
        "stale_locks_removed": 7,
        "object_locks": {"objects_checked": 8, "locks_extended": 9, "snapshot_lock_dates": {"0a" * 16: "2027-11-06"}},
        "alarm_hold": None,
    }
    assert PruneReport(dry_run=True).as_dict()["object_locks"] is None
    assert PruneReport(dry_run=True).as_dict()["dry_run"] is True


def test_a_check() -> None:
    report = CheckReport(read_data=True, read_data_subset=(3, 13), snapshots=1, packs=2, blobs_verified=3,
                         bytes_read=4, errors=["pack x: damaged"], warnings=["w"], damaged_packs={"x": "why"},
                         unindexed_packs=5, ledger_problems=["gone"], rescue_kit_problems=["kit"])
    report.affected["0a" * 16].append("/srv/lettre.odt")
    assert report.as_dict() == {
        "ok": False, "read_data": True, "read_data_subset": "3/13", "snapshots": 1, "packs": 2,
        "blobs_verified": 3, "bytes_read": 4, "errors": ["pack x: damaged"], "warnings": ["w"],
        "damaged_packs": {"x": "why"}, "affected_files": {"0a" * 16: ["/srv/lettre.odt"]},
        "ledger_problems": ["gone"], "rescue_kit_problems": ["kit"], "unindexed_packs": 5,
    }
    whole = CheckReport().as_dict()
    assert whole["ok"] is True and whole["read_data_subset"] is None and whole["affected_files"] == {}


def test_a_restore() -> None:
    report = RestoreReport(files=1, dirs=2, symlinks=3, hardlinks=4, bytes=5, verified=6,
                           failures=[("srv/a.odt", "SHA-256 differs")], duration_s=1.23456, planned=["x"],
                           skipped=7, space_needed=8, space_available=9)
    assert report.as_dict() == {
        "files": 1, "dirs": 2, "symlinks": 3, "hardlinks": 4, "bytes": 5, "sha256_verified": 6,
        "already_restored": 7, "failures": [{"path": "srv/a.odt", "problem": "SHA-256 differs"}],
        "duration_s": 1.235, "space_needed": 8, "space_available": 9,
    }


def test_a_rescue_kit_outcome() -> None:
    record = KitRecord(version="1.2.0", sha256="ab" * 32, size=10, stored="2026-11-06")
    stored = KitOutcome(STORED, "1.2.0", Path("/opt/kit/backupctl-1.2.0.tar"), record)
    assert stored.as_dict() == {"state": "stored", "version": "1.2.0", "kit": "rescue/backupctl-rescue-kit-1.2.0.tar",
                                "sha256": "ab" * 32, "installed": "/opt/kit/backupctl-1.2.0.tar"}
    missing = KitOutcome(NOT_INSTALLED, "1.2.0", Path("/opt/kit/x"))
    assert missing.as_dict()["sha256"] is None and "problem" not in missing.as_dict()
    assert KitOutcome(UNUSABLE, "1.2.0", Path("/x"), problem="not a tar").as_dict()["problem"] == "not a tar"

"""What was last done to each repository, kept in the state directory for `status`.

state_dir/records/<repository name>.json holds the last successful backup, the last
check (and whether it passed), and the last restore test. Commands write it whether
they run by hand or from the daemon (which runs the same commands), so `status` can
answer at once, without the passphrase or the network. It is a summary, not the truth:
the repository itself is; a lost record only makes `status` report a risk until the
next backup.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from agent.state.files import JsonDoc, load_json, save_json
from agent.state.layout import StateLayout


# The Records kind holding the facts of the last probe of a repository's S3 endpoint (by
# `init`, or before a first upload without one): the upload verification follows from them.
PROBE_RECORD = "endpoint_probe"


@dataclass(frozen=True)
class Event:
    time: _dt.datetime
    detail: JsonDoc  # the record as stored: fields differ by kind (see Records.note)


class Records:
    def __init__(self, state_dir: str, repository: str) -> None:
        self.path = StateLayout(state_dir).records(repository)

    def load(self) -> JsonDoc:
        return load_json(self.path)

    def last(self, kind: str) -> Event | None:
        entry = self.load().get(kind)
        if not isinstance(entry, dict) or "time" not in entry:
            return None
        try:
            return Event(_dt.datetime.fromisoformat(entry["time"]), entry)
        except (TypeError, ValueError):
            return None

    @contextlib.contextmanager
    def _editing(self) -> Iterator[JsonDoc]:
        """Read-modify-write under an exclusive flock of <records>.json.lock: the inventory,
        the alarm, an acknowledgement and the apt hook's command each note their own kind, and
        two of them at once no longer lose one's update (as agent/state/ledger.py locks). A
        lock that cannot be opened (a read-only state directory) leaves it to the save to
        say why it cannot write."""
        try:
            os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
            handle = open(os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                                  0o600), "rb+")
        except OSError:
            doc = self.load()
            yield doc
            save_json(self.path, doc)
            return
        with handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            doc = self.load()
            yield doc
            save_json(self.path, doc)

    def note(self, kind: str, moment: _dt.datetime, **detail: Any) -> None:
        """kind: "backup", "check", "read_data_check", "restore_test"."""
        with self._editing() as doc:
            doc[kind] = {"time": moment.isoformat(), **detail}

    # Damage found by a check, per repository id (each disk of a rotated set has its
    # own). Prune refuses while it stands: a check that reads all the data, or a repair,
    # clears it; a structure check clears only what a structure check can see.

    def note_damage(self, repository_id: bytes, moment: _dt.datetime, *, read_data: bool,
                    problems: list[str]) -> None:
        with self._editing() as doc:
            stored = doc.get("damage")
            damage: JsonDoc = stored if isinstance(stored, dict) else {}
            damage[repository_id.hex()] = {"time": moment.isoformat(), "read_data": read_data,
                                           "problems": problems[:5], "count": len(problems)}
            doc["damage"] = damage

    def damage(self, repository_id: bytes) -> Event | None:
        entry = (self.load().get("damage") or {}).get(repository_id.hex())
        if not isinstance(entry, dict):
            return None
        try:
            return Event(_dt.datetime.fromisoformat(entry["time"]), entry)
        except (KeyError, TypeError, ValueError):
            return None

    def clear_damage(self, repository_id: bytes, *, read_all_data: bool) -> None:
        """A clean check: forget the damage it is able to see (all of it when it read
        every pack)."""
        found = self.damage(repository_id)
        if found is None or (found.detail.get("read_data") and not read_all_data):
            return
        with self._editing() as doc:
            stored = doc.get("damage")
            if isinstance(stored, dict):
                stored.pop(repository_id.hex(), None)


# ---- obligations (pure) ---------------------------------------------------------------------

WEEKLY_LIMIT = _dt.timedelta(days=8)  # rule S1: at least weekly, one day of slack
RESTORE_TEST_LIMIT = _dt.timedelta(days=92)  # rule S7: quarterly
MONTH_GRACE_DAYS = 7  # a weekly backup must have happened in the first week of a month


@dataclass(frozen=True)
class Risk:
    """An obligation at risk, as a code and its parameters (dates, counts, names of disks,
    never a file name); agent/reports/i18n.py turns it into words, in French or English.
    `remedy` is the kind of job that mends it ("backup", "restore-test"; "" for none): the
    daemon does not alert on a risk whose remedy job is already queued."""

    code: str
    params: dict[str, str]
    remedy: str = ""


def restore_test_outcome(event: Event | None) -> tuple[_dt.datetime, bool] | None:
    """The last restore test as (time, passed): passed only when its record says ok."""
    return (event.time, event.detail.get("ok") is True) if event is not None else None


def restore_test_risk(last: tuple[_dt.datetime, bool] | None, now: _dt.datetime) -> Risk | None:
    """Rule S7 for one repository, from its last restore test (time, passed): the one verdict
    that `status` and `compliance` both use, so that they cannot disagree."""
    if last is None:
        return Risk("no_restore_test", {}, "restore-test")
    when, ok = last
    if now - when > RESTORE_TEST_LIMIT:
        return Risk("restore_test_old", {"days": str((now - when).days)}, "restore-test")
    if not ok:
        return Risk("restore_test_failed", {}, "restore-test")
    return None


def obligations_at_risk(*, now: _dt.datetime, last_backup: Event | None, last_check: Event | None,
                        last_restore_test: Event | None, zone: _dt.tzinfo) -> list[Risk]:
    """The memento obligations not met for one repository."""
    risks: list[Risk] = []
    local_now = now.astimezone(zone)
    if last_backup is None:
        risks.append(Risk("no_backup", {}, "backup"))
    else:
        age = now - last_backup.time
        if age > WEEKLY_LIMIT:
            risks.append(Risk("backup_old", {"days": str(age.days)}, "backup"))
        local = last_backup.time.astimezone(zone)
        if local_now.day > MONTH_GRACE_DAYS and (local.year, local.month) != (local_now.year, local_now.month):
            risks.append(Risk("no_monthly", {"year": str(local_now.year), "month": str(local_now.month)}, "backup"))
    if last_check is not None and last_check.detail.get("ok") is False:
        risks.append(Risk("check_damage", {"date": f"{last_check.time.astimezone(zone):%Y-%m-%d}"}))
    restore = restore_test_risk(restore_test_outcome(last_restore_test), now)
    if restore is not None:
        risks.append(restore)
    return risks

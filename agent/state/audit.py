"""The audit trail (rules T1-T3): who did what to the backups of patient data, and when.

state_dir/audit.jsonl, mode 0600 (T3: readable by the agent's user and root only), one
JSON record per line:

    {"time", "user", "host", "pid", "action", ...details, "prev": SHA-256 of the previous line}

Every record carries the SHA-256 of the line before it, so `backupctl audit verify`
detects any edit, insertion, deletion or swap inside the file, and names it: the line that was
edited or inserted, the two lines swapped, or the two lines between which records were deleted (from the first
broken link, the link after it and the line count kept in the head file). Appends take
an exclusive lock on the file, so records of concurrent commands (the daemon's jobs and
a restore by hand) never interleave or fork the chain.

Rule T2 asks that traces be kept at most six months and then deleted automatically:
when the oldest record is older than RETENTION, the older records are dropped and the
file starts with an `audit_purged` record whose `prev` is the hash of the last dropped
line, which the first kept record also names; it states how many records were dropped
and until when. The chain stays verifiable from that record on. (Deleting the start of
the trail and forging such a record is not detectable from the file alone.) Restores are
recorded with their target and patterns (T1: restores of patient data are traced); ordinary logs never name files.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import getpass
import hashlib
import json
import os
import socket
from typing import Any, TypedDict

from agent import clock, run_as
from agent.errors import IntegrityError, StateDirError
from agent.state.files import JsonDoc, write_private
from agent.state.layout import StateLayout

RETENTION = _dt.timedelta(days=183)  # six months (rule T2)
_HINT = "keep the file as it is (it is evidence) and report it; new records go on from the current end"
GENESIS = "0" * 64  # the `prev` of the very first record


def _digest(line: bytes) -> str:
    return hashlib.sha256(line.rstrip(b"\n")).hexdigest()


class TrailSummary(TypedDict):
    """What `AuditTrail.verify` found: how many records, the times of the first and last."""

    records: int
    first: str | None
    last: str | None


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


class AuditTrail:
    def __init__(self, state_dir: str) -> None:
        self.path = StateLayout(state_dir).audit_trail()
        # The SHA-256 of the last line, kept beside the trail: without it an edit of the
        # very last record (which no later record names) would go unnoticed.
        self.head_path = StateLayout(state_dir).audit_head()

    def append(self, action: str, **details: Any) -> JsonDoc:
        """Add one record (and purge what is older than RETENTION)."""
        try:
            os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
        except PermissionError:
            raise run_as.denied(self.path, "write") from None
        except OSError as exc:
            raise StateDirError(f"the audit trail {self.path} cannot be written ({exc.strerror})") from None
        with os.fdopen(fd, "r+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            handle.seek(0)
            lines = handle.read().splitlines(keepends=True)
            now = clock.now()
            lines = self._purged(lines, now)
            record = {"time": now.isoformat(), "user": _user(), "host": socket.gethostname(), "pid": os.getpid(),
                      "action": action, **details,
                      "prev": _digest(lines[-1]) if lines else GENESIS}
            lines.append(json.dumps(record, ensure_ascii=True, sort_keys=True).encode() + b"\n")
            handle.seek(0)
            handle.truncate()
            handle.write(b"".join(lines))
            handle.flush()
            os.fsync(handle.fileno())
            self._write_head(_digest(lines[-1]), len(lines))
        return record

    def _write_head(self, digest: str, count: int) -> None:
        try:
            write_private(self.head_path, f"{digest} {count}\n".encode("ascii"))
        except PermissionError:
            raise run_as.denied(self.head_path, "write") from None

    @staticmethod
    def _purged(lines: list[bytes], now: _dt.datetime) -> list[bytes]:
        limit = now - RETENTION
        keep_from = 0
        for number, line in enumerate(lines):
            try:
                moment = _dt.datetime.fromisoformat(json.loads(line)["time"])
            except (ValueError, KeyError, TypeError):
                break  # a damaged line stays for `verify` to report
            if moment >= limit:
                break
            keep_from = number + 1
        if keep_from == 0:
            return lines
        dropped = lines[:keep_from]
        try:
            last = json.loads(dropped[-1])
        except ValueError:
            last = {}
        marker = {"time": now.isoformat(), "user": _user(), "host": socket.gethostname(), "pid": os.getpid(),
                  "action": "audit_purged", "purged_records": len(dropped), "purged_until": last.get("time"),
                  "reason": "rule T2: traces are kept six months", "prev": _digest(dropped[-1])}
        # The first kept record still names the last dropped one, as the marker does:
        # records are never rewritten, and verify follows the chain through the marker.
        return [json.dumps(marker, ensure_ascii=True, sort_keys=True).encode() + b"\n", *lines[keep_from:]]

    def verify(self) -> TrailSummary:
        """Check the chain; raises IntegrityError naming the line that was edited or inserted,
        or where records were deleted (the first alteration, if there are several)."""
        lines: list[bytes] = []
        try:
            with open(self.path, "rb") as handle:
                lines = handle.read().splitlines(keepends=True)
        except FileNotFoundError:
            pass
        except PermissionError:
            raise run_as.denied(self.path, "read") from None
        head_digest, head_count = self._head()
        if not lines:
            if head_count:  # every record deleted: the head still counts them
                raise IntegrityError(f"audit trail {self.path}: all {head_count} record(s) were deleted "
                                     f"(the file is empty or gone)", hint=_HINT)
            return {"records": 0, "first": None, "last": None}
        records: list[JsonDoc] = []
        for number, line in enumerate(lines, start=1):
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if not isinstance(record, dict) or not isinstance(record.get("prev"), str):
                raise IntegrityError(f"audit trail {self.path}, line {number}: not a valid record "
                                     f"(edited or damaged)", hint=_HINT)
            records.append(record)
        if len(records) > 1 and records[1]["prev"] == GENESIS and records[0]["prev"] == _digest(lines[1]):
            raise IntegrityError(f"audit trail {self.path}, lines 1 and 2: they were swapped (line 2 is the first "
                                 f"record written, and line 1 names it as the record before it)", hint=_HINT)
        if len(records) > 1 and records[1]["prev"] == GENESIS and records[0]["prev"] != GENESIS:
            raise IntegrityError(f"audit trail {self.path}, line 1: it was inserted (line 2 is the first record "
                                 f"written)", hint=_HINT)
        if records and not (records[0]["prev"] == GENESIS or records[0].get("action") == "audit_purged"):
            raise IntegrityError(f"audit trail {self.path}, line 1: the trail does not start at its "
                                 f"beginning nor at a purge record (records before it were deleted)", hint=_HINT)
        digests = [_digest(line) for line in lines]
        broken = next((k for k in range(1, len(lines)) if not self._follows(records, digests, k)), None)
        if broken is not None:
            raise IntegrityError(f"audit trail {self.path}, "
                                 f"{self._altered(records, digests, broken, head_count)}", hint=_HINT)
        if head_digest is not None and head_digest != digests[-1]:
            raise IntegrityError(f"audit trail {self.path}, {self._altered_end(len(lines), head_count)}", hint=_HINT)
        return {"records": len(lines), "first": records[0].get("time"), "last": records[-1].get("time")}

    def _head(self) -> tuple[str | None, int | None]:
        """The digest of the last line written and the number of lines then (None: no head
        file yet, or a count it does not hold)."""
        try:
            with open(self.head_path, encoding="ascii") as handle:
                digest, _, count = handle.read().strip().partition(" ")
        except FileNotFoundError:
            return None, None
        except PermissionError:
            raise run_as.denied(self.head_path, "read") from None
        return digest, int(count) if count.isdigit() else None

    @staticmethod
    def _follows(records: list[JsonDoc], digests: list[str], k: int) -> bool:
        """Record k+1 (0-based index k) names line k (index k-1) as the line before it; the
        first record after a purge marker names the marker's own predecessor instead."""
        prev = records[k]["prev"]
        return prev == digests[k - 1] or (k == 1 and records[0].get("action") == "audit_purged"
                                          and prev == records[0]["prev"])

    @staticmethod
    def _altered(records: list[JsonDoc], digests: list[str], k: int, head_count: int | None) -> str:
        """What one alteration explains the first broken link, line k -> line k+1 (1-based):
        every record names the line before it by its digest, so
        - an edit of line k leaves line k+1 naming a line that is no longer there;
        - a record inserted as line k+1 names some other line, and line k+2 still names line k;
        - a record inserted as line k+1 that names line k as its predecessor (a copy of a
          record's prev, or a forged one) breaks the next link: line k+2 names the same line;
        - a deletion between line k and line k+1 looks like an edit of line k from the links
          alone: the head file's line count tells them apart (fewer lines than written);
        - an edit of line k+1 that also changes the digest it names breaks both its links (as
          edits of both lines k and k+1 do: the message says so).
        - two neighbouring records swapped (lines k+1 and k+2) keep their links, crossed:
          line k+1 names line k+2 and line k+2 names line k;
        Several alterations are named by the first one the chain shows."""
        line, after = k, k + 1  # 1-based numbers of the two lines of the broken link
        if k + 1 < len(records) and records[k]["prev"] == digests[k + 1] and records[k + 1]["prev"] == digests[k - 1]:
            return (f"lines {after} and {after + 1}: they were swapped (line {after} names line {after + 1} as "
                    f"the record before it, and line {after + 1} names line {line})")
        if k + 1 < len(records) and records[k + 1]["prev"] == digests[k - 1]:
            return f"line {after}: it was inserted (line {after + 1} follows line {line})"
        if records[k]["prev"] == records[k - 1]["prev"]:
            return f"line {line}: it was inserted (line {after} names the same line before it)"
        missing = None if head_count is None else head_count - len(records)
        if missing in (0, None) and k + 1 < len(records) and records[k + 1]["prev"] != digests[k]:
            return (f"line {after}: it was changed, its own link too (it does not follow line {line}, nor does "
                    f"line {after + 1} follow it; or lines {line} and {after} both were changed)")
        if missing is not None and missing > 0:
            return (f"between line {line} and line {after}: {missing} record(s) were deleted "
                    f"(line {after} does not follow line {line}, and the trail is {missing} line(s) shorter than "
                    f"written)")
        if missing == -1:
            return f"line {after}: it was inserted (it does not follow line {line})"
        if missing is not None and missing < 0:
            return (f"after line {line}: {-missing} records were inserted (line {after} does not follow "
                    f"line {line})")
        if missing is None:
            return (f"line {line}: it was changed, or records were deleted after it "
                    f"(line {after} does not follow it)")
        return f"line {line}: it was changed (line {after} does not follow it)"

    @staticmethod
    def _altered_end(count: int, head_count: int | None) -> str:
        """The chain holds but its last line is not the one last written (audit.head)."""
        if head_count is None or head_count == count:
            return f"line {count}: the last record was changed (it is not the one last written)"
        if head_count > count:
            return (f"after line {count}: the last {head_count - count} record(s) were deleted "
                    f"(the trail had {head_count} lines)")
        if count - head_count == 1:
            return f"line {count}: it was added after the last record written (line {head_count})"
        return f"lines {head_count + 1} to {count}: they were added after the last record written (line {head_count})"

"""The audit trail (rules T1-T3): who did what to the backups of patient data, and when.

state_dir/audit.jsonl, mode 0600 (T3: readable by the agent's user and root only), one
JSON record per line:

    {"time", "user", "host", "pid", "action", ...details, "prev": SHA-256 of the previous line}

Every record carries the SHA-256 of the line before it, so `backupctl audit verify`
detects any edit, insertion or deletion inside the file: the first record whose `prev`
does not match the line before names where the trail was altered. Appends take an
exclusive lock on the file, so records of concurrent commands (the daemon's jobs and a
restore by hand) never interleave or fork the chain.

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
        """Check the chain; raises IntegrityError naming the first broken line."""
        try:
            with open(self.path, "rb") as handle:
                lines = handle.read().splitlines(keepends=True)
        except FileNotFoundError:
            return {"records": 0, "first": None, "last": None}
        except PermissionError:
            raise run_as.denied(self.path, "read") from None
        previous = b""  # the line before the current one (lines are never empty)
        first: JsonDoc = {}  # the first record (a valid record is never empty)
        for number, line in enumerate(lines, start=1):
            try:
                record = json.loads(line)
                prev = record["prev"]
            except (ValueError, KeyError, TypeError):
                raise IntegrityError(f"audit trail {self.path}, line {number}: not a valid record "
                                     f"(edited or damaged)", hint=_HINT) from None
            if number == 1:
                first = record
                anchored = prev == GENESIS or record.get("action") == "audit_purged"
                if not anchored:
                    raise IntegrityError(f"audit trail {self.path}, line 1: the trail does not start at its "
                                         f"beginning nor at a purge record (records were deleted)", hint=_HINT)
            elif prev != _digest(previous) and not (number == 2 and first.get("action") == "audit_purged"
                                                     and prev == first.get("prev")):
                raise IntegrityError(f"audit trail {self.path}, line {number}: does not follow line {number - 1} "
                                     f"(a record was edited, inserted or deleted there)", hint=_HINT)
            previous = line
        try:
            with open(self.head_path, encoding="ascii") as handle:
                head_digest, _, _count = handle.read().strip().partition(" ")
        except FileNotFoundError:
            head_digest = None
        except PermissionError:
            raise run_as.denied(self.head_path, "read") from None
        if lines and head_digest is not None and head_digest != _digest(previous):
            raise IntegrityError(f"audit trail {self.path}: the last record (line {len(lines)}) is not the one "
                                 f"last written (it was edited, or records were removed from the end)", hint=_HINT)
        last = json.loads(previous) if previous else None
        return {"records": len(lines), "first": first.get("time") if first else None,
                "last": last.get("time") if last else None}

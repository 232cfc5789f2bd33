"""Snapshots: the root of one backup (docs/FORMAT.md, "Snapshots").

Plaintext is UTF-8 JSON; the object name carries a random 16-byte id that is also
bound into the associated data, so a snapshot cannot be renamed or replayed under
another id. Its `version` member is 1 in repositories of formats 1 to 4 and the format
version from format 5 on (agent.repo.versions).
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field
from typing import Any

from agent.errors import IntegrityError
from agent.repo.layout import SnapshotId
from agent.repo.versions import DOCUMENT_VERSION_BEFORE_5, check_version, document_version

SNAPSHOT_VERSION = DOCUMENT_VERSION_BEFORE_5  # the `version` of formats 1 to 4


@dataclass
class Snapshot:
    time: _dt.datetime
    host: str
    user: str
    paths: list[str]
    tree: bytes
    tags: list[str] = field(default_factory=list)
    excludes: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    program: str = ""
    id: SnapshotId | None = None

    @property
    def short_id(self) -> str:
        return self.id.hex()[:8] if self.id else "?"

    def encode(self, format_version: int = SNAPSHOT_VERSION) -> bytes:
        """The plaintext of this snapshot in a repository of `format_version`."""
        return json.dumps(
            {
                "version": document_version(format_version),
                "time": self.time.isoformat(),
                "host": self.host,
                "user": self.user,
                "paths": self.paths,
                "tags": self.tags,
                "excludes": self.excludes,
                "tree": self.tree.hex(),
                "summary": self.summary,
                "program": self.program,
            },
            separators=(",", ":"),
        ).encode("utf-8")

    @classmethod
    def decode(cls, data: bytes, snapshot_id: SnapshotId, format_version: int = SNAPSHOT_VERSION) -> "Snapshot":
        """A snapshot of a repository of `format_version`, whose `version` must be the one
        that format writes (versions.check_version)."""
        try:
            doc = json.loads(data)
            check_version(doc["version"], format_version, what=f"snapshot {snapshot_id.hex()[:8]}")
            moment = _dt.datetime.fromisoformat(doc["time"])
            if moment.tzinfo is None:  # never written so; read as UTC rather than be incomparable
                moment = moment.replace(tzinfo=_dt.timezone.utc)
            return cls(
                time=moment,
                host=str(doc["host"]),
                user=str(doc["user"]),
                paths=[str(p) for p in doc["paths"]],
                tags=[str(t) for t in doc.get("tags", [])],
                excludes=[str(e) for e in doc.get("excludes", [])],
                tree=bytes.fromhex(doc["tree"]),
                summary=dict(doc.get("summary", {})),
                program=str(doc.get("program", "")),
                id=snapshot_id,
            )
        except (ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError, OverflowError) as exc:
            raise IntegrityError(f"snapshot {snapshot_id.hex()[:8]}: malformed ({exc})") from None


def chronological(snapshot: Snapshot) -> tuple[_dt.datetime, bytes]:
    """The order of snapshots (docs/FORMAT.md section 10), oldest first; "latest" is the last.

    By the instant `time` names, never by its text: times carry the offset of the zone they
    were taken in (daylight saving time changes it twice a year). Equal instants are ordered
    by snapshot id, so the order, and "latest", do not depend on the order in which the
    storage happens to list the objects (insertion order, directory order, key order)."""
    return (snapshot.time, snapshot.id or b"")

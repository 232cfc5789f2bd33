"""The snapshot ledger: this machine's memory of which snapshots a repository holds.

Someone who controls the storage but has no key cannot forge or alter an object (each
is authenticated, bound to its name and kind), but can still delete objects, or put
back old ones: delete the newest snapshots, re-upload a snapshot that prune forgot, or
roll the whole bucket back to last month. Nothing inside the repository can show that,
since an older state of the repository is a valid repository. So the machine keeps a
high-water mark outside it, in its state directory:

    state_dir/ledger/<repository id hex>.json
    {"version": 1,
     "snapshots":  {"<snapshot id hex>": "<snapshot time>"},  seen in the repository
     "forgetting": {"<snapshot id hex>": "<when prune chose to forget it>"},
     "forgotten":  {"<snapshot id hex>": "<when prune deleted it>"}}

Backups add the snapshot they save; every listing (check, prune) adopts snapshots it
has not seen (another machine's backups). Comparing the ledger with a listing finds:

- vanished: a snapshot the ledger holds, no longer in the repository, that no prune of
  this machine forgot: deleted outside backupctl, or the storage was rolled back;
- replayed: a snapshot this machine's prune deleted, present again: an old copy of the
  storage was put back.

`check` reports both as damage and `prune` refuses to run on them (a prune on a rolled
back repository would free data the newer snapshots need). Prune writes its intent
("forgetting") before deleting, so a prune killed half-way is not taken for an attack.
After a deliberate change made elsewhere (a prune run from another machine), `check
--accept-storage` makes the current listing the new reference.

The comparison is a pure function; the file is read and written under an flock so a
backup and a check finishing together both land their changes.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from dataclasses import dataclass, field
from typing import Iterator

from agent.errors import PermissionDenied, StateDirError
from agent.state.files import JsonDoc, load_json, save_json
from agent.state.layout import StateLayout

LEDGER_VERSION = 1


@dataclass(frozen=True)
class LedgerFindings:
    """What a listing contradicts in the ledger; times are the ledger's strings."""

    vanished: list[tuple[str, str]] = field(default_factory=list)  # (snapshot id hex, snapshot time)
    replayed: list[tuple[str, str]] = field(default_factory=list)  # (snapshot id hex, when deleted)

    @property
    def ok(self) -> bool:
        return not self.vanished and not self.replayed

    def problems(self) -> list[str]:
        """One line per finding, for check's errors and prune's refusal."""
        lines = [f"snapshot {sid[:8]} of {_day(when)} is gone from the repository, but no prune of this "
                 f"machine forgot it: deleted outside backupctl, or the storage was rolled back to an "
                 f"older state" for sid, when in self.vanished]
        lines += [f"snapshot {sid[:8]} was deleted by prune on {_day(when)} and is back: an old copy of "
                  f"the storage was put back" for sid, when in self.replayed]
        return lines


def compare(ledger: JsonDoc, stored: set[str]) -> LedgerFindings:
    """Pure: the ledger document against the snapshot ids (hex) the repository lists."""
    known = _section(ledger, "snapshots")
    forgetting = _section(ledger, "forgetting")
    forgotten = _section(ledger, "forgotten")
    vanished = sorted(((sid, when) for sid, when in known.items()
                       if sid not in stored and sid not in forgetting and sid not in forgotten),
                      key=lambda item: item[1])
    replayed = sorted(((sid, when) for sid, when in forgotten.items() if sid in stored),
                      key=lambda item: item[1])
    return LedgerFindings(vanished, replayed)


def adopt(ledger: JsonDoc, stored: dict[str, str]) -> JsonDoc:
    """Pure: the ledger with the listed snapshots it did not know added (id -> time).
    A replayed snapshot is not adopted: it stays a finding until accepted."""
    forgotten = _section(ledger, "forgotten")
    snapshots = dict(_section(ledger, "snapshots"))
    for sid, when in stored.items():
        if sid not in forgotten:
            snapshots.setdefault(sid, when)
    return {**ledger, "version": LEDGER_VERSION, "snapshots": snapshots}


def settle(ledger: JsonDoc, stored: set[str], now: str) -> JsonDoc:
    """Pure: finish what a killed prune left in "forgetting": a snapshot it deleted is
    forgotten, one still there is live again (the running prune decides anew)."""
    forgetting = _section(ledger, "forgetting")
    forgotten = dict(_section(ledger, "forgotten"))
    snapshots = dict(_section(ledger, "snapshots"))
    for sid in forgetting:
        if sid not in stored:
            forgotten[sid] = now
            snapshots.pop(sid, None)
    return {**ledger, "snapshots": snapshots, "forgetting": {}, "forgotten": forgotten}


def accept(stored: dict[str, str]) -> JsonDoc:
    """Pure: a fresh ledger holding exactly the listed snapshots."""
    return {"version": LEDGER_VERSION, "snapshots": dict(stored), "forgetting": {}, "forgotten": {}}


def _section(ledger: JsonDoc, name: str) -> dict[str, str]:
    value = ledger.get(name)
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def _day(when: str) -> str:
    return when[:10] if len(when) >= 10 else when or "?"


class Ledger:
    """The ledger file of one repository. A state directory of None keeps nothing
    (commands run without one, such as `recover` on a new machine)."""

    def __init__(self, state_dir: str | None, repository_id: bytes) -> None:
        self.path = (StateLayout(state_dir).ledger(repository_id)
                     if state_dir else None)
        self.write_problem: str | None = None

    def load(self) -> JsonDoc:
        return load_json(self.path) if self.path else {}

    @contextlib.contextmanager
    def _editing(self) -> Iterator[JsonDoc]:
        """Read-modify-write under an exclusive flock; the caller mutates the dict. A
        ledger that cannot be written is noted in `write_problem` (the command says so)
        and never fails the backup or check that tried: their own work is done."""
        if self.path is None:
            yield {}
            return
        try:
            os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
            handle = open(os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600), "rb+")
        except OSError as exc:
            self.write_problem = f"{self.path}.lock cannot be opened ({exc.strerror})"
            yield self.load()
            return
        with handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            doc = self.load()
            yield doc
            try:
                save_json(self.path, {**doc, "version": LEDGER_VERSION})
            except (StateDirError, PermissionDenied) as exc:
                self.write_problem = exc.one_line() if isinstance(exc, PermissionDenied) else str(exc)

    def verify(self, stored: dict[str, str]) -> LedgerFindings:
        """Compare with a listing (snapshot id hex -> time), then adopt what is new."""
        with self._editing() as doc:
            findings = compare(doc, set(stored))
            doc.update(adopt(doc, stored))
        return findings

    def settle(self, stored: set[str], now: str) -> None:
        """Run by prune under its exclusive lock, before it compares (see `settle`)."""
        with self._editing() as doc:
            doc.update(settle(doc, stored, now))

    def note_saved(self, snapshot_id: str, when: str) -> None:
        with self._editing() as doc:
            doc.setdefault("snapshots", {})[snapshot_id] = when

    def note_forgetting(self, snapshot_ids: list[str], when: str) -> None:
        """Before prune deletes: a prune killed now is not taken for an attack."""
        with self._editing() as doc:
            forgetting = doc.setdefault("forgetting", {})
            for sid in snapshot_ids:
                forgetting[sid] = when

    def note_forgotten(self, snapshot_ids: list[str], when: str) -> None:
        with self._editing() as doc:
            forgetting = doc.setdefault("forgetting", {})
            forgotten = doc.setdefault("forgotten", {})
            snapshots = doc.setdefault("snapshots", {})
            for sid in snapshot_ids:
                forgetting.pop(sid, None)
                snapshots.pop(sid, None)
                forgotten[sid] = when

    def accept(self, stored: dict[str, str]) -> LedgerFindings:
        """Make the listing the new reference; returns what was accepted."""
        with self._editing() as doc:
            findings = compare(doc, set(stored))
            doc.clear()
            doc.update(accept(stored))
        return findings

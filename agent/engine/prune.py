"""Prune: forget the snapshots the retention policy lets go, then free their data.

Order of work, chosen so that a crash at any point loses nothing still referenced
(docs/FORMAT.md "Write ordering"):

1. Take the exclusive lock (agent.repo.lock): no backup, check or restore runs meanwhile.
2. Refuse if `check` (structure) finds anything missing or unreadable: deleting on top
   of damage could remove the last good copy of something, and the practitioner must
   hear about the damage first.
3. Decide (agent.engine.retention) and delete the forgotten snapshot objects. Their data
   is now unreferenced, nothing more.
4. Walk the kept snapshots to find every tree and chunk still used, and the pack each
   resolves to. A pack with no used blob will be deleted; a pack whose unused share is
   at least REPACK_UNUSED_FRACTION is rewritten: its used blobs are stored again in new
   packs (written and indexed like a backup's) before anything is deleted.
5. Write a complete index of the packs that stay, in files of which the last one
   supersedes every earlier index file. Until that last file lands the old index files
   stay current, so every pack is always indexed.
6. Delete the superseded index files, then the packs no index lists any more (unused,
   rewritten, and those left unindexed by interrupted backups).

An object under S3 object lock cannot be deleted before its date: it is reported with
that date and stays unindexed, so the next prune after the date deletes it.

7. With object lock, extend the lock of every kept snapshot's objects to the date its
   tier needs (agent.engine.lock_dates).

While a ransomware alarm is open (agent.engine.alarm: a suspect snapshot nobody has
acknowledged), step 3 forgets nothing taken at or after the last good snapshot, and step 7
also locks the last good snapshot until `lock_days` from now: an attacker who holds the
server cannot get the clean copy pruned by flooding the repository with new snapshots.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from dataclasses import dataclass, field
from typing import Any

from agent import clock
from agent.engine.check import CheckEngine
from agent.state.ledger import Ledger
from agent.engine.alarm import OpenAlarm, open_alarm
from agent.engine.lock_dates import LockDateCache, LockReport, extend_locks, hold_last_good
from agent.engine.progress import Progress, SilentProgress
from agent.engine.retention import Decision, RetentionPolicy, apply_policy, hold_from
from agent.engine.walk import load_tree
from agent.errors import ClockSkewError, IntegrityError, ObjectLocked, ObjectNotFound
from agent.repo import layout
from agent.repo.layout import PackId, SnapshotId
from agent.repo.lock import remove_stale_locks, require_lock
from agent.clock_skew import CLOCK_SKEW_HINT, CLOCK_SKEW_LIMIT, describe_skew
from agent.repo.pack import PackEntry
from agent.repo.repository import Repository
from agent.repo.snapshot import Snapshot
from agent.repo.tree import DIR, FILE

# A pack is rewritten when at least this share of its bytes is no longer used. Lower
# frees more space but rewrites more (on S3, each rewrite is an upload and, under
# object lock, the old pack still occupies its space until its lock date).
REPACK_UNUSED_FRACTION = 0.25


@dataclass
class PruneReport:
    dry_run: bool
    decisions: list[Decision] = field(default_factory=list)
    snapshots_forgotten: int = 0
    packs_deleted: int = 0
    packs_rewritten: int = 0
    packs_kept: int = 0
    bytes_freed: int = 0
    bytes_rewritten: int = 0
    locked: list[tuple[str, str]] = field(default_factory=list)  # (object, why it stays)
    stale_locks_removed: int = 0
    object_locks: LockReport | None = None  # with S3 object lock: the dates set per tier
    alarm_hold: str | None = None  # one line while a ransomware alarm holds the snapshots

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "snapshots": [d.as_dict() for d in self.decisions],
            "snapshots_kept": sum(1 for d in self.decisions if d.keep),
            "snapshots_forgotten": self.snapshots_forgotten,
            "packs_deleted": self.packs_deleted,
            "packs_rewritten": self.packs_rewritten,
            "packs_kept": self.packs_kept,
            "bytes_freed": self.bytes_freed,
            "bytes_rewritten": self.bytes_rewritten,
            "locked_objects": [{"object": name, "reason": why} for name, why in self.locked],
            "stale_locks_removed": self.stale_locks_removed,
            "object_locks": self.object_locks.as_dict() if self.object_locks else None,
            "alarm_hold": self.alarm_hold,
        }


class PruneEngine:
    def __init__(self, repo: Repository, policy: RetentionPolicy, *, dry_run: bool = False,
                 progress: Progress | None = None, lock_cache: LockDateCache | None = None,
                 ledger: Ledger | None = None, acknowledged: set[str] | None = None,
                 alarm_lock_days: int = 90) -> None:
        self.repo = repo
        # Suspect snapshots a person acknowledged (agent.state.alarm_state); None: the alarm
        # is not looked at (a caller without state, e.g. a test of retention alone).
        self.acknowledged = acknowledged
        self.alarm_lock_days = alarm_lock_days
        self.alarm: OpenAlarm | None = None
        self.ledger = ledger or Ledger(None, repo.config.repository_id)
        self.lock_cache = lock_cache or LockDateCache(None)
        self.policy = policy
        self.dry_run = dry_run
        self.progress = progress or SilentProgress()
        self.report = PruneReport(dry_run=dry_run)
        self._used: set[bytes] = set()

    def run(self) -> PruneReport:
        # A dry run reads only: a shared lock (none when the storage cannot take one: it
        # works on a read-only repository); a prune deletes: an exclusive one.
        require_lock(self.repo, "prune", exclusive=not self.dry_run)
        if not self.dry_run:
            # Locks of dead processes were ignored when ours was taken; with the exclusive
            # lock held, nothing else can be writing one, so they can go.
            self.report.stale_locks_removed = len(remove_stale_locks(self.repo))
        self._prune()
        return self.report

    # ---- the steps ---------------------------------------------------------------------

    def _prune(self) -> None:
        self._refuse_on_clock_skew()
        if not self.dry_run:  # finish what a killed prune noted, before comparing
            self.ledger.settle({i.hex() for i in self.repo.list_snapshot_ids()}, clock.now().isoformat())
        self._refuse_on_damage()
        self.repo.load_index(reload=True)
        snapshots = self.repo.snapshots()
        self.report.decisions = apply_policy(snapshots, self.policy, now=clock.now())
        if self.acknowledged is not None:
            self._hold_for_alarm(snapshots)
        # Every snapshot read from the repository has its id (only one being written has none).
        forget = {SnapshotId(d.snapshot_id) for d in self.report.decisions
                  if not d.keep and d.snapshot_id is not None}
        still_there: set[bytes] = set()  # forgotten, but under object lock until a date
        if not self.dry_run:
            # Noted before deleting, so a prune killed in between is not taken for an attack.
            self.ledger.note_forgetting([i.hex() for i in forget], clock.now().isoformat())
            for snapshot_id in sorted(forget):
                name = layout.snapshot_name(snapshot_id)
                if not self._delete(name, partial(self.repo.delete_snapshot, snapshot_id)):
                    still_there.add(snapshot_id)
            self.ledger.note_forgotten([i.hex() for i in forget - still_there], clock.now().isoformat())
        # A snapshot that could not be deleted still references its data: keep that data.
        kept = [s for s in snapshots if s.id not in forget or s.id in still_there]
        self.report.snapshots_forgotten = len(forget) - len(still_there)

        self._used, used_bytes = self._used_blobs(kept)
        packs = self.repo.index.packs()
        stored = self.repo.list_pack_names()
        delete: set[PackId] = set()
        rewrite: set[PackId] = set()
        for pack_id, entries in packs.items():
            total = sum(e.length for e in entries)
            used = used_bytes.get(pack_id, 0)
            if used == 0:
                delete.add(pack_id)
                self.report.bytes_freed += stored.get(layout.pack_name(pack_id), total)
            elif total and (total - used) / total >= REPACK_UNUSED_FRACTION:
                rewrite.add(pack_id)
                self.report.bytes_freed += total - used
                self.report.bytes_rewritten += used
        indexed_names = {layout.pack_name(p) for p in packs}
        orphans = [name for name in stored if name not in indexed_names]
        self.report.bytes_freed += sum(stored[name] for name in orphans)
        self.report.packs_deleted = len(delete) + len(orphans)
        self.report.packs_rewritten = len(rewrite)
        self.report.packs_kept = len(packs) - len(delete) - len(rewrite)
        if self.dry_run:
            return

        index_before = self.repo.list_index_ids()
        for pack_id in sorted(rewrite):
            self._rewrite(pack_id)
        self.repo.flush()  # the new packs, then an index of them
        remaining: dict[PackId, Sequence[PackEntry]] = {
            p: e for p, e in self.repo.index.packs().items() if p not in delete and p not in rewrite}
        supersede = sorted(set(index_before) | set(self.repo.list_index_ids()))
        written = self.repo.write_index_files(remaining, supersede=supersede)
        for index_id in supersede:
            if index_id not in written:
                self._delete(layout.index_name(index_id), partial(self.repo.delete_index_file, index_id))
        for pack_id in sorted(delete | rewrite):
            self._delete(layout.pack_name(pack_id), partial(self.repo.delete_pack, pack_id))
        for name in orphans:
            orphan_id = layout.pack_id_from_name(name)
            if orphan_id is not None:
                self._delete(name, partial(self.repo.delete_pack, orphan_id))
        if self.repo.object_lock_enabled:
            # Last: the packs that stay are final now; read the new index so every blob
            # resolves to the pack that holds it after the rewrite.
            self.repo.load_index(reload=True)
            self.report.object_locks = extend_locks(self.repo, self.report.decisions, kept,
                                                    cache=self.lock_cache)
            good = next((s for s in kept if self.alarm is not None and s.id is not None
                         and s.id.hex() == self.alarm.last_good), None)
            if good is not None:
                held = hold_last_good(self.repo, good, clock.now() + _dt.timedelta(days=self.alarm_lock_days),
                                      cache=self.lock_cache)
                self.report.object_locks.locks_extended += held.locks_extended
                self.report.object_locks.objects_checked += held.objects_checked
                self.report.object_locks.latest.update(held.latest)

    def _hold_for_alarm(self, snapshots: list[Snapshot]) -> None:
        assert self.acknowledged is not None
        self.alarm = open_alarm(snapshots, self.acknowledged)
        if self.alarm is None:
            return
        good = next((s for s in snapshots if s.id is not None and s.id.hex() == self.alarm.last_good), None)
        reason = (f"ransomware alarm open (suspect {self.alarm.suspects[0][:8]}): kept until "
                  f"`backupctl acknowledge {self.alarm.suspects[0][:8]}`")
        before = sum(1 for d in self.report.decisions if d.keep)
        self.report.decisions = hold_from(self.report.decisions, good.time if good is not None else None, reason)
        held = sum(1 for d in self.report.decisions if d.keep) - before
        last_good = f"the last good snapshot {good.short_id}" if good is not None else "every snapshot"
        self.report.alarm_hold = (f"ransomware alarm open: nothing from {last_good} on is forgotten "
                                  f"({held} snapshot(s) held) until `backupctl acknowledge "
                                  f"{self.alarm.suspects[0][:8]}`")

    def _refuse_on_clock_skew(self) -> None:
        """Retention counts periods back from this computer's "now": on a clock that the
        storage server contradicts, a prune could forget a snapshot early."""
        skew = self.repo.clock_skew()
        if skew is not None and abs(skew) > CLOCK_SKEW_LIMIT:
            raise ClockSkewError(f"prune refused, nothing was forgotten: {describe_skew(skew)}",
                                 hint=CLOCK_SKEW_HINT)

    def _refuse_on_damage(self) -> None:
        check = CheckEngine(self.repo, ledger=self.ledger).run()  # under prune's lock
        if check.ledger_problems:
            raise IntegrityError(
                f"prune refused: {check.ledger_problems[0]}"
                f"{f' (and {len(check.errors) - 1} more problem(s))' if len(check.errors) > 1 else ''}",
                hint="a prune now could free data that newer snapshots need; see `backupctl "
                     "check`, and if the change was deliberate, `backupctl check --accept-storage`")
        if not check.ok:
            raise IntegrityError(
                f"prune refused: the repository has damage or missing data ({check.errors[0]}"
                f"{f'; and {len(check.errors) - 1} more problem(s)' if len(check.errors) > 1 else ''})",
                hint="run `backupctl check` to see what is affected; the next backup stores missing "
                     "data again, then prune can run")

    def _used_blobs(self, kept: Iterable[Snapshot]) -> tuple[set[bytes], dict[PackId, int]]:
        """Every tree and chunk the kept snapshots use, and the bytes still used in each
        pack (each blob counted once, in the pack its index entry resolves to)."""
        used: dict[PackId, int] = {}
        seen: set[bytes] = set()

        def use(chunk_id: bytes) -> None:
            if chunk_id in seen:
                return
            seen.add(chunk_id)
            location = self.repo.locate(chunk_id)
            if location is None:  # check passed, so this cannot happen; never guess
                raise IntegrityError(f"chunk {chunk_id.hex()[:16]} of a kept snapshot is not indexed")
            used[location.pack_id] = used.get(location.pack_id, 0) + location.length

        for snapshot in kept:
            # An explicit stack, not recursion: a tree deeper than Python's recursion
            # limit (~1000 folders, real or forged) must not end prune in a traceback.
            stack = [snapshot.tree]
            while stack:
                tree_id = stack.pop()
                if tree_id in seen:
                    continue
                use(tree_id)
                for node in load_tree(self.repo, tree_id):
                    if node.type == DIR and node.subtree is not None:
                        stack.append(node.subtree)
                    elif node.type == FILE:
                        for chunk_id in node.chunks:
                            use(chunk_id)
        return seen, used

    def _rewrite(self, pack_id: PackId) -> None:
        data, entries = self.repo.read_pack(pack_id)  # SHA-256 of the pack checked
        name = layout.pack_name(pack_id)
        for entry in entries:
            location = self.repo.locate(entry.chunk_id)
            if entry.chunk_id not in self._used or location is None or location.pack_id != pack_id:
                continue
            envelope = data[entry.offset : entry.offset + entry.length]
            # Decrypted and its id recomputed: a damaged blob stops the prune before
            # anything is deleted, instead of being copied on.
            plain = self.repo.decode_blob(entry.chunk_id, entry.kind, envelope, entry.raw_length, pack_name=name)
            self.repo.store_blob_again(entry.kind, entry.chunk_id, plain)

    def _delete(self, name: str, action: Callable[[], None]) -> bool:
        """Delete one object; False when an object lock keeps it (reported)."""
        try:
            action()
        except ObjectNotFound:
            pass  # already gone (an earlier interrupted prune)
        except ObjectLocked as exc:
            self.report.locked.append((name, str(exc)))
            return False
        return True

"""Repair: rebuild the index from the packs themselves and take damaged packs out of it.

`check --read-data` names damage; it changes nothing. A backup after it stores again
only the data whose pack is *missing*: a chunk in a pack with a flipped byte or a cut
end is still indexed, so the backup would reuse it and new snapshots would point at
the same damage. Repair is the step between (after restic's `repair index` and
`repair packs`), under the exclusive lock:

1. Read every pack in the storage in full: its SHA-256 against its name, its header,
   every blob decrypted and its keyed id recomputed.
2. A damaged pack: each blob that still decrypts and matches its id is salvaged, stored
   again in a new pack (written and indexed as a backup does); the others are lost.
3. Write a complete index of the intact packs (taken from their own headers, so packs
   an index no longer lists, such as after a deleted index file, are indexed again) and
   the new packs; its last file supersedes every earlier index file, so a crash before
   that leaves the old index current and loses nothing.
4. Delete the superseded index files, then the damaged packs. One under object lock
   stays until its date, unindexed: check ignores it, prune deletes it later.

Lost chunks are then absent from the index, so the next backup stores again every one
whose file is still on the computer; `check` names the files no backup can bring back.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.engine.progress import Progress, SilentProgress
from agent.errors import ForeignObject, IntegrityError, ObjectLocked, ObjectNotFound, StorageError
from agent.repo import layout
from agent.repo.layout import PackId
from agent.repo.lock import require_lock
from agent.repo.pack import PackEntry
from agent.repo.repository import MAX_PACK_SIZE, Repository


@dataclass
class RepairReport:
    dry_run: bool
    packs_read: int = 0
    packs_reindexed: int = 0  # intact packs no current index listed
    damaged_packs: dict[str, str] = field(default_factory=dict)  # name -> why
    missing_packs: list[str] = field(default_factory=list)  # indexed, absent from the storage
    blobs_salvaged: int = 0
    blobs_lost: int = 0
    index_files_replaced: int = 0
    locked: list[tuple[str, str]] = field(default_factory=list)  # damaged packs an object lock keeps

    @property
    def changed(self) -> bool:
        return bool(self.packs_reindexed or self.damaged_packs or self.missing_packs or self.index_files_replaced)

    def as_dict(self) -> dict[str, Any]:  # a JSON document (--json), read back by the commands
        return {
            "dry_run": self.dry_run,
            "packs_read": self.packs_read,
            "packs_reindexed": self.packs_reindexed,
            "damaged_packs": self.damaged_packs,
            "missing_packs": self.missing_packs,
            "blobs_salvaged": self.blobs_salvaged,
            "blobs_lost": self.blobs_lost,
            "index_files_replaced": self.index_files_replaced,
            "locked_objects": [{"object": name, "reason": why} for name, why in self.locked],
        }


class RepairEngine:
    def __init__(self, repo: Repository, *, dry_run: bool = False, progress: Progress | None = None) -> None:
        self.repo = repo
        self.dry_run = dry_run
        self.progress = progress or SilentProgress()
        self.report = RepairReport(dry_run=dry_run)

    def run(self) -> RepairReport:
        require_lock(self.repo, "repair", exclusive=True)
        self._repair()
        return self.report

    def _repair(self) -> None:
        repo = self.repo
        repo.load_index(keep_missing_packs=True, reload=True)
        indexed = repo.index.packs()
        unreadable_indexes = len(repo.index_problems)
        stored = repo.list_pack_names()
        intact: dict[PackId, Sequence[PackEntry]] = {}
        damaged: dict[PackId, Sequence[PackEntry]] = {}  # pack -> the blobs it should hold
        self.progress.start("repair: reading every pack", sum(stored.values()))
        for name in sorted(stored):
            pack_id = layout.pack_id_from_name(name)
            if pack_id is None:
                continue
            self.report.packs_read += 1
            entries, problem = self._read(pack_id, indexed.get(pack_id, []))
            self.progress.advance(bytes_done=stored[name])
            if problem is None:
                intact[pack_id] = entries
                if pack_id not in indexed:
                    self.report.packs_reindexed += 1
            else:
                self.report.damaged_packs[name] = problem
                damaged[pack_id] = entries
        self.progress.finish()
        self.report.missing_packs = sorted(layout.pack_name(p) for p in indexed
                                           if layout.pack_name(p) not in stored)
        good_ids = {e.chunk_id for entries in intact.values() for e in entries}
        # Every chunk some index promised: what is neither intact nor salvaged is lost.
        promised = {e.chunk_id for entries in indexed.values() for e in entries}
        promised.update(e.chunk_id for entries in damaged.values() for e in entries)
        if not (damaged or self.report.missing_packs or self.report.packs_reindexed or unreadable_indexes
                or promised - good_ids):
            return  # nothing to repair: the index already matches the packs
        for pack_id, entries in damaged.items():
            name = layout.pack_name(pack_id)
            data = self._bytes_or_empty(name)  # read again: damaged packs are few
            for entry in entries:
                if entry.chunk_id in good_ids:
                    continue  # an intact pack holds it too, or salvaged from another
                plain = self._decode(entry, data, name)
                if plain is None:
                    continue
                good_ids.add(entry.chunk_id)
                self.report.blobs_salvaged += 1
                if not self.dry_run:
                    repo.store_blob_again(entry.kind, entry.chunk_id, plain)
        self.report.blobs_lost = len(promised - good_ids)
        if self.dry_run:
            return

        index_before = repo.list_index_ids()
        repo.flush()  # the salvaged blobs, in new packs, and an index of them
        new_packs = {p: e for p, e in repo.index.packs().items() if p not in indexed and p not in intact}
        supersede = sorted(set(index_before) | set(repo.list_index_ids()))
        written = repo.write_index_files({**intact, **new_packs}, supersede=supersede)
        for index_id in supersede:
            if index_id not in written:
                self._delete(layout.index_name(index_id), functools.partial(repo.delete_index_file, index_id))
        self.report.index_files_replaced = len([i for i in supersede if i not in written])
        for pack_id in sorted(damaged):
            self._delete(layout.pack_name(pack_id), functools.partial(repo.delete_pack, pack_id))
        repo.load_index(reload=True)

    def _read(self, pack_id: PackId,
              indexed_entries: Sequence[PackEntry]) -> tuple[Sequence[PackEntry], str | None]:
        """(blobs, problem or None) of one pack; every blob is verified. A pack whose
        index entries disagree with its own header is intact: the header is the truth."""
        name = layout.pack_name(pack_id)
        entries: Sequence[PackEntry]
        try:
            data, entries = self.repo.read_pack(pack_id)
        except (IntegrityError, StorageError) as exc:
            data = self._bytes_or_empty(name)
            try:  # the name does not match, but the header may still say where the blobs are
                entries = self.repo.pack_header_entries(data, name)
            except IntegrityError:
                entries = indexed_entries
            return entries, str(exc).removeprefix(f"pack {name}: ")
        for entry in entries:
            if self._decode(entry, data, name) is None:
                return entries, f"blob {entry.chunk_id.hex()[:16]} fails authentication"
        return entries, None

    def _bytes_or_empty(self, name: str) -> bytes:
        try:
            return self.repo.storage.read(name, max_size=MAX_PACK_SIZE)
        except (StorageError, ForeignObject):  # a FIFO or an oversize object salvages nothing
            return b""

    def _decode(self, entry: PackEntry, data: bytes, name: str) -> bytes | None:
        envelope = data[entry.offset : entry.offset + entry.length]
        if len(envelope) != entry.length:
            return None  # cut off
        try:
            return self.repo.decode_blob(entry.chunk_id, entry.kind, envelope, entry.raw_length, pack_name=name)
        except IntegrityError:
            return None

    def _delete(self, name: str, action: Callable[[], None]) -> None:
        try:
            action()
        except ObjectNotFound:
            pass
        except ObjectLocked as exc:
            self.report.locked.append((name, str(exc)))

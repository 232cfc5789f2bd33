"""Check: prove the repository is intact, or name exactly what is damaged.

Structure (always): every index file decrypts, every indexed pack exists, every
snapshot decrypts, and every tree and chunk a snapshot references is indexed in a
pack that exists.

Data (`--read-data`): every pack is downloaded, its SHA-256 compared with its name,
its header decrypted, and every blob decrypted and its keyed BLAKE3 id recomputed.
`read_data_subset=(k, n)` reads only the k-th of n slices of the packs (by pack id), so
a daemon reading one slice a week re-reads every pack within n weeks.

On damage the report names the pack, then every snapshot and file that needs it, so
the practitioner knows what is lost and what still restores.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from agent import timefmt
from agent.engine.expansion import FREE_ENTRIES, past_limit
from agent.state.ledger import Ledger
from agent.engine.progress import Progress, SilentProgress
from agent.engine.walk import load_tree
from agent.errors import IntegrityError, StorageError
from agent.repo import layout, rescue_kit
from agent.repo.lock import require_lock
from agent.repo.index import PackEntries
from agent.repo.layout import PackId
from agent.repo.repository import Repository
from agent.repo.snapshot import Snapshot
from agent.repo.pack import BLOB_TREE, PackEntry
from agent.repo.tree import DIR, FILE, Node, decode_tree

# Files named per snapshot in the report; the count is always exact.
MAX_FILES_LISTED = 50
# Packs being downloaded while one is verified (check --read-data): each holds a pack of
# up to 16 MiB in memory; two keep a 50 ms, 1 Gbit/s link busy (bench/run.py --wan).
READ_AHEAD = 2
# Folder listings that check --read-data keeps, once decrypted, for its tree walk (beyond
# this they are read again): about 100 bytes per entry, so a million files' worth.
MAX_LISTINGS_KEPT = 128 * 2**20


MISSING_PACK = "pack is missing from the storage"  # a new backup stores its data again; damage it does not


@dataclass
class CheckReport:
    read_data: bool = False
    read_data_subset: tuple[int, int] | None = None
    snapshots: int = 0
    packs: int = 0
    blobs_verified: int = 0
    bytes_read: int = 0
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    damaged_packs: dict[str, str] = field(default_factory=dict)
    affected: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    unindexed_packs: int = 0  # packs no index lists: left by an interrupted backup, or a lost index file
    ledger_problems: list[str] = field(default_factory=list)  # snapshots gone or back (agent.state.ledger)
    rescue_kit_problems: list[str] = field(default_factory=list)  # kits that differ from their sealed record

    @property
    def ok(self) -> bool:
        return not self.errors

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "read_data": self.read_data,
            "read_data_subset": f"{self.read_data_subset[0]}/{self.read_data_subset[1]}"
                                if self.read_data_subset else None,
            "snapshots": self.snapshots,
            "packs": self.packs,
            "blobs_verified": self.blobs_verified,
            "bytes_read": self.bytes_read,
            "errors": self.errors,
            "warnings": self.warnings,
            "damaged_packs": self.damaged_packs,
            "affected_files": {k: v for k, v in self.affected.items()},
            "ledger_problems": self.ledger_problems,
            "rescue_kit_problems": self.rescue_kit_problems,
            "unindexed_packs": self.unindexed_packs,
        }


@dataclass
class _TreeSummary:
    """One folder listing and everything below it, as check found it."""

    problems: int = 0  # files or folders below that cannot be restored (exact, however large)
    samples: list[tuple[bytes, str]] = field(default_factory=list)  # the first MAX_FILES_LISTED: (path below, why)
    entries: int = 0  # entries below once expanded (a DAG: may be far more than stored)
    listed: int = 0  # entries of this listing itself
    subtrees: set[bytes] = field(default_factory=set)

    @classmethod
    def broken(cls, why: str) -> _TreeSummary:
        return cls(problems=1, samples=[(b"", why)])

    def add(self, name: bytes, problems: int, samples: list[tuple[bytes, str]]) -> None:
        self.problems += problems
        for path, why in samples[:MAX_FILES_LISTED - len(self.samples)]:
            self.samples.append((name + b"/" + path if path else name, why))


class CheckEngine:
    def __init__(self, repo: Repository, *, read_data: bool = False, progress: Progress | None = None,
                 read_data_subset: tuple[int, int] | None = None,
                 ledger: Ledger | None = None, zone: _dt.tzinfo | None = None) -> None:
        if read_data_subset is not None:
            k, n = read_data_subset
            if not 1 <= k <= n:
                raise ValueError(f"read_data_subset {k}/{n}: expected 1 <= k <= n")
            read_data = True
        self.read_data_subset = read_data_subset
        self.repo = repo
        self.ledger = ledger  # this machine's memory of the snapshots (None: not compared)
        self.zone = zone  # of the times in messages ([retention] timezone; None: each time's own)
        self.read_data = read_data
        self.progress = progress or SilentProgress()
        self.report = CheckReport(read_data=read_data, read_data_subset=read_data_subset)
        self._bad_chunks: dict[bytes, str] = {}  # chunk id -> why it cannot be read
        self._trees: dict[bytes, _TreeSummary] = {}  # shared by snapshots: each tree checked once
        self._listings: dict[bytes, bytes] = {}  # folder listings verified by --read-data, by id
        self._listings_size = 0

    def run(self) -> CheckReport:
        # No prune meanwhile: `check` holds a shared lock, a prune checks under its exclusive one.
        require_lock(self.repo, "check")
        self._load_indexes()
        stored = self.repo.list_pack_names()
        self.report.packs = len(stored)
        indexed = {layout.pack_name(p): p for p in self.repo.index.pack_ids()}
        packs = self.repo.index.packs()
        for name, pack_id in indexed.items():
            if name not in stored:
                lost = [e for e in packs[pack_id] if self._only_copy_in(e.chunk_id, name)]
                if lost:
                    self._damage(name, MISSING_PACK, lost)
                else:
                    self.report.warnings.append(f"pack {name} is missing, but a later backup stored all of "
                                                f"its data again (its stale index entry is harmless)")
        unindexed = [name for name in stored if name not in indexed]
        self.report.unindexed_packs = len(unindexed)
        if self.read_data:
            self._read_all(stored)
        self._check_snapshots()
        self._check_rescue_kits()
        self._note_unindexed(unindexed)
        return self.report

    def _note_unindexed(self, unindexed: list[str]) -> None:
        """Packs no index lists. With nothing missing, they are what an interrupted backup
        left: the next backup indexes them (agent/engine/backup.py) or prune deletes them,
        so one line says so and asks nothing. With data missing they may hold it: each is
        named, and the advice is repair, which indexes every pack from its own header."""
        if not unindexed:
            return
        if self.report.ok:
            self.report.warnings.append(
                f"{len(unindexed)} pack(s) in no index, left by an interrupted backup: the next backup indexes "
                f"them and reuses their data, or prune deletes them; nothing to do")
            return
        for name in unindexed:
            self.report.warnings.append(f"pack {name} is not in any index (left by an interrupted backup, "
                                        f"or its index file was lost: `backupctl repair` indexes it again)")

    def _check_rescue_kits(self) -> None:
        """rescue/ is in clear by design (docs/FORMAT.md section 12.5): not foreign, not
        damage of the backups; a kit that differs from its sealed record is an error."""
        kits = rescue_kit.check_kits(self.repo)
        self.report.rescue_kit_problems.extend(kits.errors)
        self.report.errors.extend(kits.errors)
        self.report.warnings.extend(kits.warnings)

    def _only_copy_in(self, chunk_id: bytes, pack_name: str) -> bool:
        location = self.repo.locate(chunk_id)
        return location is None or layout.pack_name(location.pack_id) == pack_name

    def _damage(self, pack_name: str, why: str, entries: Iterable[PackEntry]) -> None:
        self.report.damaged_packs[pack_name] = why
        self.report.errors.append(f"pack {pack_name}: {why}")
        for entry in entries:
            if not self._only_copy_in(entry.chunk_id, pack_name):
                continue  # another pack holds a good copy
            self._bad_chunks.setdefault(entry.chunk_id, f"{why} ({pack_name})")

    def _load_indexes(self) -> None:
        self.repo.load_index(keep_missing_packs=True, reload=True)
        self.report.errors.extend(f"index file unreadable: {problem}" for problem in self.repo.index_problems)

    def _read_all(self, stored: dict[str, int]) -> None:
        packs = self.repo.index.packs()
        if self.read_data_subset is not None:
            stored = {name: size for name, size in stored.items() if in_subset(name, *self.read_data_subset)}
        self.progress.start("check --read-data", sum(stored.values()))
        names = sorted(stored)
        with ThreadPoolExecutor(READ_AHEAD, thread_name_prefix="read-data") as pool:
            # The next packs download while this one is verified: over a WAN link a pack
            # read after the previous one leaves the link idle a round trip each time,
            # and one connection's window cannot fill a long fat link.
            reads: dict[str, Future[tuple[bytes, list[PackEntry]]]] = {}
            for number, name in enumerate(names):
                for ahead in names[number:number + READ_AHEAD]:
                    ahead_id = layout.pack_id_from_name(ahead)
                    if ahead not in reads and ahead_id is not None:
                        reads[ahead] = pool.submit(self.repo.read_pack, ahead_id)
                self._read_one(name, packs, reads.pop(name, None))
        self.progress.finish()

    def _read_one(self, name: str, packs: dict[PackId, PackEntries],
                  read: Future[tuple[bytes, list[PackEntry]]] | None) -> None:
        """Verify one pack whose read `read` was started ahead (None: not a pack name)."""
        pack_id = layout.pack_id_from_name(name)
        if pack_id is None or read is None:  # no read is started for a name that is not a pack's
            self.report.errors.append(f"object {name} in data/ is not a valid pack name")
            return
        expected: Sequence[PackEntry] = packs.get(pack_id, [])
        try:
            data, header_entries = read.result()
        except (IntegrityError, StorageError) as exc:
            if pack_id not in packs:  # nothing refers to it: harmless
                self.report.warnings.append(f"pack {name} is damaged but no index lists it (nothing uses "
                                            f"it; prune deletes it): {exc}")
                return
            self._damage(name, str(exc).removeprefix(f"pack {name}: "), expected)
            self._narrow_damage(name, expected)
            return
        self.report.bytes_read += len(data)
        self.progress.advance(bytes_done=len(data))
        header_ids = {e.chunk_id for e in header_entries}
        for entry in expected:
            if entry.chunk_id not in header_ids:
                self._damage(name, "index lists a blob the pack header does not have", [entry])
                continue
            self._verify_blob(name, entry, data[entry.offset : entry.offset + entry.length])

    def _narrow_damage(self, name: str, entries: Iterable[PackEntry]) -> None:
        """A pack failed as a whole: find which of its blobs still decrypt, to spare their files."""
        for entry in entries:
            try:
                envelope = self.repo.storage.read_range(name, entry.offset, entry.length)
                self.repo.decode_blob(entry.chunk_id, entry.kind, envelope, entry.raw_length, pack_name=name)
            except (IntegrityError, StorageError):
                continue
            self._bad_chunks.pop(entry.chunk_id, None)

    def _verify_blob(self, name: str, entry: PackEntry, envelope: bytes) -> None:
        try:
            plain = self.repo.decode_blob(entry.chunk_id, entry.kind, envelope, entry.raw_length, pack_name=name)
            self.report.blobs_verified += 1
            if entry.kind == BLOB_TREE and self._listings_size + len(plain) <= MAX_LISTINGS_KEPT:
                # Kept for the tree walk that follows: over a WAN link, reading each listing
                # again cost one round trip per folder (190 requests, 12 s at 50 ms).
                self._listings[entry.chunk_id] = plain
                self._listings_size += len(plain)
        except IntegrityError as exc:
            if name not in self.report.damaged_packs:
                self.report.damaged_packs[name] = "one or more blobs fail authentication"
                self.report.errors.append(f"pack {name}: {exc}")
            self._bad_chunks[entry.chunk_id] = f"blob fails authentication ({name})"

    def _check_snapshots(self) -> None:
        snapshot_ids = self.repo.list_snapshot_ids()
        readable: dict[str, str] = {}
        for snapshot_id in snapshot_ids:
            try:
                snapshot = self.repo.load_snapshot(snapshot_id)
            except (IntegrityError, StorageError) as exc:
                self.report.errors.append(f"snapshot {snapshot_id.hex()}: {exc}")
                continue
            self.report.snapshots += 1
            readable[snapshot_id.hex()] = snapshot.time.isoformat()
            self._check_tree_of(snapshot)
        if self.ledger is not None:
            problems = self.ledger.verify(readable).problems()
            self.report.ledger_problems = problems
            self.report.errors.extend(problems)

    def _check_tree_of(self, snapshot: Snapshot) -> None:
        label = f"{snapshot.short_id} ({timefmt.shown(snapshot.time, self.zone)})"
        summary = self._summarize(snapshot.tree)
        if summary.problems:
            listed = self.report.affected[label]
            listed.extend(f"/{os.fsdecode(path)}: {why}" for path, why in summary.samples)
            if summary.problems > MAX_FILES_LISTED:
                listed.append(f"... and {summary.problems - MAX_FILES_LISTED} more")
            self.report.errors.append(f"snapshot {label}: {summary.problems} file(s) or folder(s) cannot be restored")
        if summary.entries > FREE_ENTRIES:  # only then is counting what is stored worth it
            stored = self._stored_entries(snapshot.tree)
            if past_limit(summary.entries, stored):  # the rule restore applies
                self.report.errors.append(
                    f"snapshot {label}: its tree would expand to {summary.entries} entries from {stored} stored "
                    f"(one folder listing named over and over): restore refuses it as crafted or damaged")

    def _summarize(self, root: bytes) -> _TreeSummary:
        """What is damaged in a tree, each distinct listing read and summed once.

        Trees are content-addressed, so a snapshot's tree is a DAG: a crafted one naming
        one subtree twice at each of 30 levels has 2**30 paths from 61 listings. Walking
        paths (as this did for unclean trees) is then exponential; here each listing is
        summarized once, bottom-up, from its subtrees' summaries (exact counts, the first
        MAX_FILES_LISTED paths), with an explicit stack: no recursion limit on depth."""
        summaries = self._trees
        pending: dict[bytes, list[Node]] = {}  # listings whose subtrees are being summarized
        stack: list[tuple[bytes, bool]] = [(root, False)]
        while stack:
            tree_id, entered = stack.pop()
            if not entered:
                if tree_id in summaries or tree_id in pending:  # done, or a cycle (summarized below)
                    continue
                if self.repo.locate(tree_id) is None:
                    summaries[tree_id] = _TreeSummary.broken(
                        "directory listing is missing, everything below it is affected")
                    continue
                try:
                    kept = self._listings.pop(tree_id, None)
                    nodes = decode_tree(kept) if kept is not None else load_tree(self.repo, tree_id)
                except (IntegrityError, StorageError) as exc:
                    summaries[tree_id] = _TreeSummary.broken(
                        f"directory listing unreadable, everything below it is affected ({exc})")
                    continue
                pending[tree_id] = nodes
                stack.append((tree_id, True))
                stack.extend((node.subtree, False) for node in nodes
                             if node.type == DIR and node.subtree is not None and node.subtree not in summaries)
                continue
            nodes = pending.pop(tree_id)
            summary = _TreeSummary(entries=len(nodes), listed=len(nodes))
            for node in nodes:
                if node.type == DIR and node.subtree is not None:
                    below = summaries.get(node.subtree)
                    if below is None:  # only a listing that names one of its parents (impossible unless forged)
                        summary.add(node.name, 1, [(b"", "folder listing names one of its own parents")])
                        continue
                    summary.entries += below.entries
                    summary.subtrees.add(node.subtree)
                    summary.add(node.name, below.problems, below.samples)
                elif node.type == FILE:
                    problems = [p for p in map(self._chunk_problem, node.chunks) if p]
                    if problems:
                        summary.add(node.name, 1, [(b"", problems[0])])
            summaries[tree_id] = summary
        return summaries[root]

    def _stored_entries(self, root: bytes) -> int:
        """Entries of the distinct listings a snapshot reaches (what restore compares with)."""
        seen = {root}
        stack = [root]
        total = 0
        while stack:
            summary = self._trees[stack.pop()]
            total += summary.listed
            for subtree in summary.subtrees - seen:
                seen.add(subtree)
                stack.append(subtree)
        return total

    def _chunk_problem(self, chunk_id: bytes) -> str | None:
        if chunk_id in self._bad_chunks:
            return self._bad_chunks[chunk_id]
        if self.repo.locate(chunk_id) is None:
            return "data chunk is missing from the index"
        return None


def in_subset(pack_name: str, k: int, n: int) -> bool:
    """Whether a pack belongs to the k-th of n slices (by the first 4 bytes of its id)."""
    tail = pack_name.rsplit("/", 1)[-1]
    try:
        return int(tail[:8], 16) % n == k - 1
    except ValueError:
        return k == 1  # a stray name is read with the first slice, where it is reported

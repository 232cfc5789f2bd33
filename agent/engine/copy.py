"""Copy a snapshot into another repository (a second safe place, rule S6).

The destination may have another master key (the S3 repository and a disk set): chunk
ids are keyed, so every blob is decrypted from the source (its AEAD tag and keyed id
checked), given its id under the destination's key, and stored there unless the
destination already has it; trees are rewritten bottom-up with the new ids. Between two
disks of one set the ids are the same and only missing blobs travel.

The copy is a snapshot of its own in the destination, with the same time, host, paths
and tags, and `summary.copied_from` naming the original repository and snapshot (the
source's own `copied_from` when the source is itself a copy), so copying twice, or back
to where a snapshot came from, is a no-op. Write order is a backup's: packs, index, then the snapshot.

Chunks are copied as the source cut them, not cut again: between repositories with
different keys, the copy does not deduplicate against what the destination's own backups
stored (its chunk boundaries come from its own secret seed), and the command says how much
was stored anew and why. Re-cutting would mean reassembling every file from its chunks and
running the destination's chunker over it: the copy would become a second backup, and
whole-file reassembly of large files (disk images, dumps) in memory or on disk; not done.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from agent.engine.walk import load_tree
from agent.errors import IntegrityError
from agent.repo.layout import SnapshotId
from agent.repo.lock import RepositoryLock, shared_lock_for_reading
from agent.repo.pack import BLOB_DATA, BLOB_TREE
from agent.repo.repository import Repository
from agent.repo.snapshot import Snapshot
from agent.repo.tree import DIR, FILE, Node, encode_tree


@dataclass
class CopyReport:
    source_snapshot: str
    snapshot_id: str | None = None
    already_there: bool = False
    blobs_copied: int = 0
    bytes_added: int = 0
    # Same master key and chunker parameters (two disks of one set): the copied chunks are the
    # ones the destination's own backups would cut, and deduplicate with them. Otherwise
    # (S3 and a disk set, each with its own key) the chunk boundaries come from another
    # secret seed: files the destination already holds from its own backups are stored again.
    same_chunking: bool = True

    def as_dict(self) -> dict[str, Any]:  # a JSON document (--json), read back by the commands
        return {"source_snapshot": self.source_snapshot, "snapshot_id": self.snapshot_id,
                "already_there": self.already_there, "blobs_copied": self.blobs_copied,
                "bytes_added": self.bytes_added, "same_chunking": self.same_chunking}


class CopyEngine:
    def __init__(self, source: Repository, destination: Repository, snapshot: Snapshot) -> None:
        self.source = source
        self.destination = destination
        self.snapshot = snapshot
        # A snapshot read from the source repository: only one being built has no id yet.
        assert snapshot.id is not None, "copy takes a snapshot read from its repository"
        self.snapshot_id: SnapshotId = snapshot.id
        self.report = CopyReport(source_snapshot=snapshot.id.hex(), same_chunking=(
            source.master.secret == destination.master.secret and source.config.chunker == destination.config.chunker
            and source.padded == destination.padded))
        self._ids: dict[bytes, bytes] = {}  # source id -> destination id, trees and chunks

    def run(self) -> CopyReport:
        with shared_lock_for_reading(self.source, "copy"), RepositoryLock(self.destination, "copy"):
            origin = self.snapshot.summary.get("copied_from") or {
                "repository_id": self.source.config.repository_id.hex(), "snapshot_id": self.snapshot_id.hex()}
            here = self.destination.config.repository_id.hex()
            for existing in self.destination.snapshots():
                assert existing.id is not None  # listed, so stored under its id
                itself = {"repository_id": here, "snapshot_id": existing.id.hex()}
                if origin in (existing.summary.get("copied_from"), itself):
                    self.report.already_there = True
                    self.report.snapshot_id = existing.id.hex()
                    return self.report
            self.source.load_index()
            self.destination.load_index(reload=True)
            tree = self._copy_tree(self.snapshot.tree)
            self.destination.flush()  # packs, then index: only now may the snapshot refer to them
            copy = replace(self.snapshot, tree=tree, id=None,
                           summary={**self.snapshot.summary, "copied_from": origin})
            self.report.snapshot_id = self.destination.save_snapshot(copy).hex()
            self.report.bytes_added = self.destination.bytes_added
        return self.report

    def _copy_tree(self, root: bytes) -> bytes:
        """The tree rewritten bottom-up under the destination's ids, each distinct listing
        once. An explicit stack, not recursion: a tree deeper than Python's recursion limit
        (~1000 folders) must not end the copy in a traceback."""
        if root in self._ids:
            return self._ids[root]
        # [source tree id, its listing, index of the next entry to rewrite]
        stack: list[tuple[bytes, list[Node], list[int]]] = [(root, load_tree(self.source, root), [0])]
        open_ = {root}
        while stack:
            tree_id, nodes, position = stack[-1]
            if position[0] < len(nodes):
                node = nodes[position[0]]
                if node.type == DIR and node.subtree is not None:
                    if node.subtree not in self._ids:  # copy that folder first, then come back to this entry
                        if node.subtree in open_:
                            raise IntegrityError(f"tree {tree_id.hex()[:16]} names one of its own parents: "
                                                 f"refused as crafted or damaged")
                        open_.add(node.subtree)
                        stack.append((node.subtree, load_tree(self.source, node.subtree), [0]))
                        continue
                    node.subtree = self._ids[node.subtree]
                elif node.type == FILE:
                    node.chunks = [self._copy_chunk(chunk_id) for chunk_id in node.chunks]
                position[0] += 1
                continue
            stack.pop()
            open_.discard(tree_id)
            new_id, added = self.destination.store_blob(BLOB_TREE, encode_tree(nodes))
            self.report.blobs_copied += bool(added)
            self._ids[tree_id] = new_id
        return self._ids[root]

    def _copy_chunk(self, chunk_id: bytes) -> bytes:
        if chunk_id in self._ids:
            return self._ids[chunk_id]
        plain = self.source.load_blob(chunk_id)  # tag and keyed id checked
        new_id = self.destination.chunk_id(plain)
        if not self.destination.has_blob(new_id):
            self.destination.store_blob(BLOB_DATA, plain, new_id)
            self.report.blobs_copied += 1
        self._ids[chunk_id] = new_id
        return new_id

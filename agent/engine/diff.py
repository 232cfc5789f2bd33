"""What changed between two snapshots: files added, removed, changed, or changed in metadata only.

Trees are content-addressed (agent/repo/tree.py): two folders with the same listing id
hold exactly the same entries, down to the last byte of every file below them. The walk
goes through both trees together, listing by listing, and never loads a folder whose
listing id is the same on both sides: a diff costs what changed, not what is stored.

A file is "changed" when its SHA-256 differs (a symbolic link: its target), or when the
entry changed type (a file that became a folder); "metadata" when only its mode, owner
(uid, gid) or modification time did. A folder whose entries changed is not listed for
its new modification time, which those changes gave it (its mode or owner still are).
A folder that appears or disappears is listed with everything below it (a person asks
"which files appeared?"), streamed: what is held at any moment is one pair of listings
per level of the path being walked.

The walk has no recursion (no depth limit) and stays linear in what is stored: a crafted
snapshot naming one listing twice at each of 30 levels is refused as restore refuses it
(agent/engine/expansion.past_limit, the rule of every walk), once its expansion exceeds what is stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

from agent.engine.expansion import past_limit
from agent.errors import IntegrityError
from agent.repo.lock import require_lock
from agent.repo.repository import Repository
from agent.repo.snapshot import Snapshot
from agent.repo.tree import DIR, FILE, SYMLINK, Node, decode_tree

ADDED = "added"
REMOVED = "removed"
CHANGED = "changed"
METADATA = "metadata"
KINDS = (ADDED, REMOVED, CHANGED, METADATA)

# The metadata compared, in the order they are named.
FIELDS = ("mode", "uid", "gid", "mtime")


@dataclass(frozen=True, slots=True)
class Difference:
    """One entry that differs. `before` is the node in the first snapshot (None when
    added), `after` the node in the second (None when removed)."""

    path: bytes  # relative to the snapshot's root, file-system bytes, no leading "/"
    kind: str  # ADDED, REMOVED, CHANGED or METADATA
    before: Node | None
    after: Node | None
    fields: tuple[str, ...] = ()  # the metadata that differs (FIELDS), for CHANGED and METADATA

    @property
    def type(self) -> str:
        """The entry's type: now, or before it was removed."""
        node = self.after or self.before
        assert node is not None
        return node.type

    @property
    def type_before(self) -> str | None:
        return self.before.type if self.before is not None else None

    @property
    def size_before(self) -> int | None:
        return _size(self.before)

    @property
    def size_after(self) -> int | None:
        return _size(self.after)


def _size(node: Node | None) -> int | None:
    return node.size if node is not None and node.type == FILE else None


@dataclass
class DiffSummary:
    """Counts of the entries found so far, and the bytes of the files among them."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    files: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    bytes_added: int = 0  # the files added
    bytes_removed: int = 0  # the files removed
    bytes_changed_before: int = 0  # the files whose content changed, before and after
    bytes_changed_after: int = 0

    def note(self, difference: Difference) -> None:
        kind = difference.kind
        self.counts[kind] += 1
        if difference.type != FILE and difference.type_before != FILE:
            return
        self.files[kind] += 1
        before, after = difference.size_before or 0, difference.size_after or 0
        if kind == ADDED:
            self.bytes_added += after
        elif kind == REMOVED:
            self.bytes_removed += before
        elif kind == CHANGED:
            self.bytes_changed_before += before
            self.bytes_changed_after += after


# One level of the walk: the path of the folder, and its entries merged by name.
_Frame = tuple[bytes, Iterator[tuple[Node | None, Node | None]]]


class SnapshotDiff:
    """The differences from snapshot `before` to snapshot `after`, streamed by run():
    depth-first, a folder before what is below it, names in byte order.

    `listings_loaded` counts the folder listings read from the repository (a test proves
    with it that unchanged folders are skipped); `summary` is complete once run() ends."""

    def __init__(self, repo: Repository, before: Snapshot, after: Snapshot) -> None:
        self.repo = repo
        self.before = before
        self.after = after
        self.listings_loaded = 0
        self.summary = DiffSummary()
        self._seen: set[bytes] = set()  # distinct listings read: what is stored of the walk
        self._stored = 0  # entries of the distinct listings read
        self._walked = 0  # entries walked, each time a listing is reached by another path

    def run(self) -> Iterator[Difference]:
        require_lock(self.repo, "diff")  # no prune deletes the listings being read
        if self.before.tree == self.after.tree:
            return
        stack: list[_Frame] = [(b"", _merge(self._listing(self.before.tree), self._listing(self.after.tree)))]
        while stack:
            prefix, pairs = stack[-1]
            pair = next(pairs, None)
            if pair is None:
                stack.pop()
                continue
            self._count_walked()
            old, new = pair
            name = new.name if new is not None else old.name if old is not None else b""
            path = prefix + b"/" + name if prefix else name
            difference = _compare(path, old, new)
            if difference is not None:
                self.summary.note(difference)
                yield difference
            below = self._below(old, new)
            if below is not None:
                stack.append((path, below))

    def _below(self, old: Node | None, new: Node | None) -> Iterator[tuple[Node | None, Node | None]] | None:
        """The entries of the folder(s) at this path still to compare, or None: not a
        folder on either side, or the same listing on both (identical: never read)."""
        old_tree = _listing_id(old)
        new_tree = _listing_id(new)
        if old_tree is None and new_tree is None:
            return None
        if old_tree == new_tree:
            return None
        old_nodes = self._listing(old_tree) if old_tree else []
        new_nodes = self._listing(new_tree) if new_tree else []
        return _merge(old_nodes, new_nodes)

    def _listing(self, tree_id: bytes) -> list[Node]:
        nodes = decode_tree(self.repo.load_blob(tree_id))
        self.listings_loaded += 1
        if tree_id not in self._seen:
            self._seen.add(tree_id)
            self._stored += len(nodes)
        return nodes

    def _count_walked(self) -> None:
        self._walked += 1
        if past_limit(self._walked, self._stored):
            raise IntegrityError(
                f"the snapshots' trees expand to more than {self._walked} entries from {self._stored} stored "
                f"({len(self._seen)} folder listings): refused as crafted or damaged",
                hint="run `backupctl check` and report these snapshots")


def _listing_id(node: Node | None) -> bytes | None:
    """The listing to walk below a folder (an empty one: b"", nothing to read)."""
    if node is None or node.type != DIR:
        return None
    return node.subtree or b""


def _merge(old: list[Node], new: list[Node]) -> Iterator[tuple[Node | None, Node | None]]:
    """(old, new) by name, in byte order (both listings are sorted: decode_tree checks it)."""
    i = j = 0
    while i < len(old) or j < len(new):
        if j == len(new) or (i < len(old) and old[i].name < new[j].name):
            yield old[i], None
            i += 1
        elif i == len(old) or new[j].name < old[i].name:
            yield None, new[j]
            j += 1
        else:
            yield old[i], new[j]
            i += 1
            j += 1


def _compare(path: bytes, old: Node | None, new: Node | None) -> Difference | None:
    if old is None:
        return Difference(path, ADDED, None, new)
    if new is None:
        return Difference(path, REMOVED, old, None)
    fields = _metadata_changed(old, new)
    if old.type == new.type == DIR and _listing_id(old) != _listing_id(new):
        # A folder whose entries changed has a new mtime because of them: the entries
        # below are the news, the folder's own mtime would be one line of noise per level.
        fields = tuple(f for f in fields if f != "mtime")
    if old.type != new.type or (new.type == FILE and old.sha256 != new.sha256) \
            or (new.type == SYMLINK and old.target != new.target):
        return Difference(path, CHANGED, old, new, fields)
    if fields:
        return Difference(path, METADATA, old, new, fields)
    return None


def _metadata_changed(old: Node, new: Node) -> tuple[str, ...]:
    found = []
    if old.mode != new.mode:
        found.append("mode")
    if old.uid != new.uid:
        found.append("uid")
    if old.gid != new.gid:
        found.append("gid")
    if old.mtime_ns != new.mtime_ns:
        found.append("mtime")
    return tuple(found)

"""A snapshot's tree, read once per distinct folder listing, and refused when it explodes.

Trees are content-addressed, so identical folders share one listing (every empty folder
is the same blob) and a tree is a DAG, not a tree. Walked naively, a crafted snapshot
(written with a stolen key) whose listing names the same subtree twice at each of 30
levels costs 2**30 entries: restore would plan until memory runs out. Here each distinct
listing is loaded and decoded once, the size of the expanded tree is counted bottom-up
(linear in the listings stored), and a tree whose expansion is far larger than what is
stored is refused with an IntegrityError before a single entry is planned. A cycle
cannot be built with content addresses, but one would be refused the same way.
"""

from __future__ import annotations

from typing import Callable, Iterator

from agent.errors import IntegrityError, StorageError
from agent.repo.repository import Repository
from agent.repo.tree import DIR, Node, decode_tree

# Real data repeats folders (empty ones, copies of a folder) but never by orders of
# magnitude: up to this many entries planned per entry stored, beyond FREE_ENTRIES...
MAX_EXPANSION = 100
# ...which any snapshot may expand to (restore streams its walk: what it holds is bounded,
# agent/engine/restore.py).
FREE_ENTRIES = 1_000_000

# Listings asked of the repository at once while reading a level of the tree: bounds
# what one read holds in memory (a few MiB of listings).
PREFETCH_LISTINGS = 256

# What counting needs of one listing: its number of entries and its subtrees' ids.
Shape = tuple[int, list[bytes]]


def past_limit(entries: int, stored: int) -> bool:
    """Whether a walk of `entries` entries over listings holding `stored` entries in all is
    refused as crafted or damaged. The one rule of every walk of a tree (restore, export,
    find, diff), so a change of the limits reaches them all."""
    return entries > max(FREE_ENTRIES, MAX_EXPANSION * stored)


class Expansion:
    """Every listing reachable from `tree_id`, decoded once, checked before any walk.

    keep_listings=False (a streaming export) keeps only counts while checking and reads
    each listing again as the walk reaches it: memory for one path, not the whole tree.
    `shapes` (a dict the caller keeps, shared by the checks of several snapshots: find)
    remembers per listing only its number of entries and its subtrees, so a folder
    unchanged between snapshots is read once for all of them while each snapshot's own
    size is still checked; listings not kept are read again by walk()."""

    def __init__(self, repo: Repository, tree_id: bytes, *, keep_listings: bool = True,
                 shapes: dict[bytes, Shape] | None = None, keep_entries: int | None = None) -> None:
        self.root = tree_id
        self._repo = repo
        self._keep = keep_listings
        # keep_entries (restore): listings are kept up to this many entries in all; the
        # others are read again as walk() reaches them (a large snapshot: memory bounded).
        self._keep_entries = keep_entries
        self._kept = 0
        self._shapes: dict[bytes, Shape] = shapes if shapes is not None else {}
        self.listings: dict[bytes, list[Node]] = {}
        self.unreadable: dict[bytes, Exception] = {}
        self.stored = 0  # entries of the distinct listings
        self.distinct = 0
        self._prefetch(repo)
        self.entries = self._count(repo)
        if past_limit(self.entries, self.stored):
            raise IntegrityError(
                f"the snapshot's tree would expand to {self.entries} entries from {self.stored} stored "
                f"({self.distinct} folder listings): refused as crafted or damaged",
                hint="restore another snapshot; run `backupctl check` and report this one")

    def _prefetch(self, repo: Repository) -> None:
        """Read the listings level by level, PREFETCH_LISTINGS at a time, neighbours in a
        pack in one request (Repository.load_blobs): over a WAN a round trip per level of
        the tree, not per folder. Only each listing's shape is kept (and the listing
        itself within the budget); each distinct listing is read once, so a crafted DAG
        costs no more here than what is stored. _count then walks the shapes."""
        seen: set[bytes] = set(self._shapes)
        level = [self.root] if self.root not in seen else []
        seen.update(level)
        while level:
            following: list[bytes] = []
            for at in range(0, len(level), PREFETCH_LISTINGS):
                part = level[at : at + PREFETCH_LISTINGS]
                loaded = repo.load_blobs(part)
                for tree_id in part:
                    got = loaded[tree_id]
                    try:
                        if isinstance(got, Exception):
                            raise got
                        nodes = decode_tree(got)
                    except (IntegrityError, StorageError) as exc:
                        self.unreadable[tree_id] = exc
                        continue
                    self._keep_listing(tree_id, nodes)
                    shape = self._shapes[tree_id] = (len(nodes), [n.subtree for n in nodes
                                                                  if n.type == DIR and n.subtree is not None])
                    for subtree in shape[1]:
                        if subtree not in seen:
                            seen.add(subtree)
                            following.append(subtree)
                del loaded
            level = following

    def _keep_listing(self, tree_id: bytes, nodes: list[Node]) -> None:
        if not self._keep:
            return
        if self._keep_entries is not None and self._kept + len(nodes) > self._keep_entries:
            return  # past the budget: this one is read again by walk(), the others stay
        self.listings[tree_id] = nodes
        self._kept += len(nodes)

    def _count(self, repo: Repository) -> int:
        sizes: dict[bytes, int] = {}
        open_children: dict[bytes, tuple[int, list[bytes]]] = {}  # entries, subtrees of listings being counted
        # Iterative post-order walk over distinct listings (a deep tree must not hit
        # Python's recursion limit): (tree id, entered?).
        stack: list[tuple[bytes, bool]] = [(self.root, False)]
        open_: set[bytes] = set()
        while stack:
            tree_id, entered = stack.pop()
            if entered:
                open_.discard(tree_id)
                count, children = open_children.pop(tree_id)
                sizes[tree_id] = count + sum(sizes[child] for child in children)
                continue
            if tree_id in sizes:
                continue
            if tree_id in open_:
                raise IntegrityError("the snapshot's tree contains itself (a folder listing names one of its own "
                                     "parents): refused as crafted or damaged")
            if tree_id in self.unreadable:
                sizes[tree_id] = 0
                continue
            shape = self._shapes.get(tree_id)
            if shape is None:
                try:
                    nodes = decode_tree(repo.load_blob(tree_id))
                except (IntegrityError, StorageError) as exc:
                    self.unreadable[tree_id] = exc
                    sizes[tree_id] = 0
                    continue
                self._keep_listing(tree_id, nodes)
                shape = self._shapes[tree_id] = (len(nodes), [n.subtree for n in nodes
                                                              if n.type == DIR and n.subtree is not None])
            self.stored += shape[0]
            self.distinct += 1
            open_children[tree_id] = shape
            open_.add(tree_id)
            stack.append((tree_id, True))
            for subtree in shape[1]:
                if subtree not in sizes:
                    if subtree in open_:
                        raise IntegrityError("the snapshot's tree contains itself (a folder listing names one of "
                                             "its own parents): refused as crafted or damaged")
                    stack.append((subtree, False))
        return sizes[self.root]

    def walk(self, on_error: Callable[[bytes, Exception], None] | None = None) -> Iterator[tuple[bytes, Node]]:
        """(path, node) depth-first, parents before children, entries in listing order;
        an unreadable listing is reported at each path that names
        it, then skipped. A stack of iterators: no recursion limit on depth."""
        stack: list[tuple[bytes, Iterator[Node]]] = []
        self._enter(stack, b"", self.root, on_error)
        while stack:
            prefix, nodes = stack[-1]
            node = next(nodes, None)
            if node is None:
                stack.pop()
                continue
            path = prefix + b"/" + node.name if prefix else node.name
            yield path, node
            if node.type == DIR and node.subtree is not None:
                self._enter(stack, path, node.subtree, on_error)

    def _enter(self, stack: list[tuple[bytes, Iterator[Node]]], prefix: bytes, tree_id: bytes,
               on_error: Callable[[bytes, Exception], None] | None) -> None:
        problem = self.unreadable.get(tree_id)
        nodes = self.listings.get(tree_id)
        if problem is None and nodes is None:
            try:
                nodes = decode_tree(self._repo.load_blob(tree_id))
            except (IntegrityError, StorageError) as exc:
                problem = exc
        if problem is not None:
            if on_error is None:
                raise problem
            on_error(prefix, problem)
            return
        assert nodes is not None
        stack.append((prefix, iter(nodes)))

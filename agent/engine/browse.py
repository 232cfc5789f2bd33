"""Looking into snapshots without restoring them: by date, list, find, one file's bytes.

For the incident desk: "restore the folder as it was on the 2nd at 18:00", "when was this
letter last intact?", "send me just that file". Everything reads trees and chunks through
the repository like restore does, and a file's bytes are checked against its SHA-256.
"""

from __future__ import annotations

import datetime as _dt
from typing import Iterator

from agent import timefmt
from agent.crypto.ids import new_file_fingerprint
from agent.engine.expansion import Expansion, Shape
from agent.engine.patterns import Pattern
from agent.engine.walk import load_tree
from agent.errors import IntegrityError, UsageError
from agent.repo.repository import Repository
from agent.repo.snapshot import Snapshot, chronological
from agent.repo.tree import DIR, FILE, Node


def snapshot_at(snapshots: list[Snapshot], moment: _dt.datetime) -> Snapshot:
    """The newest snapshot taken at or before `moment` (snapshots oldest first)."""
    before = [s for s in snapshots if s.time <= moment]
    if not before:
        zone = moment.tzinfo  # the practice's: --at is read in [retention] timezone
        first = f" (the first is from {timefmt.shown(snapshots[0].time, zone)})" if snapshots else ""
        raise UsageError(f"no snapshot was taken at or before {timefmt.shown(moment, zone)}{first}")
    return max(before, key=chronological)  # the same instant twice: the one "latest" would name


def _components(path: str) -> list[bytes]:
    return [part for part in path.encode("utf-8", "surrogateescape").split(b"/") if part]


def find_node(repo: Repository, snapshot: Snapshot, path: str) -> Node | None:
    """The node at `path` ("/srv/cabinet/x.txt" or without the leading slash); None for
    the snapshot's root, UsageError if there is nothing there."""
    parts = _components(path)
    tree: bytes | None = snapshot.tree  # None below a file: nothing to descend into
    node = None
    for depth, part in enumerate(parts):
        if tree is None:
            raise UsageError(f"{path}: {b'/'.join(parts[:depth]).decode('utf-8', 'replace')} is not a folder "
                             f"in snapshot {snapshot.short_id}")
        node = next((n for n in load_tree(repo, tree) if n.name == part), None)
        if node is None:
            raise UsageError(f"{path}: not in snapshot {snapshot.short_id}",
                             hint="see what is there with `backupctl ls`")
        tree = node.subtree if node.type == DIR else None
    return node


def list_dir(repo: Repository, snapshot: Snapshot, path: str = "", *,
             recursive: bool = False) -> Iterator[tuple[bytes, Node]]:
    """(path, node) under `path`: its direct entries, or all of them with `recursive`.
    A file path lists that file alone."""
    node = find_node(repo, snapshot, path)
    base = b"/".join(_components(path))
    if node is not None and node.type != DIR:
        yield base, node
        return
    tree = snapshot.tree if node is None else node.subtree
    if tree is None:
        return
    if not recursive:
        for child in load_tree(repo, tree):
            yield (base + b"/" + child.name if base else child.name), child
        return
    # Refused before the first line when the folder is a crafted DAG (one listing named
    # twice at each of 30 levels: 2**30 lines); walked without recursion otherwise.
    for relative, child in Expansion(repo, tree, keep_listings=False).walk():
        yield (base + b"/" + relative if base else relative), child


def names_in(repo: Repository, snapshots: list[Snapshot]) -> set[str]:
    """Every file and folder name of the snapshots (for suggesting what a pattern that
    matched nothing meant). A folder shared by several snapshots is read once."""
    names: set[str] = set()
    seen: set[bytes] = set()
    stack = [s.tree for s in snapshots]
    while stack:
        tree = stack.pop()
        if tree in seen:
            continue
        seen.add(tree)
        for node in load_tree(repo, tree):
            names.add(node.name.decode("utf-8", "surrogateescape"))
            if node.type == DIR and node.subtree is not None:
                stack.append(node.subtree)
    return names


def find(repo: Repository, snapshots: list[Snapshot], pattern: str, *,
         ignore_case: bool = False) -> list[tuple[Snapshot, bytes, Node]]:
    """Every (snapshot, path, node) whose path matches (agent/engine/patterns.py, the rule
    of restore's --include), oldest snapshot first. A folder unchanged between snapshots is
    the same tree: it is read and searched once."""
    compiled = Pattern(pattern, ignore_case=ignore_case)
    whole_path = compiled.whole_path
    shapes: dict[bytes, Shape] = {}  # shared by the snapshots' size checks: each listing read once for them
    cache: dict[tuple[bytes, bytes], list[tuple[bytes, Node]]] = {}

    def key(tree: bytes, prefix: bytes) -> tuple[bytes, bytes]:
        return tree, prefix if whole_path else b""  # by name, a subtree's matches do not depend on where it is

    def search(root: bytes) -> list[tuple[bytes, Node]]:
        # Post-order with an explicit stack (a deep tree must not hit the recursion limit).
        stack: list[tuple[bytes, bytes, bool]] = [(root, b"", False)]
        pending: dict[tuple[bytes, bytes], list[Node]] = {}  # listings whose subtrees are being searched
        while stack:
            tree, prefix, entered = stack.pop()
            if not entered:
                if key(tree, prefix) in cache or key(tree, prefix) in pending:
                    continue
                # Read again here (the size check kept no listing): only the matches are kept.
                nodes = pending[key(tree, prefix)] = load_tree(repo, tree)
                stack.append((tree, prefix, True))
                for node in nodes:
                    if node.type == DIR and node.subtree is not None:
                        stack.append((node.subtree, prefix + b"/" + node.name if prefix else node.name, False))
                continue
            nodes = pending.pop(key(tree, prefix))
            found = []
            for node in nodes:
                relative = prefix + b"/" + node.name if prefix else node.name
                if compiled.matches(relative.decode("utf-8", "surrogateescape")):
                    found.append((node.name, node))
                if node.type == DIR and node.subtree is not None:
                    found.extend((node.name + b"/" + sub, n) for sub, n in cache[key(node.subtree, relative)])
            cache[key(tree, prefix)] = found
        return cache[key(root, b"")]

    results = []
    for snapshot in snapshots:
        # Each snapshot's size is checked before it is searched: a crafted DAG would make
        # the matches (by name) or the distinct paths (by path) number 2**30.
        Expansion(repo, snapshot.tree, keep_listings=False, shapes=shapes)
        for relative, node in search(snapshot.tree):
            results.append((snapshot, relative, node))
    return results


def file_bytes(repo: Repository, node: Node, path: str) -> Iterator[bytes]:
    """The file's content, chunk by chunk; raises IntegrityError at the end if the bytes
    do not have the SHA-256 recorded at backup (what was yielded must then be discarded)."""
    if node.type != FILE:
        raise UsageError(f"{path} is not a file")
    digest = new_file_fingerprint()
    for chunk_id in node.chunks:
        data = repo.load_blob(chunk_id)
        digest.update(data)
        yield data
    if digest.hexdigest() != node.sha256:
        raise IntegrityError(f"{path}: the content read does not have the SHA-256 recorded at backup")

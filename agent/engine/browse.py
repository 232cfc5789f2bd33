"""Looking into snapshots without restoring them: by date, list, find, one file's bytes.

For the incident desk: "restore the folder as it was on the 2nd at 18:00", "when was this
letter last intact?", "send me just that file". Everything reads trees and chunks through
the repository like restore does, and a file's bytes are checked against its SHA-256.
"""

from __future__ import annotations

import datetime as _dt
import fnmatch
from typing import Callable, Iterator

from agent.crypto.ids import new_file_fingerprint
from agent.engine.walk import load_tree
from agent.errors import IntegrityError, UsageError
from agent.repo.repository import Repository
from agent.repo.snapshot import Snapshot
from agent.repo.tree import DIR, FILE, Node


def snapshot_at(snapshots: list[Snapshot], moment: _dt.datetime) -> Snapshot:
    """The newest snapshot taken at or before `moment` (snapshots oldest first)."""
    before = [s for s in snapshots if s.time <= moment]
    if not before:
        first = f" (the first is from {snapshots[0].time:%Y-%m-%d %H:%M})" if snapshots else ""
        raise UsageError(f"no snapshot was taken at or before {moment:%Y-%m-%d %H:%M}{first}")
    return max(before, key=lambda s: s.time)


def _components(path: str) -> list[bytes]:
    return [part for part in path.encode("utf-8", "surrogateescape").split(b"/") if part]


def find_node(repo: Repository, snapshot: Snapshot, path: str) -> Node | None:
    """The node at `path` ("/srv/cabinet/x.txt" or without the leading slash); None for
    the snapshot's root, UsageError if there is nothing there."""
    parts = _components(path)
    tree = snapshot.tree
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
    if tree is not None:
        yield from _entries(repo, tree, base, recursive)


def _entries(repo: Repository, tree: bytes, prefix: bytes, recursive: bool) -> Iterator[tuple[bytes, Node]]:
    for node in load_tree(repo, tree):
        path = prefix + b"/" + node.name if prefix else node.name
        yield path, node
        if recursive and node.type == DIR and node.subtree is not None:
            yield from _entries(repo, node.subtree, path, recursive)


def matcher(pattern: str) -> Callable[[bytes], bool]:
    """A pattern without "/" matches a file or folder name ("lettre*.odt"); with "/", the
    whole path inside the snapshot ("srv/cabinet/courriers/*/dupont*")."""
    if "/" in pattern:
        wanted = pattern.lstrip("/")
        return lambda path: fnmatch.fnmatchcase(path.decode("utf-8", "replace"), wanted)
    return lambda path: fnmatch.fnmatchcase(path.rsplit(b"/", 1)[-1].decode("utf-8", "replace"), pattern)


def find(repo: Repository, snapshots: list[Snapshot], pattern: str) -> list[tuple[Snapshot, bytes, Node]]:
    """Every (snapshot, path, node) whose path matches, oldest snapshot first. A folder
    unchanged between snapshots is the same tree: it is read and searched once."""
    matches = matcher(pattern)
    whole_path = "/" in pattern
    cache: dict[tuple[bytes, bytes], list[tuple[bytes, Node]]] = {}

    def search(tree: bytes, prefix: bytes) -> list[tuple[bytes, Node]]:
        key = (tree, prefix if whole_path else b"")  # by name, a subtree's matches do not depend on where it is
        if key not in cache:
            found = []
            for node in load_tree(repo, tree):
                relative = prefix + b"/" + node.name if prefix else node.name
                if matches(relative):
                    found.append((node.name, node))
                if node.type == DIR and node.subtree is not None:
                    found.extend((node.name + b"/" + sub, n) for sub, n in search(node.subtree, relative))
            cache[key] = found
        return cache[key]

    results = []
    for snapshot in snapshots:
        for relative, node in search(snapshot.tree, b""):
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

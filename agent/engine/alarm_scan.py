"""The backup's comparison with its parent snapshot, for the ransomware alarm (issue 22).

Walks the parent's tree and the new one together, listing by listing, like `diff`
(agent/engine/diff.py): a folder whose listing id is the same on both sides is never
read, so a weekly backup pays for what changed, not for what is stored. Each changed
folder's two listings go to agent.engine.alarm.Tally, which keeps counts only.

Compressibility comes from the index: each chunk's stored length (compressed, padded,
sealed) and plain length are known for every chunk, the new ones included (the backup
has just compressed and indexed them), so nothing is read or decompressed.
"""

from __future__ import annotations

import os

from agent.engine.alarm import RATIO_MIN_SIZE, FileFacts, Tally
from agent.repo.repository import Repository
from agent.repo.tree import DIR, FILE, Node, decode_tree


def compare_trees(repo: Repository, old_tree: bytes, new_tree: bytes, tally: Tally) -> None:
    """Feed every folder whose listing differs between `old_tree` and `new_tree` to `tally`."""
    stack: list[tuple[bytes, bytes | None, bytes | None]] = [(b"", old_tree, new_tree)]
    seen: set[tuple[bytes | None, bytes | None]] = set()  # a listing pair met again (hard to forge, cheap)
    while stack:
        path, old_id, new_id = stack.pop()
        if old_id == new_id or (old_id, new_id) in seen:
            continue
        seen.add((old_id, new_id))
        old = decode_tree(repo.load_blob(old_id)) if old_id else []
        new = decode_tree(repo.load_blob(new_id)) if new_id else []
        tally.folder(os.fsdecode(path) or "/", _files(repo, old), _files(repo, new), existed=old_id is not None)
        old_dirs = {n.name: n.subtree for n in old if n.type == DIR}
        for node in new:
            if node.type == DIR:
                stack.append((path + b"/" + node.name, old_dirs.pop(node.name, None) or None, node.subtree))
        for name, subtree in old_dirs.items():  # folders removed: their files count as removed
            stack.append((path + b"/" + name, subtree, None))


def _files(repo: Repository, nodes: list[Node]) -> list[FileFacts]:
    return [FileFacts(n.name, n.sha256, _ratio(repo, n)) for n in nodes if n.type == FILE]


def _ratio(repo: Repository, node: Node) -> float | None:
    if node.size < RATIO_MIN_SIZE or not node.chunks:
        return None
    stored = plain = 0
    for chunk_id in node.chunks:
        location = repo.locate(chunk_id)
        if location is None:
            return None
        stored += location.length
        plain += location.raw_length
    return stored / plain if plain else None

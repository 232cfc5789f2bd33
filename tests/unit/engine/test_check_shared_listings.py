"""check compares what a tree expands to with what is stored, counting each stored listing
once even when several different listings name it (as restore does)."""

from __future__ import annotations

from agent.engine.check import CheckEngine
from agent.engine.expansion import FREE_ENTRIES, MAX_EXPANSION
from agent.repo.pack import BLOB_DATA, BLOB_TREE
from agent.repo.tree import encode_tree
from tests.support.locked import run_locked

from .test_crafted_trees import CONTENT, _dir_node, _file_node, _snapshot, repo  # noqa: F401 (a fixture)

DEPTH = 20


def test_listings_named_by_two_different_listings_are_counted_once_as_stored(repo):  # noqa: F811
    """Level k has two different listings, A (a, b) and B (a, b and a file), each naming
    A and B of level k-1: every listing below the top is reached by two others."""
    chunk, _ = repo.store_blob(BLOB_DATA, CONTENT)
    a_nodes, b_nodes = [_file_node(b"note.txt", chunk)], [_file_node(b"other.txt", chunk)]
    expanded = {"a": 1, "b": 1}
    stored = 2
    for _ in range(DEPTH):
        a_id, _ = repo.store_blob(BLOB_TREE, encode_tree(a_nodes))
        b_id, _ = repo.store_blob(BLOB_TREE, encode_tree(b_nodes))
        below = 2 + expanded["a"] + expanded["b"]
        expanded = {"a": below, "b": below + 1}
        stored += 2 + 3
        a_nodes = [_dir_node(b"a", a_id), _dir_node(b"b", b_id)]
        b_nodes = a_nodes + [_file_node(b"x.txt", chunk)]
    snapshot = _snapshot(repo, a_nodes)  # the top: A of the last level
    stored -= 3  # the last B is not stored
    assert expanded["a"] > FREE_ENTRIES and expanded["a"] > MAX_EXPANSION * stored
    report = run_locked(CheckEngine(repo))
    assert report.errors == [f"snapshot {snapshot.short_id} (2026-12-01 09:00 +01:00): its tree would expand "
                             f"to {expanded['a']} entries from {stored} stored (one folder listing named over "
                             f"and over): restore refuses it as crafted or damaged"]

"""agent.engine.restore: the plan is streamed in batches, so what a restore holds does
not grow with the snapshot's number of files (issue 19, point 5).

Proved structurally, not by timing or RSS: with a batch of a few files, the number of
files handed to the workers and not yet finished never exceeds the bound, for a small
snapshot and one ten times larger; folder listings are not kept past their budget.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from pathlib import Path

import pytest

import agent.engine.restore as restore
from agent.engine.expansion import Expansion
from agent.engine.restore_files import ContentRestorer
from agent.repo.pack import BLOB_DATA, BLOB_TREE
from agent.repo.repository import Repository
from agent.repo.snapshot import Snapshot
from agent.repo.tree import DIR, FILE, SYMLINK, Node, encode_tree
from tests.support.repos import memory_repository

BATCH = 8


@pytest.fixture
def repo() -> Repository:
    return memory_repository(compression_level=3)


def _node(name: bytes, **fields) -> Node:
    return Node(name=name, mode=0o640, uid=os.getuid(), gid=os.getgid(), mtime_ns=10**18, **fields)


def _snapshot(repo: Repository, folders: int, per_folder: int) -> tuple[Snapshot, dict[str, bytes]]:
    expected: dict[str, bytes] = {}
    top = []
    for f in range(folders):
        children = []
        for i in range(per_folder):
            content = (f"letter {f}/{i}\n" if i not in (1, 2) else f"two names {f}\n").encode() * (1 + i % 3)
            if i == 2:
                content = expected[f"d{f:03d}/l0001.txt"]
            pieces = 2 if i % 5 == 0 else 1  # a few files of two chunks: created by the plan
            step = -(-len(content) // pieces)
            chunks = [repo.store_blob(BLOB_DATA, content[j:j + step])[0] for j in range(0, len(content), step)]
            name = f"l{i:04d}.txt".encode()
            children.append(_node(name, type=FILE, size=len(content), chunks=chunks,
                                  sha256=hashlib.sha256(content).hexdigest(),
                                  hardlink=f"1:{f}" if i in (1, 2) else None))
            expected[f"d{f:03d}/{name.decode()}"] = content
        children.append(_node(b"zlink", type=SYMLINK, target=b"l0000.txt"))
        subtree, _ = repo.store_blob(BLOB_TREE, encode_tree(sorted(children, key=lambda n: n.name)))
        top.append(_node(f"d{f:03d}".encode(), type=DIR, subtree=subtree))
    tree_id, _ = repo.store_blob(BLOB_TREE, encode_tree(top))
    repo.flush()
    snapshot = Snapshot(time=dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc), host="h", user="u", paths=["/"],
                        tree=tree_id)
    snapshot.id = repo.save_snapshot(snapshot)
    return snapshot, expected


def _restore_counting(repo: Repository, snapshot: Snapshot, target: Path, monkeypatch) -> tuple[int, int]:
    """Restore; return (most files in the workers' hands at once, files restored)."""
    monkeypatch.setattr(restore, "BATCH_FILES", BATCH)
    held = {"now": 0, "most": 0}
    real_submit, real_wait = ContentRestorer.submit, ContentRestorer.wait

    def submit(self, files):
        held["now"] += len(files)
        held["most"] = max(held["most"], held["now"])
        batch = real_submit(self, files)
        batch.counted = len(files)
        return batch

    def wait(self, batch):
        real_wait(self, batch)
        held["now"] -= batch.counted

    monkeypatch.setattr(ContentRestorer, "submit", submit)
    monkeypatch.setattr(ContentRestorer, "wait", wait)
    report = restore.RestoreEngine(repo, snapshot, str(target)).run()
    assert report.failures == [] and report.verified == report.files
    assert held["now"] == 0
    return held["most"], report.files


@pytest.mark.parametrize("folders", [3, 30])
def test_files_in_flight_are_bounded_whatever_the_snapshot_size(repo, tmp_path, monkeypatch, folders):
    snapshot, expected = _snapshot(repo, folders, 20)
    most, restored = _restore_counting(repo, snapshot, tmp_path / "t", monkeypatch)
    assert restored == len(expected) == folders * 20
    # Every file restored, byte for byte, links included, hard links as one inode.
    for rel, content in expected.items():
        assert (tmp_path / "t" / rel).read_bytes() == content
    for f in range(folders):
        folder = tmp_path / "t" / f"d{f:03d}"
        assert os.readlink(folder / "zlink") == "l0000.txt"
        assert (folder / "l0001.txt").stat().st_ino == (folder / "l0002.txt").stat().st_ino
    # Never more than the batches in flight, whether 60 files or 600.
    assert 0 < most <= restore.MAX_BATCHES_IN_FLIGHT * BATCH


def test_listings_are_not_kept_past_their_budget(repo, monkeypatch, tmp_path):
    snapshot, _ = _snapshot(repo, 10, 20)
    assert len(Expansion(repo, snapshot.tree, keep_entries=1000).listings) == 11
    kept = Expansion(repo, snapshot.tree, keep_entries=50).listings
    assert 0 < len(kept) < 11 and sum(len(nodes) for nodes in kept.values()) <= 50
    # And a restore over that budget reads them again as it walks: same result.
    monkeypatch.setattr(restore, "KEEP_LISTED_ENTRIES", 50)
    most, restored = _restore_counting(repo, snapshot, tmp_path / "t", monkeypatch)
    assert restored == 200 and most <= restore.MAX_BATCHES_IN_FLIGHT * BATCH

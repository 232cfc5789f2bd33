"""agent.engine.restore_files: every restored file is read back and its SHA-256 compared.

The restorer writes blobs pack by pack, so a file's pieces can arrive in any order;
these tests build packs whose blob order differs from the file order on purpose.
"""

from __future__ import annotations

import hashlib
import os

import pytest

from agent.engine.progress import SilentProgress
from agent.engine.restore_files import ContentRestorer, FileTarget
from agent.engine.target import TargetTree
from agent.repo.pack import BLOB_DATA
from agent.repo.repository import Repository
from agent.repo.tree import FILE, Node
from tests.support.repos import memory_repository

PIECES = [os.urandom(70_000), b"letter " * 9000, os.urandom(5_000), b"\x00" * 200_000]


@pytest.fixture
def repo() -> Repository:
    return memory_repository(compression_level=3)


def _store(repo: Repository, order: list[int]) -> list[bytes]:
    """Store PIECES in `order` (so the pack holds them in that order); return their ids in file order."""
    ids = {i: repo.store_blob(BLOB_DATA, PIECES[i])[0] for i in order}
    repo.flush()
    return [ids[i] for i in range(len(PIECES))]


def _node(chunks: list[bytes], content: bytes, *, sha256: str | None = None) -> Node:
    return Node(name=b"f", type=FILE, mode=0o640, uid=os.getuid(), gid=os.getgid(), mtime_ns=10**18,
                size=len(content), chunks=chunks, sha256=sha256 or hashlib.sha256(content).hexdigest())


def _restore(repo: Repository, node: Node, dest) -> ContentRestorer:
    with TargetTree(os.fsencode(dest.parent), overwrite=False) as tree:
        restorer = ContentRestorer(repo, tree=tree, progress=SilentProgress(), same_owner=False)
        restorer.run([FileTarget(os.fsencode(dest.name), node)])
    return restorer


@pytest.mark.parametrize("order", [[0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2]])
def test_file_verified_whatever_the_order_of_its_pieces_in_the_pack(repo, tmp_path, order):
    ids = _store(repo, order)
    content = b"".join(PIECES)
    restorer = _restore(repo, _node(ids, content), tmp_path / "f")
    assert restorer.failures == []
    assert restorer.verified == 1
    assert (tmp_path / "f").read_bytes() == content
    assert restorer.bytes == len(content)


def test_a_recorded_fingerprint_that_does_not_match_is_a_named_failure(repo, tmp_path):
    ids = _store(repo, [2, 0, 3, 1])
    node = _node(ids, b"".join(PIECES), sha256="00" * 32)
    restorer = _restore(repo, node, tmp_path / "f")
    assert restorer.verified == 0
    assert len(restorer.failures) == 1 and restorer.failures[0][0] == "f"
    assert "SHA-256 mismatch" in restorer.failures[0][1]


def test_read_back_sees_what_the_file_system_returns(repo, tmp_path, monkeypatch):
    """The bytes are read back from the target: a write that the file system altered
    is caught even though the bytes handed to it were right."""
    import agent.engine.restore_files as restore_files

    ids = _store(repo, [0, 1, 2, 3])
    real_pwrite = os.pwrite

    def corrupting_pwrite(fd, data, offset):
        data = bytes(data)
        if offset == 0:
            data = b"X" + data[1:]
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(restore_files.os, "pwrite", corrupting_pwrite)
    restorer = _restore(repo, _node(ids, b"".join(PIECES)), tmp_path / "f")
    assert restorer.verified == 0 and "SHA-256 mismatch" in restorer.failures[0][1]


def test_a_one_chunk_file_is_read_back_too(repo, tmp_path, monkeypatch):
    """The one-chunk path (created, written and read back through one descriptor with one
    pread) proves what the file system returns, not what was handed to it."""
    import agent.engine.restore_files as restore_files

    content = b"one letter " * 300
    chunk, _ = repo.store_blob(BLOB_DATA, content)
    repo.flush()
    real_pwrite = os.pwrite

    def corrupting_pwrite(fd, data, offset):
        data = bytes(data)
        return real_pwrite(fd, b"X" + data[1:] if offset == 0 else data, offset)

    monkeypatch.setattr(restore_files.os, "pwrite", corrupting_pwrite)
    restorer = _restore(repo, _node([chunk], content), tmp_path / "f")
    assert restorer.verified == 0 and "SHA-256 mismatch" in restorer.failures[0][1]


def test_a_one_chunk_file_longer_on_disk_than_recorded_is_caught(repo, tmp_path, monkeypatch):
    """The read-back asks for one byte more than the recorded size: a file that the
    file system returns longer (here a byte appended after the write) does not pass."""
    import agent.engine.restore_files as restore_files

    content = b"one letter " * 300
    chunk, _ = repo.store_blob(BLOB_DATA, content)
    repo.flush()
    real_pwrite = os.pwrite

    def lengthening_pwrite(fd, data, offset):
        return real_pwrite(fd, bytes(data) + b"!", offset) - 1

    monkeypatch.setattr(restore_files.os, "pwrite", lengthening_pwrite)
    restorer = _restore(repo, _node([chunk], content), tmp_path / "f")
    assert restorer.verified == 0 and "SHA-256 mismatch" in restorer.failures[0][1]

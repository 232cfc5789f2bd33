"""agent.engine.restore_files: one-chunk files restored by worker processes (a large
local restore), with the same proof and the same refusals as in threads."""

from __future__ import annotations

import hashlib
import os

import pytest

import agent.engine.restore_files as restore_files
from agent.engine.progress import SilentProgress
from agent.engine.restore_files import ContentRestorer, FileTarget
from agent.engine.target import TargetTree
from agent.errors import RestoreTargetError
from agent.repo.pack import BLOB_DATA
from agent.repo.repository import Repository
from agent.repo.tree import FILE, Node
from tests.support.repos import memory_repository


@pytest.fixture
def repo() -> Repository:
    return memory_repository(compression_level=3)


def _letters(repo: Repository, count: int) -> list[tuple[FileTarget, bytes]]:
    files = []
    for i in range(count):
        content = f"lettre {i}\n".encode() * (i % 7 + 1)
        chunk, _ = repo.store_blob(BLOB_DATA, content)
        node = Node(name=b"x", type=FILE, mode=0o640, uid=os.getuid(), gid=os.getgid(), mtime_ns=10**18 + i,
                    size=len(content), chunks=[chunk], sha256=hashlib.sha256(content).hexdigest(),
                    hardlink="1:2" if i == 3 else None)
        files.append((FileTarget(f"d{i % 3}/l{i}".encode(), node), content))
    repo.flush()
    repo.load_index()
    return files


def _pids_of_writers(monkeypatch, tmp_path):
    """Record the process of every one-chunk write (the patch is inherited by the fork)."""
    log = tmp_path / "pids"
    real = restore_files._write_one

    def write_one(*args, **kwargs):
        with open(log, "a") as handle:
            handle.write(f"{os.getpid()}\n")
        return real(*args, **kwargs)

    monkeypatch.setattr(restore_files, "_write_one", write_one)
    return lambda: set(int(p) for p in log.read_text().split())


def test_one_chunk_files_are_written_verified_and_dated_by_worker_processes(repo, tmp_path, monkeypatch):
    files = _letters(repo, 40)
    pids = _pids_of_writers(monkeypatch, tmp_path)
    target = tmp_path / "t"
    with TargetTree(os.fsencode(target), overwrite=False) as tree:
        restorer = ContentRestorer(repo, tree=tree, progress=SilentProgress(), same_owner=False, processes=True)
        restorer.run([f for f, _ in files])
    assert restorer.failures == [] and restorer.verified == 40 and restorer.files == 40
    assert os.getpid() not in pids() and len(pids()) >= 1
    for file, content in files:
        assert (target / os.fsdecode(file.rel)).read_bytes() == content
        assert file.done and file.verified
        st = os.stat(target / os.fsdecode(file.rel))
        assert st.st_mtime_ns == file.node.mtime_ns and st.st_mode & 0o777 == 0o640
    # The inode a hard link will need comes back from the process.
    assert files[3][0].ino == os.stat(target / "d0" / "l3").st_ino


def test_a_worker_process_reads_back_what_the_file_system_returns(repo, tmp_path, monkeypatch):
    files = _letters(repo, 10)
    real_pwrite = os.pwrite

    def corrupting_pwrite(fd, data, offset):
        data = bytes(data)
        return real_pwrite(fd, b"X" + data[1:] if offset == 0 else data, offset)

    monkeypatch.setattr(restore_files.os, "pwrite", corrupting_pwrite)
    with TargetTree(os.fsencode(tmp_path / "t"), overwrite=False) as tree:
        restorer = ContentRestorer(repo, tree=tree, progress=SilentProgress(), same_owner=False, processes=True)
        restorer.run([f for f, _ in files])
    assert restorer.verified == 0 and len(restorer.failures) == 10
    assert all("SHA-256 mismatch" in why for _path, why in restorer.failures)


def test_a_name_taken_in_the_target_stops_the_restore_from_a_worker_process(repo, tmp_path):
    files = _letters(repo, 10)
    target = tmp_path / "t"
    (target / "d1").mkdir(parents=True)
    (target / "d1" / "l4").write_bytes(b"someone else's")
    with TargetTree(os.fsencode(target), overwrite=False) as tree:
        restorer = ContentRestorer(repo, tree=tree, progress=SilentProgress(), same_owner=False, processes=True)
        with pytest.raises(RestoreTargetError, match="d1/l4"):
            restorer.run([f for f, _ in files])
    assert (target / "d1" / "l4").read_bytes() == b"someone else's"

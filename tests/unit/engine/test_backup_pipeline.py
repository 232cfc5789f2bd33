"""agent.engine.backup: the pipeline's ordering guarantees.

The walk does not wait for a directory's files before going on: trees are queued and
stored once their files are done, children before parents. Large files and databases
are cut by a streaming thread while the walk continues. These tests slow some files
down on purpose and check that every snapshot still holds exactly the source tree.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time

import pytest

import agent.engine.backup as backup_module
from agent.engine.backup import BackupEngine, BackupOptions
from agent.engine.expansion import Expansion
from agent.repo.repository import Repository
from agent.repo.tree import DIR, FILE
from tests.support.locked import run_locked
from tests.support.waits import wait_until
from tests.support.repos import memory_repository



@pytest.fixture
def repo() -> Repository:
    return memory_repository()


def _make_tree(root, *, dirs: int, files_per_dir: int, big: int = 0) -> dict[str, str]:
    """A tree of nested folders; returns {relative path: sha256} of every file."""
    expected = {}
    for d in range(dirs):
        folder = root / "/".join(f"d{i}" for i in range(d % 4 + 1)) / f"leaf{d}"
        folder.mkdir(parents=True, exist_ok=True)
        for f in range(files_per_dir):
            data = f"letter {d}-{f} ".encode() * (50 + 37 * f)
            (folder / f"f{f}.txt").write_bytes(data)
            expected[str((folder / f"f{f}.txt").relative_to(root))] = hashlib.sha256(data).hexdigest()
    for b in range(big):
        data = os.urandom(9 * 1024 * 1024 + b)  # above the chunker's max_size: streamed
        (root / f"big{b}.bin").write_bytes(data)
        expected[f"big{b}.bin"] = hashlib.sha256(data).hexdigest()
    db = (b"page" * 2048) * 300  # a declared database: fixed blocks, streamed
    (root / "cabinet.db").write_bytes(db)
    expected["cabinet.db"] = hashlib.sha256(db).hexdigest()
    return expected


def _snapshot_files(repo: Repository, tree_id: bytes, source) -> dict[str, str]:
    prefix = os.fsencode(str(source).lstrip("/"))
    found = {}
    for path, node in Expansion(repo, tree_id).walk():
        assert node.type in (DIR, FILE)
        if node.type == FILE:
            found[os.fsdecode(os.path.relpath(path, prefix))] = node.sha256
    return found


def _patch_file_reads(monkeypatch, wrapper) -> None:
    """Wrap both ways a worker reads a file: whole (larger files) and small (batched)."""
    for method in ("_read_whole_file", "_read_small_file"):
        monkeypatch.setattr(BackupEngine, method, wrapper(getattr(BackupEngine, method)))


def _slow_some_files(monkeypatch, every: int, delay: float) -> list[int]:
    """Make every `every`-th file read sleep, so later directories finish first."""
    counter = {"n": 0}
    lock = threading.Lock()
    slowed: list[int] = []

    def wrapper(real):
        def slow(self, path, **kwargs):
            with lock:
                counter["n"] += 1
                n = counter["n"]
            if n % every == 1:
                slowed.append(n)
                time.sleep(delay)
            return real(self, path, **kwargs)
        return slow

    _patch_file_reads(monkeypatch, wrapper)
    return slowed


@pytest.mark.parametrize("batch_files", [2, 256])
@pytest.mark.parametrize("max_dirs_pending", [1, 3, 256])
def test_snapshot_holds_the_tree_whatever_order_files_finish_in(repo, tmp_path, monkeypatch, max_dirs_pending,
                                                                 batch_files):
    monkeypatch.setattr(backup_module, "MAX_DIRS_PENDING", max_dirs_pending)
    monkeypatch.setattr(backup_module, "SMALL_BATCH_FILES", batch_files)
    source = tmp_path / "src"
    expected = _make_tree(source, dirs=24, files_per_dir=5, big=1)
    slowed = _slow_some_files(monkeypatch, every=7, delay=0.02)
    report = run_locked(BackupEngine(repo, BackupOptions(paths=[str(source)], databases=["*.db"])))
    assert slowed and not report.warnings
    assert report.files_new == len(expected)
    assert _snapshot_files(repo, report.snapshot.tree, source) == expected


def test_the_walk_goes_on_while_a_directory_waits_for_a_slow_file(repo, tmp_path, monkeypatch):
    """A slow file in the first folder does not hold back the reading of later folders
    (small files are read in batches: here one file per batch, so that the other
    worker's batches are the later folders)."""
    monkeypatch.setattr(backup_module, "SMALL_BATCH_FILES", 1)
    source = tmp_path / "src"
    (source / "a").mkdir(parents=True)
    (source / "a" / "slow.txt").write_bytes(b"slow " * 1000)
    for i in range(6):
        (source / f"b{i}").mkdir()
        (source / f"b{i}" / "x.txt").write_bytes(f"file {i} ".encode() * 1000)
    started_while_slow: list[bytes] = []
    slow_running = threading.Event()
    gave_up: list[AssertionError] = []

    def wrapper(real):
        def instrumented(self, path, **kwargs):
            if path.endswith(b"slow.txt"):
                # The slow read lasts until later folders have been read (or the deadline).
                slow_running.set()
                try:
                    wait_until(lambda: len(started_while_slow) >= 3, timeout=30,
                               what="three later folders read while slow.txt is being read")
                except AssertionError as exc:
                    gave_up.append(exc)  # raised below, not inside the engine's worker
                finally:
                    slow_running.clear()
            elif slow_running.is_set():
                started_while_slow.append(path)
            return real(self, path, **kwargs)
        return instrumented

    _patch_file_reads(monkeypatch, wrapper)
    report = run_locked(BackupEngine(repo, BackupOptions(paths=[str(source)])))
    if gave_up:
        raise gave_up[0]
    assert not report.warnings and report.files_new == 7
    assert len(started_while_slow) >= 3  # later folders were read during the slow file


def test_an_unreadable_file_is_left_out_of_its_own_folder_only(repo, tmp_path, monkeypatch):
    source = tmp_path / "src"
    expected = _make_tree(source, dirs=6, files_per_dir=3)
    victim = sorted(p for p in expected if p.endswith("f1.txt"))[2]
    def wrapper(real):
        def failing(self, path, **kwargs):
            if path.endswith(os.fsencode(victim)):
                raise PermissionError(13, "Permission denied")
            return real(self, path, **kwargs)
        return failing

    _patch_file_reads(monkeypatch, wrapper)
    report = run_locked(BackupEngine(repo, BackupOptions(paths=[str(source)], databases=["*.db"])))
    assert [path for path, _problem in report.warnings] == [str(source / victim)]
    del expected[victim]
    assert _snapshot_files(repo, report.snapshot.tree, source) == expected

"""Small files read, fingerprinted and sealed by worker processes (agent.engine.small_files).

The worker processes seal with a copy of the repository's BlobSealer and hand the sealed
parts back through a shared spool: the snapshot must be the same as when the worker
threads store the same files, and every blob must open with the repository's key.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import subprocess
import tempfile

import pytest

import agent.engine.backup as backup_module
from agent.crypto.kdf import KdfParams
from agent.engine.backup import BackupEngine, BackupOptions
from agent.engine.expansion import Expansion
from agent.engine.walk import load_tree
from agent.engine.small_files import GREW, interrupts_ignored, read_small, seal_small_files
from agent.repo.pack import BLOB_DATA
from agent.repo.repository import Repository
from agent.repo.tree import FILE
from agent.storage.memory import MemoryStorage
from tests.support.locked import run_locked

FAST = KdfParams(memory_kib=8192, iterations=1)


def _repo(cipher: str = "xchacha20-poly1305") -> Repository:
    return Repository.init(MemoryStorage(), b"phrase", cipher=cipher, compression_level=3, kdf_params=FAST)


def _letters(root, count: int) -> dict[str, bytes]:
    contents = {}
    for i in range(count):
        folder = root / f"folder{i % 5}"
        folder.mkdir(parents=True, exist_ok=True)
        # Text (compressed), random bytes (stored as is), one empty file, one of 20 KiB
        # (above the one-call libsodium size), all below the chunker's minimum size.
        data = (f"Lettre {i} au patient. " * (20 + i)).encode() if i % 3 else os.urandom(100 + 7 * i)
        if i == 4:
            data = b""
        if i == 5:
            data = os.urandom(20_000)
        (folder / f"l{i}.txt").write_bytes(data)
        contents[f"folder{i % 5}/l{i}.txt"] = data
    return contents


def _files(repo: Repository, tree_id: bytes, source) -> dict[str, tuple[str, list[bytes]]]:
    prefix = os.fsencode(str(source).lstrip("/"))
    return {os.fsdecode(os.path.relpath(path, prefix)): (node.sha256, node.chunks)
            for path, node in Expansion(repo, tree_id).walk() if node.type == FILE}


def _source_tree(repo: Repository, tree_id: bytes, source) -> bytes:
    for name in os.fsencode(str(source)).strip(b"/").split(b"/"):
        tree_id = next(n for n in load_tree(repo, tree_id) if n.name == name).subtree
    return tree_id


@pytest.mark.parametrize("cipher", ["xchacha20-poly1305", "aes-256-gcm"])
def test_worker_processes_store_the_same_snapshot_as_worker_threads(tmp_path, monkeypatch, cipher):
    source = tmp_path / "src"
    contents = _letters(source, 40)
    repo = _repo(cipher)
    monkeypatch.setattr(backup_module, "SMALL_BATCH_FILES", 8)
    started = []
    real_start = BackupEngine._start_processes
    monkeypatch.setattr(BackupEngine, "_start_processes", lambda self: (started.append(1), real_start(self)))

    monkeypatch.setattr(backup_module, "PROCESS_MIN_FILES", 0)  # every batch to a process
    by_processes = run_locked(BackupEngine(repo, BackupOptions(paths=[str(source)])))
    assert started == [1] and not by_processes.warnings
    spools = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
    assert not [n for n in os.listdir(spools) if n.startswith(f"{backup_module.SPOOL_PREFIX}{os.getpid()}-")]
    assert by_processes.files_new == len(contents)

    # Read back with a fresh copy of the repository: what the processes sealed is in the
    # packs and indexes written, and opens with the key.
    reopened = Repository.open(repo.storage, b"phrase")
    reopened.load_index()
    files = _files(reopened, by_processes.snapshot.tree, source)
    assert set(files) == set(contents)
    for name, (sha256, chunks) in files.items():
        assert sha256 == hashlib.sha256(contents[name]).hexdigest()
        assert b"".join(reopened.load_blob(c) for c in chunks) == contents[name]

    monkeypatch.setattr(backup_module, "PROCESS_MIN_FILES", 10**9)  # worker threads only
    before = repo.bytes_added
    by_threads = run_locked(BackupEngine(repo, BackupOptions(paths=[str(source)])))
    assert started == [1]
    # Same tree ids (the folders above the source may have changed meanwhile: pytest's).
    assert _source_tree(repo, by_threads.snapshot.tree, source) == _source_tree(repo, by_processes.snapshot.tree,
                                                                                 source)
    assert repo.bytes_added - before < 4096  # no data blob again: the trees above the source at most


def test_a_few_small_files_start_no_process(tmp_path, monkeypatch):
    source = tmp_path / "src"
    _letters(source, 12)
    monkeypatch.setattr(backup_module, "SMALL_BATCH_FILES", 2)

    def refuse(self):
        raise AssertionError("a process pool was started for a dozen files")

    monkeypatch.setattr(BackupEngine, "_start_processes", refuse)
    report = run_locked(BackupEngine(_repo(), BackupOptions(paths=[str(source)])))
    assert report.files_new == 12 and not report.warnings


def test_an_unreadable_or_swapped_file_is_a_warning_not_a_failure(tmp_path, monkeypatch):
    source = tmp_path / "src"
    contents = _letters(source, 20)
    repo = _repo()
    monkeypatch.setattr(backup_module, "PROCESS_MIN_FILES", 0)
    real_submit = BackupEngine._submit_small_batch

    def swap_then_submit(self):
        # Between the walk and the worker's open: one file replaced by a symbolic link
        # to a file outside the sources, one removed.
        for path in self._batch.paths:
            if path.endswith(b"/l7.txt"):
                os.unlink(path)
                os.symlink(tmp_path / "secret", path)
            if path.endswith(b"/l8.txt"):
                os.unlink(path)
        real_submit(self)

    (tmp_path / "secret").write_bytes(b"not to be read through a link")
    monkeypatch.setattr(BackupEngine, "_submit_small_batch", swap_then_submit)
    report = run_locked(BackupEngine(repo, BackupOptions(paths=[str(source)])))
    warned = sorted(os.path.basename(path) for path, _problem in report.warnings)
    assert warned == ["l7.txt", "l8.txt"]
    files = _files(repo, report.snapshot.tree, source)
    assert set(files) == set(contents) - {"folder2/l7.txt", "folder3/l8.txt"}


def test_the_worker_refuses_links_reports_growth_and_overflows_the_spool_safely(tmp_path):
    repo = _repo()
    letter = tmp_path / "letter.txt"
    letter.write_bytes(b"Bonjour " * 100)
    link = tmp_path / "link.txt"
    link.symlink_to(letter)
    grown = tmp_path / "grown.bin"
    grown.write_bytes(os.urandom(5000))
    fd, spool = tempfile.mkstemp(dir=tmp_path)
    os.ftruncate(fd, 4096)
    os.close(fd)
    paths = [bytes(letter), bytes(link), bytes(grown), bytes(letter)]
    # Room for one sealed letter only: the second copy comes back through the pipe.
    results, parts = seal_small_files(repo.sealer, [os.fsencode(p) for p in paths], [800, 800, 100, 800],
                                      4096, spool, 0, 1000)
    assert isinstance(results[1], OSError)  # O_NOFOLLOW: not the linked file
    assert results[2] == GREW
    assert results[0][0] == hashlib.sha256(b"Bonjour " * 100).hexdigest() and results[0][1] == 800
    assert len(parts) == 2 and len(parts[0]) == 4 and len(parts[1]) == 3
    chunk_id, start, length, raw = parts[0]
    with open(spool, "rb") as handle:
        placed = mmap.mmap(handle.fileno(), 0, prot=mmap.PROT_READ)[start : start + length]
    assert chunk_id == repo.chunk_id(b"Bonjour " * 100) and raw == 800
    # Both parts open with the repository's key as the blob they claim to be.
    repo.store_sealed_blobs(BLOB_DATA, [(chunk_id, placed, raw)])
    repo.flush()
    assert repo.load_blob(chunk_id) == b"Bonjour " * 100


def test_read_small_reads_the_walked_size_and_stops_past_the_limit(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x" * 3000)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert read_small(fd, 10, 4096) == b"x" * 3000  # grew since the walk, still below the limit
        os.lseek(fd, 0, os.SEEK_SET)
        assert read_small(fd, 3000, 2999) is None
    finally:
        os.close(fd)


def test_the_worker_processes_leave_ctrl_c_to_the_backup(tmp_path, monkeypatch):
    source = tmp_path / "src"
    _letters(source, 10)
    monkeypatch.setattr(backup_module, "PROCESS_MIN_FILES", 0)
    seen = []
    real_start = BackupEngine._start_processes

    def start_and_ask(self):
        real_start(self)
        seen.append(self._processes.submit(interrupts_ignored).result())

    monkeypatch.setattr(BackupEngine, "_start_processes", start_and_ask)
    run_locked(BackupEngine(_repo(), BackupOptions(paths=[str(source)])))
    assert seen == [True]


def test_a_killed_backups_spool_is_removed_by_the_next_one_a_live_ones_is_not(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    live = subprocess.Popen(["sleep", "30"])
    try:
        left = tmp_path / f"{backup_module.SPOOL_PREFIX}{dead.pid}-abc"
        running = tmp_path / f"{backup_module.SPOOL_PREFIX}{live.pid}-def"
        other = tmp_path / "backupctl-spool-notapid"
        for path in (left, running, other):
            path.write_bytes(b"x")
        backup_module._remove_dead_spools(str(tmp_path))
        assert not left.exists() and running.exists() and other.exists()
    finally:
        live.kill()
        live.wait()


class _Tally:
    def __init__(self) -> None:
        self.files = self.bytes = 0

    def __getattr__(self, name):
        return lambda *args, **kwargs: None

    def advance(self, *, files: int = 0, bytes_done: int = 0) -> None:
        self.files += files
        self.bytes += bytes_done


@pytest.mark.parametrize("processes", [False, True])
def test_both_batch_paths_count_the_files_read_and_not_the_ones_lost(tmp_path, monkeypatch, processes):
    source = tmp_path / "src"
    contents = _letters(source, 20)
    monkeypatch.setattr(backup_module, "PROCESS_MIN_FILES", 0 if processes else 10**9)
    real_submit = BackupEngine._submit_small_batch

    def lose_one_then_submit(self):
        for path in self._batch.paths:
            if path.endswith(b"/l8.txt"):
                os.unlink(path)  # between the walk and the worker's read
        real_submit(self)

    monkeypatch.setattr(BackupEngine, "_submit_small_batch", lose_one_then_submit)
    tally = _Tally()
    report = run_locked(BackupEngine(_repo(), BackupOptions(paths=[str(source)]), progress=tally))
    assert [os.path.basename(path) for path, _problem in report.warnings] == ["l8.txt"]
    assert tally.files == 19 and tally.bytes == sum(len(d) for k, d in contents.items() if k != "folder3/l8.txt")

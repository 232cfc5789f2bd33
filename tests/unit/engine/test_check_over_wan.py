"""check --read-data over a WAN link: the next pack downloads while one is verified, and
the folder listings it has just verified are not read again, one request per folder."""

from __future__ import annotations

import dataclasses
import os
import threading
import time

from agent.crypto.kdf import KdfParams
from agent.repo.pack import BLOB_DATA
from agent.repo.repository import Repository
from agent.storage.memory import MemoryStorage
from tests.support.locked import run_locked


def _repository(storage) -> Repository:
    repo = Repository.init(storage, b"phrase", cipher="xchacha20-poly1305", compression_level=1,
                           kdf_params=KdfParams(memory_kib=8192, iterations=1))
    repo.config = dataclasses.replace(repo.config, pack_target_size=4096)  # one blob, one pack
    return repo


class SlowReads:
    """A storage whose pack reads take a while, counting how many run at once."""

    def __init__(self) -> None:
        self.inner = MemoryStorage()
        self._lock = threading.Lock()
        self.reading = 0
        self.most_reads = 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def read(self, name: str, **extra) -> bytes:
        if not name.startswith("data/"):
            return self.inner.read(name, **extra)
        with self._lock:
            self.reading += 1
            self.most_reads = max(self.most_reads, self.reading)
        try:
            time.sleep(0.05)
            return self.inner.read(name, **extra)
        finally:
            with self._lock:
                self.reading -= 1


def test_check_read_data_downloads_the_next_pack_while_verifying_one():
    from agent.engine.check import READ_AHEAD, CheckEngine

    storage = SlowReads()
    repo = _repository(storage)
    for _ in range(6):
        repo.store_blob(BLOB_DATA, os.urandom(5000))
    repo.flush()
    report = run_locked(CheckEngine(repo, read_data=True))
    assert report.ok and report.blobs_verified == 6
    assert storage.most_reads == READ_AHEAD == 2


def test_check_read_data_walks_the_folders_from_the_listings_it_verified(tmp_path):
    import socket

    from agent.engine.backup import BackupEngine, BackupOptions
    from agent.engine.check import CheckEngine
    from agent.state.files_cache import FilesCache

    storage = SlowReads()
    storage.ranged = []
    original = storage.inner.read_range
    storage.read_range = lambda name, offset, length: storage.ranged.append(name) or original(name, offset, length)
    repo = Repository.init(storage, b"phrase", cipher="xchacha20-poly1305", compression_level=1,
                           kdf_params=KdfParams(memory_kib=8192, iterations=1))
    source = tmp_path / "src"
    for folder in range(20):
        (source / f"d{folder}").mkdir(parents=True)
        (source / f"d{folder}" / "letter.txt").write_bytes(b"Madame, %d" % folder)
    cache = FilesCache(str(tmp_path / "cache.sqlite"))
    run_locked(BackupEngine(repo, BackupOptions(paths=[str(source)], host=socket.gethostname()), files_cache=cache))
    cache.close()
    storage.ranged.clear()
    report = run_locked(CheckEngine(repo, read_data=True))
    assert report.ok and report.snapshots == 1
    assert storage.ranged == []  # no listing read again, one request per folder (22 before)
    structure = run_locked(CheckEngine(repo))  # without --read-data: read one by one, as before
    assert structure.ok and len(storage.ranged) >= 20

"""Packs upload in the background on a network storage (agent/storage/uploads.py): several
at once while the backup keeps filling packs, and `flush` returns only once every pack
is stored, before the index that lists them is written."""

from __future__ import annotations

import dataclasses
import os
import threading
import time

import pytest

from agent.crypto.kdf import KdfParams
from agent.errors import StorageError
from agent.repo import layout
from agent.repo.pack import BLOB_DATA
from agent.repo.repository import Repository
from agent.storage.memory import MemoryStorage


class SlowNetwork:
    """A storage whose pack writes take a while, counting how many run at once."""

    def __init__(self, slots: int, fail_pack: int | None = None) -> None:
        self.inner = MemoryStorage()
        self.upload_slots = slots
        self.fail_pack = fail_pack
        self.running = 0
        self.most = 0
        self.packs_written = 0
        self.events: list[str] = []
        self._lock = threading.Lock()

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def write(self, name: str, data: bytes, **extra) -> None:
        if not name.startswith("data/"):
            self.events.append(name.split("/")[0])
            return self.inner.write(name, data, **extra)
        with self._lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.packs_written += 1
            number = self.packs_written
        try:
            time.sleep(0.05)
            if number == self.fail_pack:
                raise StorageError("connection lost while writing a pack")
            self.inner.write(name, data, **extra)
            self.events.append("pack")
        finally:
            with self._lock:
                self.running -= 1


def _repository(storage) -> Repository:
    repo = Repository.init(storage, b"phrase", cipher="xchacha20-poly1305", compression_level=1,
                           kdf_params=KdfParams(memory_kib=8192, iterations=1))
    repo.config = dataclasses.replace(repo.config, pack_target_size=4096)  # one blob, one pack
    return repo


def test_packs_upload_several_at_once_and_flush_waits_for_them_before_the_index():
    storage = SlowNetwork(slots=3)
    repo = _repository(storage)
    for _ in range(9):
        repo.store_blob(BLOB_DATA, os.urandom(5000))
    repo.flush()
    assert storage.most == 3  # never more than the slots, and more than one at a time
    assert storage.events.count("pack") == 9
    assert storage.events[-1] == "index"  # the index only after the last pack
    stored = {layout.pack_id_from_name(o.name) for o in storage.inner.list("data/")}
    assert set(repo.index.pack_ids()) == stored


def test_one_slot_writes_inline_as_before():
    storage = SlowNetwork(slots=1)
    repo = _repository(storage)
    for _ in range(3):
        repo.store_blob(BLOB_DATA, os.urandom(5000))
        assert storage.events.count("pack") == storage.packs_written  # done when store_blob returns
    repo.flush()
    assert storage.most == 1


def test_a_failed_background_upload_fails_flush_and_no_index_lists_it():
    storage = SlowNetwork(slots=3, fail_pack=2)
    repo = _repository(storage)
    for _ in range(5):
        repo.store_blob(BLOB_DATA, os.urandom(5000))
    with pytest.raises(StorageError):
        repo.flush()
    assert "index" not in storage.events
    # The other uploads had finished when flush raised: nothing runs on in the background.
    assert len(list(storage.inner.list("data/"))) == 4 and storage.running == 0


class SlowReads(SlowNetwork):
    """Pack reads take a while too; counts how many run at once."""

    def __init__(self) -> None:
        super().__init__(slots=1)
        self.reading = 0
        self.most_reads = 0

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
    report = CheckEngine(repo, read_data=True, take_lock=False).run()
    assert report.ok and report.blobs_verified == 6
    assert storage.most_reads == READ_AHEAD == 2


def test_check_read_data_walks_the_folders_from_the_listings_it_verified(tmp_path):
    import socket

    from agent.engine.backup import BackupEngine, BackupOptions
    from agent.engine.check import CheckEngine
    from agent.engine.files_cache import FilesCache

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
    BackupEngine(repo, BackupOptions(paths=[str(source)], host=socket.gethostname()), files_cache=cache).run()
    cache.close()
    storage.ranged.clear()
    report = CheckEngine(repo, read_data=True, take_lock=False).run()
    assert report.ok and report.snapshots == 1
    assert storage.ranged == []  # no listing read again, one request per folder (22 before)
    structure = CheckEngine(repo, take_lock=False).run()  # without --read-data: read one by one, as before
    assert structure.ok and len(storage.ranged) >= 20

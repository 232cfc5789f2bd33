"""A backup indexes the complete packs that no index lists (left by an interrupted backup),
unless another live lock says a running writer may still index them itself (issue 18, point 5)."""

from __future__ import annotations

import os

from agent.crypto.kdf import KdfParams
from agent.engine.backup import BackupEngine, BackupOptions
from agent.engine.check import CheckEngine
from agent.repo import layout
from agent.repo.lock import RepositoryLock
from agent.repo.repository import Repository
from agent.storage.memory import MemoryStorage
from tests.support.locked import run_locked

FAST = KdfParams(memory_kib=8192, iterations=1, parallelism=1)


def _lose_every_index(storage: MemoryStorage) -> None:
    for info in list(storage.list(layout.INDEX_PREFIX)):
        storage.delete(info.name)


def test_packs_left_unindexed_are_adopted_only_when_no_other_writer_is_live(tmp_path):
    storage = MemoryStorage()
    Repository.init(storage, b"phrase", cipher="xchacha20-poly1305", compression_level=1, kdf_params=FAST)
    source = tmp_path / "src"
    source.mkdir()
    (source / "radio.dcm").write_bytes(os.urandom(3 << 20))
    first = run_locked(BackupEngine(Repository.open(storage, b"phrase"), BackupOptions(paths=[str(source)])))
    assert first.packs_adopted == 0
    for info in list(storage.list(layout.SNAPSHOTS_PREFIX)):
        storage.delete(info.name)  # as if the backup had been killed before its index and snapshot
    _lose_every_index(storage)
    assert run_locked(CheckEngine(Repository.open(storage, b"phrase"))).unindexed_packs >= 1

    # Another backup is live (its lock is fresh): the packs may be its own, not touched.
    other = RepositoryLock(Repository.open(storage, b"phrase"), "backup").acquire()
    try:
        busy = run_locked(BackupEngine(Repository.open(storage, b"phrase"), BackupOptions(paths=[str(source)])))
    finally:
        other.release()
    assert busy.packs_adopted == 0
    _lose_every_index(storage)  # the busy backup indexed its own new packs: forget them too
    for info in list(storage.list(layout.SNAPSHOTS_PREFIX)):
        storage.delete(info.name)

    alone = run_locked(BackupEngine(Repository.open(storage, b"phrase"), BackupOptions(paths=[str(source)])))
    assert alone.packs_adopted >= 2 and alone.bytes_added < 64 * 1024, alone.as_dict()  # all reused
    report = run_locked(CheckEngine(Repository.open(storage, b"phrase")))
    assert report.ok and report.unindexed_packs == 0 and report.warnings == []

"""agent.engine.restore_files over a network store: requests counted, not timed.

Neighbouring blobs of a pack come in one ranged read; as many reads are in flight as the
store allows (S3's max_concurrency), so a long fat link is kept full while the threads
that already have their bytes decrypt and write them."""

from __future__ import annotations

import hashlib
import os
import threading

import pytest

import agent.engine.restore_files as restore_files
from agent.crypto.kdf import KdfParams
from agent.engine.progress import SilentProgress
from agent.engine.restore_files import ContentRestorer, FileTarget
from agent.engine.target import TargetTree
from agent.repo.pack import BLOB_DATA
from agent.repo.repository import Repository
from agent.repo.tree import FILE, Node
from agent.storage.memory import MemoryStorage


class CountingStore(MemoryStorage):
    """A remote store (a NetworkStorage, agent/storage/base.py) that counts its ranged reads, and
    how many were in flight at once: each read waits (up to a second) for others."""

    def __init__(self, max_concurrency: int) -> None:
        super().__init__()
        self.max_concurrency = max_concurrency
        self.ranges: list[tuple[str, int, int]] = []
        self.in_flight = self.most_in_flight = 0
        self._lock = threading.Condition()
        self.hold = False

    def read_range(self, name: str, offset: int, length: int) -> bytes:
        with self._lock:
            self.ranges.append((name, offset, length))
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            self._lock.notify_all()
            if self.hold:  # wait until the others arrive, as on a link with a long round trip
                self._lock.wait_for(lambda: self.in_flight >= self.max_concurrency, timeout=1)
        try:
            return super().read_range(name, offset, length)
        finally:
            with self._lock:
                self.in_flight -= 1


def _repo(store: CountingStore) -> Repository:
    return Repository.init(store, b"phrase", cipher="xchacha20-poly1305", compression_level=3,
                           kdf_params=KdfParams(memory_kib=8192, iterations=1))


def _letters(repo: Repository, count: int) -> list[tuple[FileTarget, bytes]]:
    files = []
    for i in range(count):
        content = os.urandom(3000)  # incompressible: each blob about 3 KiB in the pack
        chunk, _ = repo.store_blob(BLOB_DATA, content)
        node = Node(name=b"x", type=FILE, mode=0o640, uid=os.getuid(), gid=os.getgid(), mtime_ns=10**18,
                    size=len(content), chunks=[chunk], sha256=hashlib.sha256(content).hexdigest())
        files.append((FileTarget(f"l{i:03d}".encode(), node), content))
    repo.flush()
    repo.load_index()
    return files


def _restore(repo: Repository, files, target) -> ContentRestorer:
    with TargetTree(os.fsencode(target), overwrite=False) as tree:
        restorer = ContentRestorer(repo, tree=tree, progress=SilentProgress(), same_owner=False, processes=True)
        restorer.run([f for f, _ in files])
    assert restorer.failures == [] and restorer.verified == len(files)
    for file, content in files:
        assert (target / os.fsdecode(file.rel)).read_bytes() == content
    return restorer


def test_neighbouring_blobs_of_a_pack_come_in_one_ranged_read(tmp_path):
    store = CountingStore(max_concurrency=8)
    repo = _repo(store)
    files = _letters(repo, 100)  # one pack, 100 neighbouring blobs, about 300 KB
    store.ranges.clear()
    _restore(repo, files, tmp_path / "t")
    assert len(store.ranges) == 1


def test_one_pack_read_by_several_requests_in_flight_at_once(tmp_path, monkeypatch):
    """64 blobs in 16 ranges of 4 (the range's cap lowered for the test): 8 reads in
    flight, the store's max_concurrency, not one after the other; and threads, not
    processes (a forked S3 client is not safe)."""
    monkeypatch.setattr(restore_files, "MAX_RANGE_BLOBS", 4)
    store = CountingStore(max_concurrency=8)
    repo = _repo(store)
    files = _letters(repo, 64)
    store.ranges.clear()
    store.hold = True
    restorer = _restore(repo, files, tmp_path / "t")
    assert len(store.ranges) == 16
    assert store.most_in_flight == 8
    assert restorer._use_processes is False and restorer.workers == 8


@pytest.mark.parametrize("concurrency", [1, 16])
def test_threads_follow_the_stores_max_concurrency(tmp_path, concurrency):
    repo = _repo(CountingStore(max_concurrency=concurrency))
    assert restore_files.restore_workers(repo) == max(os.cpu_count() or 2, concurrency)


def test_a_snapshots_listings_are_read_a_level_at_a_time(tmp_path):
    """A root and 30 folders of one file each: two ranged reads for the listings (the
    root, then its 30 folders, neighbours in one tree pack), not one per folder; the
    restore then reads the 30 one-chunk files' blobs in one."""
    import datetime as dt

    from agent.engine.restore import RestoreEngine
    from agent.repo.pack import BLOB_TREE
    from agent.repo.snapshot import Snapshot
    from agent.repo.tree import DIR, encode_tree

    store = CountingStore(max_concurrency=4)
    repo = _repo(store)
    folders, expected = [], {}
    for i, (file, content) in enumerate(_letters(repo, 30)):
        file.node.name = b"letter.txt"
        subtree, _ = repo.store_blob(BLOB_TREE, encode_tree([file.node]))
        folders.append(Node(name=f"d{i:02d}".encode(), type=DIR, mode=0o755, uid=os.getuid(), gid=os.getgid(),
                            mtime_ns=10**18, subtree=subtree))
        expected[f"d{i:02d}/letter.txt"] = content
    root, _ = repo.store_blob(BLOB_TREE, encode_tree(folders))
    repo.flush()
    snapshot = Snapshot(time=dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc), host="h", user="u", paths=["/"],
                        tree=root)
    snapshot.id = repo.save_snapshot(snapshot)
    store.ranges.clear()
    report = RestoreEngine(repo, snapshot, str(tmp_path / "t")).run()
    assert report.verified == 30 and report.failures == []
    for rel, content in expected.items():
        assert (tmp_path / "t" / rel).read_bytes() == content
    assert len(store.ranges) == 3

"""Repository.load_blobs: neighbours in one ranged read, each blob checked, a damaged one
reported as its own error while the others are returned."""

from __future__ import annotations

from agent.crypto.kdf import KdfParams
from agent.errors import IntegrityError
from agent.repo import layout
from agent.repo.pack import BLOB_TREE
from agent.repo.repository import Repository
from agent.storage.memory import MemoryStorage


class Counting(MemoryStorage):
    def __init__(self) -> None:
        super().__init__()
        self.ranges = 0

    def read_range(self, name: str, offset: int, length: int) -> bytes:
        self.ranges += 1
        return super().read_range(name, offset, length)


def _repo() -> tuple[Repository, Counting]:
    store = Counting()
    return Repository.init(store, b"phrase", cipher="xchacha20-poly1305", compression_level=3,
                           kdf_params=KdfParams(memory_kib=8192, iterations=1)), store


def test_neighbours_come_in_one_read_and_a_damaged_blob_is_its_own_error():
    repo, store = _repo()
    # Tree documents as a version-5 repository stores them (its trees say their version).
    contents = [b'{"version":5,"nodes":[],"listing":"%s"}' % (b"listing %d" % i * 20) for i in range(10)]
    ids = [repo.store_blob(BLOB_TREE, content)[0] for content in contents]
    repo.flush()
    store.ranges = 0
    assert repo.load_blobs(ids) == dict(zip(ids, contents, strict=True))
    assert store.ranges == 1
    location = repo.locate(ids[4])
    name = layout.pack_name(location.pack_id)
    data = bytearray(store.read(name))
    data[location.offset + location.length // 2] ^= 1
    store.write(name, bytes(data))
    loaded = repo.load_blobs(ids)
    assert isinstance(loaded[ids[4]], IntegrityError)
    expected = {i: c for i, c in zip(ids, contents, strict=True) if i != ids[4]}
    assert {i: loaded[i] for i in ids if i != ids[4]} == expected


def _three_listings(repo: Repository) -> list[bytes]:
    contents = [b'{"version":5,"nodes":[],"listing":"%s"}' % (b"folder %d " % i * 400) for i in range(3)]
    ids = [repo.store_blob(BLOB_TREE, content)[0] for content in contents]
    repo.flush()
    return ids


def test_blobs_apart_by_exactly_the_gap_come_in_one_read(monkeypatch):
    """The first and third listings, the second (not asked for) between them: apart by
    exactly NEAR_BLOBS_GAP they are still neighbours; one byte further, two reads."""
    from agent.repo import repository as repository_module

    repo, store = _repo()
    first, middle, last = _three_listings(repo)
    gap = repo.locate(middle).length
    assert repo.locate(last).offset - (repo.locate(first).offset + repo.locate(first).length) == gap
    monkeypatch.setattr(repository_module, "NEAR_BLOBS_GAP", gap)
    store.ranges = 0
    repo.load_blobs([first, last])
    assert store.ranges == 1
    monkeypatch.setattr(repository_module, "NEAR_BLOBS_GAP", gap - 1)
    store.ranges = 0
    repo.load_blobs([first, last])
    assert store.ranges == 2


def test_large_neighbours_touching_each_other_come_in_one_read(monkeypatch):
    """Neighbours with no gap at all are one read however long each is (within the range)."""
    from agent.repo import repository as repository_module

    repo, store = _repo()
    ids = _three_listings(repo)
    monkeypatch.setattr(repository_module, "NEAR_BLOBS_GAP", 100)  # less than twice a listing's length
    store.ranges = 0
    repo.load_blobs(ids)
    assert store.ranges == 1

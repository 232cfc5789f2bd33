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

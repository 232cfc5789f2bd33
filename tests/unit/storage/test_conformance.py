"""The Storage contract of agent/storage/base.py, checked against every backend.

To add a backend (S3 against a test bucket ...), add one entry to BACKENDS: a function
taking pytest's tmp_path and returning a fresh, empty Storage. Nothing else here is
backend-specific.
"""

from __future__ import annotations

import io
import os
import uuid

import pytest

from agent.errors import ForeignObject, ObjectExists, ObjectNotFound, StorageError, TransientStorageError
from agent.storage.base import ObjectInfo, Storage
from agent.storage.local import LocalStorage
from agent.storage.memory import MemoryStorage
from agent.storage.retry import RetryingStorage
from agent.storage import open_storage
from agent.storage.options import S3Options
from agent.storage.throttle import ThrottledStorage
from tests.support import s3server


def _local(tmp_path) -> Storage:
    return LocalStorage(str(tmp_path / "repo"))


def _memory(tmp_path) -> Storage:
    return MemoryStorage()


def _wrapped(tmp_path) -> Storage:
    """The wrappers open_storage puts around network backends must keep the contract too."""
    return RetryingStorage(ThrottledStorage(MemoryStorage(), max_concurrency=2), attempts=2)


def _s3(tmp_path, endpoint, monkeypatch) -> Storage:
    """S3 as the agent opens it (with its retry and throttle wrappers), on a real S3 server.
    The credentials are in the environment for this test only (monkeypatch undoes it): left
    there, every later test's child processes would inherit them."""
    for name, value in endpoint.env().items():
        monkeypatch.setenv(name, value)
    prefix = "conformance-" + uuid.uuid4().hex[:10]
    options = S3Options(bucket=endpoint.plain_bucket, prefix=prefix, endpoint=endpoint.url,
                        region=endpoint.region, addressing="path")
    return open_storage(f"s3://{endpoint.plain_bucket}/{prefix}", s3=options)


BACKENDS = {"local": _local, "memory": _memory, "memory+throttle+retry": _wrapped, "s3": _s3}


@pytest.fixture(scope="session")
def s3_endpoint():
    endpoint = s3server.start()
    yield endpoint
    s3server.stop(endpoint)

PACK = "data/ab/abcd"
OTHER_PACK = "data/ac/acde"
SNAPSHOT = "snapshots/1234"


@pytest.fixture(params=sorted(BACKENDS))
def storage(request, tmp_path) -> Storage:
    if request.param == "s3":
        return _s3(tmp_path, request.getfixturevalue("s3_endpoint"), request.getfixturevalue("monkeypatch"))
    return BACKENDS[request.param](tmp_path)


def _names(storage: Storage, prefix: str) -> set[str]:
    return {info.name for info in storage.list(prefix)}


# ---- write / read -------------------------------------------------------------------


def test_describe_is_a_non_empty_string(storage):
    assert isinstance(storage.describe(), str) and storage.describe()


def test_write_then_read(storage):
    storage.write("config", b"hello")
    assert storage.read("config") == b"hello"
    assert storage.exists("config")


@pytest.mark.parametrize("size", [0, 1, 4096, 1 << 20])
def test_round_trip_sizes(storage, size):
    data = os.urandom(size)
    storage.write(PACK, data)
    assert storage.read(PACK) == data
    assert storage.stat(PACK) == ObjectInfo(PACK, size)


def test_read_with_max_size_refuses_a_larger_object_naming_it(storage):
    """An object larger than its kind allows (a planted junk index file, key file) is
    refused by every backend, with its name, and is not returned (docs/SECURITY.md 4)."""
    data = os.urandom(64 * 1024)
    storage.write(SNAPSHOT, data)
    assert storage.read(SNAPSHOT, max_size=len(data)) == data
    with pytest.raises(ForeignObject, match=f"object {SNAPSHOT} .*{len(data)} bytes, more than any such object"):
        storage.read(SNAPSHOT, max_size=len(data) - 1)
    with pytest.raises(ObjectNotFound):
        storage.read("snapshots/absent", max_size=10)


def test_write_accepts_bytes_like(storage):
    storage.write("config", bytearray(b"abc"))
    storage.write("keys/k", memoryview(b"defg"))
    assert storage.read("config") == b"abc"
    assert storage.read("keys/k") == b"defg"


def test_read_returns_bytes_not_a_view_of_internal_state(storage):
    source = bytearray(b"original")
    storage.write("config", source)
    source[:] = b"mutated!"
    assert storage.read("config") == b"original"


def test_nested_names(storage):
    storage.write("data/ab/abcd", b"pack")
    storage.write("data/ab/abce", b"pack2")
    assert storage.read("data/ab/abcd") == b"pack"
    assert storage.read("data/ab/abce") == b"pack2"
    assert storage.exists("data/ab/abcd")
    assert not storage.exists("data/ab/abcf")


def test_overwrite_with_same_bytes_succeeds(storage):
    storage.write(PACK, b"same bytes")
    storage.write(PACK, b"same bytes")
    assert storage.read(PACK) == b"same bytes"
    assert _names(storage, "data/") == {PACK}


def test_non_exclusive_overwrite_replaces(storage):
    storage.write("index/01", b"old")
    storage.write("index/01", b"new content")
    assert storage.read("index/01") == b"new content"
    assert storage.stat("index/01").size == len(b"new content")


def test_exclusive_write_creates(storage):
    storage.write("config", b"first", exclusive=True)
    assert storage.read("config") == b"first"


def _retries(storage: Storage) -> int:
    return storage.retries if isinstance(storage, RetryingStorage) else 0


def test_exclusive_write_refuses_existing_object(storage):
    storage.write("config", b"first", exclusive=True)
    with pytest.raises(ObjectExists):
        storage.write("config", b"second", exclusive=True)
    with pytest.raises(ObjectExists):
        storage.write("config", b"first", exclusive=True)
    assert _retries(storage) == 0  # a permanent answer: never repeated
    assert storage.read("config") == b"first"
    assert _names(storage, "") == {"config"}


def test_exclusive_write_refuses_object_written_non_exclusively(storage):
    storage.write("keys/k1", b"a")
    with pytest.raises(ObjectExists):
        storage.write("keys/k1", b"b", exclusive=True, random_name=True)
    assert _retries(storage) == 0
    assert storage.read("keys/k1") == b"a"


def test_every_backend_takes_the_write_options(storage):
    """What the repository says of an object (agent/storage/base.py) changes nothing of the
    contract: the bytes are stored, listed and deleted as any."""
    storage.write("snapshots/ab", b"s", exclusive=True, random_name=True)
    storage.write("locks/cd", b"l", ephemeral=True)
    assert storage.read("snapshots/ab") == b"s" and storage.read("locks/cd") == b"l"
    storage.delete("locks/cd", ephemeral=True)
    assert _names(storage, "") == {"snapshots/ab"}


# ---- read_range -----------------------------------------------------------------------


def test_read_range(storage):
    data = bytes(range(256)) * 4
    storage.write(PACK, data)
    assert storage.read_range(PACK, 0, 10) == data[:10]
    assert storage.read_range(PACK, 100, 50) == data[100:150]
    assert storage.read_range(PACK, len(data) - 7, 7) == data[-7:]
    assert storage.read_range(PACK, 0, len(data)) == data
    assert storage.read_range(PACK, 5, 0) == b""


@pytest.mark.parametrize("offset, length", [(0, 1025), (1000, 25), (1024, 1), (5000, 10)])
def test_read_range_past_end_raises(storage, offset, length):
    storage.write(PACK, b"x" * 1024)
    with pytest.raises(StorageError):
        storage.read_range(PACK, offset, length)


# ---- missing objects -----------------------------------------------------------------


def test_missing_object(storage):
    storage.write("config", b"c")
    assert not storage.exists("snapshots/0000")
    with pytest.raises(ObjectNotFound):
        storage.read("snapshots/0000")
    with pytest.raises(ObjectNotFound):
        storage.read_range("snapshots/0000", 0, 1)
    with pytest.raises(ObjectNotFound):
        storage.stat("snapshots/0000")
    with pytest.raises(ObjectNotFound):
        storage.delete("snapshots/0000")


def test_missing_object_in_a_missing_directory(storage):
    with pytest.raises(ObjectNotFound):
        storage.read("data/ff/ffff")
    with pytest.raises(ObjectNotFound):
        storage.read_range("data/ff/ffff", 0, 1)
    with pytest.raises(ObjectNotFound):
        storage.stat("data/ff/ffff")
    with pytest.raises(ObjectNotFound):
        storage.delete("data/ff/ffff")


def test_object_not_found_is_a_storage_error():
    assert issubclass(ObjectNotFound, StorageError)


def test_a_prefix_of_other_objects_is_not_an_object(storage):
    """'data' and 'data/ab' are not objects even though 'data/ab/abcd' is (S3 semantics)."""
    storage.write(PACK, b"pack")
    for name in ("data", "data/ab"):
        assert not storage.exists(name)
        with pytest.raises(ObjectNotFound):
            storage.read(name)
        with pytest.raises(ObjectNotFound):
            storage.stat(name)
        with pytest.raises(ObjectNotFound):
            storage.delete(name)
    assert storage.read(PACK) == b"pack"


# ---- delete --------------------------------------------------------------------------------


def test_delete(storage):
    storage.write(PACK, b"p")
    storage.write(OTHER_PACK, b"q")
    storage.delete(PACK)
    assert not storage.exists(PACK)
    with pytest.raises(ObjectNotFound):
        storage.read(PACK)
    with pytest.raises(ObjectNotFound):
        storage.delete(PACK)
    assert _names(storage, "data/") == {OTHER_PACK}
    assert storage.read(OTHER_PACK) == b"q"


def test_exclusive_write_after_delete(storage):
    storage.write("config", b"a", exclusive=True)
    storage.delete("config")
    storage.write("config", b"b", exclusive=True)
    assert storage.read("config") == b"b"


# ---- list ------------------------------------------------------------------------------------


@pytest.fixture
def populated(storage) -> Storage:
    storage.write("config", b"c")
    storage.write("keys/0a0b", b"key")
    storage.write(PACK, b"pack-1")
    storage.write(OTHER_PACK, b"pack-22")
    storage.write("index/0001", b"i")
    storage.write(SNAPSHOT, b"snap")
    return storage


def test_list_empty_storage(storage):
    assert list(storage.list("")) == []
    assert list(storage.list("data/")) == []


def test_list_everything(populated):
    assert sorted(populated.list(""), key=lambda i: i.name) == [
        ObjectInfo("config", 1),
        ObjectInfo(PACK, 6),
        ObjectInfo(OTHER_PACK, 7),
        ObjectInfo("index/0001", 1),
        ObjectInfo("keys/0a0b", 3),
        ObjectInfo(SNAPSHOT, 4),
    ]


def test_list_directory_prefixes(populated):
    assert _names(populated, "data/") == {PACK, OTHER_PACK}
    assert _names(populated, "data/ab/") == {PACK}
    assert _names(populated, "keys/") == {"keys/0a0b"}
    assert _names(populated, "snapshots/") == {SNAPSHOT}
    assert _names(populated, "nothing/") == set()


def test_list_sizes_match_stat(populated):
    for info in populated.list(""):
        assert populated.stat(info.name) == info
        assert len(populated.read(info.name)) == info.size


def test_list_prefix_is_a_string_prefix_not_a_directory(populated):
    """Contract: every object whose *name starts with* prefix (as S3's ListObjectsV2)."""
    assert _names(populated, "data/a") == {PACK, OTHER_PACK}
    assert _names(populated, "data/ab/ab") == {PACK}
    assert _names(populated, "snapshots/12") == {SNAPSHOT}
    assert _names(populated, "snap") == {SNAPSHOT}
    assert _names(populated, "conf") == {"config"}
    assert _names(populated, "config") == {"config"}
    assert _names(populated, "data/ab/abcd") == {PACK}
    assert _names(populated, "data/ab/abcde") == set()


def test_list_after_delete_and_overwrite(populated):
    populated.delete(PACK)
    populated.write(OTHER_PACK, b"x")
    assert {i.name: i.size for i in populated.list("data/")} == {OTHER_PACK: 1}


def test_list_is_lazy_safe_to_consume_while_deleting(populated):
    """Prune deletes while iterating; the listing must not blow up."""
    for info in populated.list("data/"):
        populated.delete(info.name)
    assert _names(populated, "data/") == set()


def test_s3_read_catches_a_whole_object_altered_in_transit(tmp_path, s3_endpoint, monkeypatch):
    """S3 only: a whole-object read is checked against the SHA-256 stored with the object, so
    one byte flipped on the wire (a bad proxy) is a transient error, read again, never bytes
    handed up as if stored: a key file altered so would have looked malformed, and with key
    files read once (docs/SECURITY.md 4) nothing else would have caught it."""
    storage = _s3(tmp_path, s3_endpoint, monkeypatch)
    backend = storage.inner.inner  # RetryingStorage(ThrottledStorage(S3Storage))
    storage.write("keys/k", b'{"version": 1}')
    real_get = backend.client.get_object
    flips = []

    def altered_once(**kwargs):
        response = real_get(**kwargs)
        if not flips:
            body = bytearray(response["Body"].read())
            body[3] ^= 0x40
            flips.append(1)
            response["Body"] = io.BytesIO(bytes(body))
        return response

    monkeypatch.setattr(backend.client, "get_object", altered_once)
    with pytest.raises(TransientStorageError, match="keys/k was altered in transit"):
        backend.read("keys/k", max_size=100)
    flips.clear()
    storage.retries = 0
    assert storage.read("keys/k", max_size=100) == b'{"version": 1}'  # retried, then right
    assert storage.retries == 1

"""agent.repo.repository: init/open, blob storage, write order, and what the AAD binds."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from agent.crypto import aead
from agent.crypto.kdf import KdfParams
from agent.errors import (
    IntegrityError,
    KeyFileError,
    RepositoryExists,
    RepositoryNotFound,
    WrongPassphrase,
)
from agent.repo import layout
from agent.repo.pack import BLOB_DATA, BLOB_TREE, padded_length
from agent.repo.tree import encode_tree
from agent.repo.repository import PACKS_PER_INDEX, Repository, StoredConfig
from agent.repo.snapshot import Snapshot
from agent.storage.memory import MemoryStorage

FAST = KdfParams(memory_kib=8192, iterations=1)
PASSPHRASE = b"Cabinet medical - phrase de passe 2026"
CIPHERS = ("xchacha20-poly1305", "aes-256-gcm")
TEXT = ("Compte rendu de consultation, patient suivi pour hypertension. " * 100).encode()


class RecordingStorage(MemoryStorage):
    """A MemoryStorage that remembers the order of writes."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, name: str, data: bytes, **options: bool) -> None:
        super().write(name, data, **options)
        self.writes.append(name)


@pytest.fixture(params=CIPHERS)
def cipher(request) -> str:
    return request.param


# Every test runs on the current layout (5) and on the older ones (3 and 4), which older
# repositories keep being read and written with.
@pytest.fixture(params=(3, 4, 5), ids=("v3", "v4", "v5"))
def format_version(request) -> int:
    return request.param


@pytest.fixture
def storage() -> RecordingStorage:
    return RecordingStorage()


@pytest.fixture
def repo(storage, cipher, format_version) -> Repository:
    return Repository.init(storage, PASSPHRASE, cipher=cipher, compression_level=3, kdf_params=FAST,
                           format_version=format_version)


def _reopen(repo: Repository) -> Repository:
    fresh = Repository.open(repo.storage, PASSPHRASE)
    fresh.load_index()
    return fresh


def _snapshot(tree: bytes) -> Snapshot:
    return Snapshot(time=dt.datetime(2026, 11, 2, 20, 0, tzinfo=dt.timezone.utc), host="cabinet", user="root",
                    paths=["/srv/cabinet"], tree=tree)


def _names(storage, prefix: str) -> list[str]:
    return sorted(i.name for i in storage.list(prefix))


# ---- init / open -----------------------------------------------------------------------


def test_init_writes_one_key_file_and_a_config(repo, storage, cipher):
    assert storage.writes[-1] == layout.CONFIG
    keys = _names(storage, layout.KEYS_PREFIX)
    assert len(keys) == 1
    assert storage.writes == [keys[0], layout.CONFIG]
    assert aead.envelope_cipher(storage.read(layout.CONFIG)) == cipher
    # The key file is JSON that names its repository; the config is not readable JSON.
    assert json.loads(storage.read(keys[0]))["repository_id"] == repo.config.repository_id.hex()
    with pytest.raises(ValueError):
        json.loads(storage.read(layout.CONFIG))


def test_open_with_right_passphrase(repo, storage, cipher):
    opened = Repository.open(storage, PASSPHRASE)
    assert opened.master == repo.master
    assert opened.config.repository_id == repo.config.repository_id
    assert opened.config.cipher == cipher
    assert opened.config.compression_level == 3
    assert opened.config.chunker == repo.config.chunker
    assert opened.config.created == repo.config.created


@pytest.mark.parametrize("wrong", [b"", b"cabinet medical - phrase de passe 2026", PASSPHRASE + b"\n"])
def test_open_with_wrong_passphrase(repo, storage, wrong):
    with pytest.raises(WrongPassphrase):
        Repository.open(storage, wrong)


def test_init_twice_is_refused_and_changes_nothing(repo, storage, cipher):
    before = dict(storage.objects)
    with pytest.raises(RepositoryExists):
        Repository.init(storage, b"another", cipher=cipher, compression_level=3, kdf_params=FAST)
    assert storage.objects == before
    assert Repository.open(storage, PASSPHRASE).master == repo.master


def test_init_refused_when_only_a_key_file_exists(repo, storage, cipher):
    storage.delete(layout.CONFIG)
    with pytest.raises(RepositoryExists):
        Repository.init(storage, PASSPHRASE, cipher=cipher, compression_level=3, kdf_params=FAST)


def test_init_refused_when_only_a_config_exists(repo, storage, cipher):
    for name in _names(storage, layout.KEYS_PREFIX):
        storage.delete(name)
    with pytest.raises(RepositoryExists):
        Repository.init(storage, PASSPHRASE, cipher=cipher, compression_level=3, kdf_params=FAST)


def test_open_empty_storage_is_repository_not_found():
    with pytest.raises(RepositoryNotFound):
        Repository.open(MemoryStorage(), PASSPHRASE)


def test_open_storage_with_unrelated_objects_is_repository_not_found():
    storage = MemoryStorage()
    storage.write("photos/vacances.jpg", b"\xff\xd8")
    with pytest.raises(RepositoryNotFound):
        Repository.open(storage, PASSPHRASE)


def test_open_with_keys_but_no_config_is_an_integrity_error(repo, storage):
    storage.delete(layout.CONFIG)
    with pytest.raises(IntegrityError):
        Repository.open(storage, PASSPHRASE)


def test_tampered_config_is_an_integrity_error(repo, storage):
    raw = bytearray(storage.read(layout.CONFIG))
    raw[40] ^= 1
    storage.write(layout.CONFIG, bytes(raw))
    with pytest.raises(IntegrityError):
        Repository.open(storage, PASSPHRASE)


def test_config_of_another_repository_is_rejected(repo, storage, cipher):
    other_storage = MemoryStorage()
    Repository.init(other_storage, PASSPHRASE, cipher=cipher, compression_level=3, kdf_params=FAST)
    storage.write(layout.CONFIG, other_storage.read(layout.CONFIG))
    with pytest.raises(IntegrityError):
        Repository.open(storage, PASSPHRASE)


def test_key_file_under_a_foreign_name_is_refused(repo, storage):
    [name] = _names(storage, layout.KEYS_PREFIX)
    storage.write(layout.key_name(b"\x00" * 16), storage.read(name))
    storage.delete(name)
    with pytest.raises(KeyFileError):
        Repository.open(storage, PASSPHRASE)


def test_malformed_key_file_alone_is_a_key_file_error(repo, storage):
    [name] = _names(storage, layout.KEYS_PREFIX)
    storage.write(name, b"{not json")
    with pytest.raises(KeyFileError):
        Repository.open(storage, PASSPHRASE)


def test_a_malformed_key_file_does_not_hide_a_good_one(repo, storage):
    storage.write(layout.key_name(b"\x00" * 16), b"{not json")  # sorts first
    assert Repository.open(storage, PASSPHRASE).master == repo.master


def test_each_repository_has_its_own_ids_and_keys(cipher):
    a = Repository.init(MemoryStorage(), PASSPHRASE, cipher=cipher, compression_level=3, kdf_params=FAST)
    b = Repository.init(MemoryStorage(), PASSPHRASE, cipher=cipher, compression_level=3, kdf_params=FAST)
    assert a.config.repository_id != b.config.repository_id
    assert a.master != b.master
    assert a.chunk_id(TEXT) != b.chunk_id(TEXT)


# ---- storing blobs ---------------------------------------------------------------------------


def test_store_blob_dedups(repo):
    chunk_id, added = repo.store_blob(BLOB_DATA, TEXT)
    assert chunk_id == repo.chunk_id(TEXT)
    assert added > 0
    assert repo.has_blob(chunk_id)
    assert repo.store_blob(BLOB_DATA, TEXT) == (chunk_id, 0)
    repo.flush()
    assert repo.store_blob(BLOB_DATA, TEXT) == (chunk_id, 0)


def test_store_blob_dedups_across_sessions(repo, storage):
    chunk_id, _ = repo.store_blob(BLOB_DATA, TEXT)
    repo.flush()
    packs_before = _names(storage, layout.DATA_PREFIX)
    again = _reopen(repo)
    assert again.store_blob(BLOB_DATA, TEXT) == (chunk_id, 0)
    again.flush()
    assert _names(storage, layout.DATA_PREFIX) == packs_before


def test_store_blob_compresses_when_enabled(repo):
    _id, added = repo.store_blob(BLOB_DATA, TEXT)
    assert added < len(TEXT) // 4


def test_store_blob_without_compression(storage, cipher, format_version):
    repo = Repository.init(storage, PASSPHRASE, cipher=cipher, compression_level=None, kdf_params=FAST,
                           format_version=format_version)
    chunk_id, added = repo.store_blob(BLOB_DATA, TEXT)
    if format_version >= 4:  # padded, without the two clear bytes
        assert added == padded_length(4 + len(TEXT) + 1) + aead.OVERHEAD - 2
    else:
        assert added == len(TEXT) + 1 + aead.OVERHEAD
    repo.flush()
    assert _reopen(repo).load_blob(chunk_id) == TEXT


def test_concurrent_stores_of_one_chunk_store_it_once(repo):
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: repo.store_blob(BLOB_DATA, TEXT), range(64)))
    assert len({chunk_id for chunk_id, _ in results}) == 1
    assert sum(1 for _, added in results if added) == 1
    repo.flush()
    [pack_id] = list(repo.index.pack_ids())
    assert len(repo.index.packs()[pack_id]) == 1


def test_flush_writes_packs_then_an_index(repo, storage):
    storage.writes.clear()
    data_id, _ = repo.store_blob(BLOB_DATA, TEXT)
    tree_id, _ = repo.store_blob(BLOB_TREE, b'{"nodes":[]}')
    assert storage.writes == []  # nothing written before flush (packs are far from full)
    repo.flush()
    kinds = [name.split("/")[0] for name in storage.writes]
    assert kinds == ["data", "data", "index"]  # data and tree blobs go to separate packs
    [index_name] = [n for n in storage.writes if n.startswith(layout.INDEX_PREFIX)]
    packs, superseded = repo.read_index_file(layout.index_id_from_name(index_name))
    assert superseded == []
    assert {layout.pack_name(p) for p in packs} == {n for n in storage.writes if n.startswith("data/")}
    assert {e.chunk_id for entries in packs.values() for e in entries} == {data_id, tree_id}


def test_flush_with_nothing_pending_writes_nothing(repo, storage):
    storage.writes.clear()
    repo.flush()
    assert storage.writes == []


def test_packs_are_named_by_their_sha256_and_self_describing(repo, storage, cipher):
    blobs = {repo.store_blob(BLOB_DATA, bytes([n]) * 1000)[0]: bytes([n]) * 1000 for n in range(5)}
    repo.flush()
    [pack_id] = list(repo.index.pack_ids())
    data, entries = repo.read_pack(pack_id)
    assert data == storage.read(layout.pack_name(pack_id))
    assert {e.chunk_id for e in entries} == set(blobs)
    for entry in entries:
        envelope = data[entry.offset : entry.offset + entry.length]
        if repo.config.format_version < 4:
            assert aead.envelope_cipher(envelope) == cipher
        plain = repo.decode_blob(entry.chunk_id, entry.kind, envelope, entry.raw_length, pack_name="p")
        assert plain == blobs[entry.chunk_id]


def test_read_pack_detects_a_changed_byte(repo, storage):
    repo.store_blob(BLOB_DATA, TEXT)
    repo.flush()
    [pack_id] = list(repo.index.pack_ids())
    name = layout.pack_name(pack_id)
    raw = bytearray(storage.read(name))
    raw[10] ^= 1
    storage.write(name, bytes(raw))
    with pytest.raises(IntegrityError):
        repo.read_pack(pack_id)


def test_an_index_is_written_every_few_packs(storage, cipher, format_version):
    """An interrupted backup loses at most PACKS_PER_INDEX packs of indexing."""
    repo = Repository.init(storage, PASSPHRASE, cipher=cipher, compression_level=None, kdf_params=FAST,
                           format_version=format_version)
    small = Repository(storage, repo.master, StoredConfig(
        repo.config.repository_id, cipher, None, repo.config.chunker, repo.config.created, pack_target_size=1000,
        format_version=format_version))
    stored = [small.store_blob(BLOB_DATA, os.urandom(1000))[0] for _ in range(PACKS_PER_INDEX + 1)]
    # no flush: the process "dies" here
    assert len(_names(storage, layout.DATA_PREFIX)) == PACKS_PER_INDEX + 1
    assert len(_names(storage, layout.INDEX_PREFIX)) == 1
    survivor = _reopen(repo)
    assert sum(survivor.has_blob(i) for i in stored) == PACKS_PER_INDEX


# ---- reading blobs -----------------------------------------------------------------------------


def test_load_blob_round_trip_after_reopen(repo):
    payloads = {BLOB_DATA: [TEXT, b"", os.urandom(5000)], BLOB_TREE: [encode_tree([], repo.config.format_version)]}
    stored = {repo.store_blob(kind, data)[0]: data for kind, items in payloads.items() for data in items}
    repo.flush()
    fresh = _reopen(repo)
    for chunk_id, data in stored.items():
        assert fresh.load_blob(chunk_id) == data
        assert fresh.locate(chunk_id) is not None
    assert len(fresh.index) == len(stored)


def test_load_unknown_blob_is_an_integrity_error(repo):
    with pytest.raises(IntegrityError, match="not in any index"):
        repo.load_blob(b"\x00" * 32)


def _two_blobs_in_one_pack(repo):
    a, b = os.urandom(300), os.urandom(300)  # incompressible, same size: same envelope length
    id_a, _ = repo.store_blob(BLOB_DATA, a)
    id_b, _ = repo.store_blob(BLOB_DATA, b)
    repo.flush()
    loc_a, loc_b = repo.locate(id_a), repo.locate(id_b)
    assert loc_a.pack_id == loc_b.pack_id and loc_a.length == loc_b.length
    return id_a, id_b, loc_a, loc_b


def test_swapped_blobs_inside_a_pack_fail_authentication(repo, storage):
    id_a, id_b, loc_a, loc_b = _two_blobs_in_one_pack(repo)
    name = layout.pack_name(loc_a.pack_id)
    raw = bytearray(storage.read(name))
    env_a = raw[loc_a.offset : loc_a.offset + loc_a.length]
    env_b = raw[loc_b.offset : loc_b.offset + loc_b.length]
    raw[loc_a.offset : loc_a.offset + loc_a.length] = env_b
    raw[loc_b.offset : loc_b.offset + loc_b.length] = env_a
    storage.write(name, bytes(raw))
    fresh = _reopen(repo)
    for chunk_id in (id_a, id_b):
        with pytest.raises(IntegrityError):
            fresh.load_blob(chunk_id)


def test_blob_envelope_under_another_id_fails_authentication(repo, storage):
    id_a, id_b, loc_a, _loc_b = _two_blobs_in_one_pack(repo)
    envelope_a = storage.read_range(layout.pack_name(loc_a.pack_id), loc_a.offset, loc_a.length)
    assert repo.decode_blob(id_a, BLOB_DATA, envelope_a, 300, pack_name="p")  # sanity: authentic
    with pytest.raises(IntegrityError):
        repo.decode_blob(id_b, BLOB_DATA, envelope_a, 300, pack_name="p")


def test_data_blob_cannot_be_read_as_a_tree_blob(repo, storage):
    chunk_id, _ = repo.store_blob(BLOB_DATA, b'{"nodes":[]}')
    repo.flush()
    loc = repo.locate(chunk_id)
    envelope = storage.read_range(layout.pack_name(loc.pack_id), loc.offset, loc.length)
    with pytest.raises(IntegrityError):
        repo.decode_blob(chunk_id, BLOB_TREE, envelope, loc.raw_length, pack_name="p")


def test_blob_with_wrong_recorded_length_is_an_integrity_error(repo, storage):
    chunk_id, _ = repo.store_blob(BLOB_DATA, TEXT)
    repo.flush()
    loc = repo.locate(chunk_id)
    envelope = storage.read_range(layout.pack_name(loc.pack_id), loc.offset, loc.length)
    with pytest.raises(IntegrityError):
        repo.decode_blob(chunk_id, BLOB_DATA, envelope, loc.raw_length + 1, pack_name="p")


def test_corrupted_blob_bytes_fail(repo, storage):
    chunk_id, _ = repo.store_blob(BLOB_DATA, TEXT)
    repo.flush()
    loc = repo.locate(chunk_id)
    name = layout.pack_name(loc.pack_id)
    raw = bytearray(storage.read(name))
    raw[loc.offset + loc.length // 2] ^= 0x40
    storage.write(name, bytes(raw))
    with pytest.raises(IntegrityError):
        _reopen(repo).load_blob(chunk_id)


def test_superseded_index_files_are_ignored(repo, storage):
    chunk_id, _ = repo.store_blob(BLOB_DATA, TEXT)
    repo.flush()
    [old_index] = repo.list_index_ids()
    # A compaction that forgot the pack: the new index supersedes the old one.
    repo._write_index({}, superseded=[old_index])
    assert len(repo.list_index_ids()) == 2
    fresh = _reopen(repo)
    assert not fresh.has_blob(chunk_id)


def _chunk_ids_in_index(repo: Repository, name: str) -> set[bytes]:
    packs, _superseded = repo.read_index_file(layout.index_id_from_name(name))
    return {entry.chunk_id for entries in packs.values() for entry in entries}


def test_a_damaged_index_is_reported_not_fatal(repo, storage):
    """One damaged index must not stop every restore; its blobs are then missing."""
    lost_id, _ = repo.store_blob(BLOB_DATA, b"in the damaged index" * 10)
    repo.flush()
    kept_id, _ = repo.store_blob(BLOB_DATA, b"in the good index" * 10)
    repo.flush()
    indexes = _names(storage, layout.INDEX_PREFIX)
    assert len(indexes) == 2
    damaged = next(n for n in indexes if lost_id in _chunk_ids_in_index(repo, n))
    raw = bytearray(storage.read(damaged))
    raw[-1] ^= 1
    storage.write(damaged, bytes(raw))
    fresh = _reopen(repo)
    assert len(fresh.index_problems) == 1
    assert damaged in fresh.index_problems[0]
    assert fresh.load_blob(kept_id) == b"in the good index" * 10
    with pytest.raises(IntegrityError):
        fresh.load_blob(lost_id)


def test_index_renamed_to_another_id_fails(repo, storage):
    repo.store_blob(BLOB_DATA, TEXT)
    repo.flush()
    [index_id] = repo.list_index_ids()
    other = layout.IndexId(b"\x00" * 16)
    storage.write(layout.index_name(other), storage.read(layout.index_name(index_id)))
    with pytest.raises(IntegrityError):
        repo.read_index_file(other)


def test_objects_sealed_with_the_other_cipher_are_refused(repo, storage, cipher):
    """Same key, other cipher: authentic, but a silent downgrade; refused."""
    other_cipher = next(c for c in CIPHERS if c != cipher)
    impostor = Repository(storage, repo.master, dataclasses.replace(repo.config, cipher=other_cipher))
    chunk_id, _ = impostor.store_blob(BLOB_DATA, TEXT)
    impostor.flush()
    loc = impostor.locate(chunk_id)
    envelope = storage.read_range(layout.pack_name(loc.pack_id), loc.offset, loc.length)
    if repo.config.format_version < 4:  # version 4: the cipher is implied by the config
        assert aead.envelope_cipher(envelope) == other_cipher
    assert impostor.decode_blob(chunk_id, BLOB_DATA, envelope, loc.raw_length, pack_name="p") == TEXT
    with pytest.raises(IntegrityError):
        repo.decode_blob(chunk_id, BLOB_DATA, envelope, loc.raw_length, pack_name="p")
    [index_id] = impostor.list_index_ids()
    with pytest.raises(IntegrityError):
        repo.read_index_file(index_id)


# ---- snapshots ----------------------------------------------------------------------------------


def test_save_snapshot_before_flush_raises(repo, storage):
    tree_id, _ = repo.store_blob(BLOB_TREE, b'{"nodes":[]}')
    with pytest.raises(RuntimeError):
        repo.save_snapshot(_snapshot(tree_id))
    assert _names(storage, layout.SNAPSHOTS_PREFIX) == []
    repo.flush()
    snapshot_id = repo.save_snapshot(_snapshot(tree_id))
    assert _names(storage, layout.SNAPSHOTS_PREFIX) == [layout.snapshot_name(snapshot_id)]


def test_snapshot_round_trip(repo, storage, cipher):
    tree_id, _ = repo.store_blob(BLOB_TREE, b'{"nodes":[]}')
    repo.flush()
    snapshot = _snapshot(tree_id)
    snapshot_id = repo.save_snapshot(snapshot)
    assert snapshot.id == snapshot_id
    assert aead.envelope_cipher(storage.read(layout.snapshot_name(snapshot_id))) == cipher
    fresh = _reopen(repo)
    assert fresh.list_snapshot_ids() == [snapshot_id]
    loaded = fresh.load_snapshot(snapshot_id)
    assert loaded == snapshot
    assert fresh.load_blob(loaded.tree) == encode_tree([], fresh.config.format_version)


def test_snapshots_are_listed_oldest_first(repo):
    repo.flush()
    times = [dt.datetime(2026, 11, d, tzinfo=dt.timezone.utc) for d in (3, 1, 2)]
    for moment in times:
        snapshot = _snapshot(b"\x00" * 32)
        snapshot.time = moment
        repo.save_snapshot(snapshot)
    assert [s.time for s in repo.snapshots()] == sorted(times)


def test_snapshot_renamed_to_another_id_fails(repo, storage):
    repo.flush()
    snapshot_id = repo.save_snapshot(_snapshot(b"\x01" * 32))
    other = layout.SnapshotId(bytes(16))
    storage.write(layout.snapshot_name(other), storage.read(layout.snapshot_name(snapshot_id)))
    with pytest.raises(IntegrityError):
        repo.load_snapshot(other)
    # the original still opens
    assert repo.load_snapshot(snapshot_id).tree == b"\x01" * 32


def test_snapshot_object_cannot_pass_as_an_index(repo, storage):
    repo.flush()
    snapshot_id = repo.save_snapshot(_snapshot(b"\x01" * 32))
    storage.write(layout.index_name(layout.IndexId(snapshot_id)), storage.read(layout.snapshot_name(snapshot_id)))
    with pytest.raises(IntegrityError):
        repo.read_index_file(layout.IndexId(snapshot_id))


def test_snapshot_from_another_repository_fails(repo, storage, cipher):
    other = Repository.init(MemoryStorage(), PASSPHRASE, cipher=cipher, compression_level=3, kdf_params=FAST)
    snapshot_id = other.save_snapshot(_snapshot(b"\x01" * 32))
    storage.write(layout.snapshot_name(snapshot_id), other.storage.read(layout.snapshot_name(snapshot_id)))
    with pytest.raises(IntegrityError):
        repo.load_snapshot(snapshot_id)


def test_every_stored_object_uses_the_repository_cipher(repo, storage, cipher):
    repo.store_blob(BLOB_DATA, TEXT)
    tree_id, _ = repo.store_blob(BLOB_TREE, b'{"nodes":[]}')
    repo.flush()
    repo.save_snapshot(_snapshot(tree_id))
    for name in [layout.CONFIG] + _names(storage, layout.INDEX_PREFIX) + _names(storage, layout.SNAPSHOTS_PREFIX):
        assert aead.envelope_cipher(storage.read(name)) == cipher, name
    for pack_id in repo.index.pack_ids():
        data, entries = repo.read_pack(pack_id)
        for entry in entries:
            body = data[entry.offset : entry.offset + entry.length]
            if repo.config.format_version < 4:
                assert aead.envelope_cipher(body) == cipher
                continue
            # Version 4: the cipher is implied by the config and bound by the AAD.
            kind = layout.KIND_TREE_BLOB_V4 if entry.kind == BLOB_TREE else layout.KIND_DATA_BLOB_V4
            aad = repo._aad(kind, entry.chunk_id)
            assert aead.open_envelope(repo.master.encryption_key, bytes((1, aead.CIPHER_IDS[cipher])) + body,
                                      aad, what="blob")
            other = next(c for c in CIPHERS if c != cipher)
            with pytest.raises(IntegrityError):
                aead.open_envelope(repo.master.encryption_key, bytes((1, aead.CIPHER_IDS[other])) + body,
                                   aad, what="blob")

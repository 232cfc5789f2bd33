"""agent.repo.repository, object by object: what an opening says of a storage with no key
file, the bounds and bindings of reports and rescue records, a pack adopted after an
interrupted backup, a blob stored again once, and the index file that supersedes others."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os

import pytest

from agent.crypto.kdf import KdfParams
from agent.crypto.keys import MAX_KEY_FILE_SIZE, MAX_KEY_FILES_TRIED
from agent.errors import (
    ForeignObject,
    IntegrityError,
    NoKeyFile,
    RepositoryNotFound,
    StorageError,
    WrongPassphrase,
)
from agent.repo import layout
from agent.repo import repository as repository_module
from agent.repo.pack import BLOB_DATA
from agent.repo.repository import MAX_CONFIG_SIZE, MAX_RESCUE_RECORD_SIZE, Repository
from agent.storage.memory import MemoryStorage

FAST = KdfParams(memory_kib=8192, iterations=1)
PASSPHRASE = b"phrase"


class NetworkStore(MemoryStorage):
    """A memory storage that runs several requests at once, as S3 does; counts existence checks."""

    def __init__(self) -> None:
        super().__init__()
        self.max_concurrency = 8
        self.exists_asked: list[str] = []

    def exists(self, name: str) -> bool:
        self.exists_asked.append(name)
        return super().exists(name)


def _repo(storage: MemoryStorage | None = None) -> Repository:
    return Repository.init(storage if storage is not None else MemoryStorage(), PASSPHRASE,
                           cipher="xchacha20-poly1305", compression_level=3, kdf_params=FAST)


def _without_keys(storage: MemoryStorage, config: str) -> MemoryStorage:
    """`storage` left with no key file, and its config whole, absent or larger than any config."""
    if config != "none":
        _repo(storage)
    for name in [n for n in storage.objects if n.startswith(layout.KEYS_PREFIX)]:
        del storage.objects[name]
    if config == "oversized":
        storage.objects[layout.CONFIG] = b"\0" * (MAX_CONFIG_SIZE + 1)
    return storage


# ---- an opening that finds no key file ------------------------------------------------------

@pytest.mark.parametrize("network", [False, True], ids=["local", "network"])
@pytest.mark.parametrize("config, error", [("none", RepositoryNotFound), ("whole", NoKeyFile),
                                           ("oversized", NoKeyFile)])
def test_no_key_file_is_a_missing_repository_only_when_there_is_no_config(network: bool, config: str, error) -> None:
    """With a config there is a repository whose keys/ is empty (restore it from the
    recovery sheet), not "no repository here": the two messages send a person different ways."""
    storage = _without_keys(NetworkStore() if network else MemoryStorage(), config)
    with pytest.raises(error) as caught:
        Repository.open(storage, PASSPHRASE)
    assert type(caught.value) is error


def test_over_a_network_the_config_read_while_opening_answers_whether_it_exists() -> None:
    storage = _without_keys(NetworkStore(), "whole")
    storage.exists_asked.clear()
    with pytest.raises(NoKeyFile):
        Repository.open(storage, PASSPHRASE)
    assert storage.exists_asked == []  # no request more than the config's GET already made


# ---- restore-test reports and rescue records ------------------------------------------------

def test_a_report_reads_back_and_only_under_its_own_id() -> None:
    repo = _repo()
    first, second = b"\x01" * 16, b"\x02" * 16
    repo.save_report(first, b"<html>restore test</html>")
    assert repo.load_report(first) == b"<html>restore test</html>"
    objects = repo.storage.objects  # type: ignore[attr-defined]
    objects[layout.report_name(second)] = objects[layout.report_name(first)]
    with pytest.raises(IntegrityError):
        repo.load_report(second)


def test_a_report_larger_than_any_report_is_refused_unread(monkeypatch: pytest.MonkeyPatch) -> None:
    repo = _repo()
    report_id = b"\x01" * 16
    repo.save_report(report_id, os.urandom(10_000))  # does not compress below the bound
    monkeypatch.setattr(repository_module, "MAX_REPORT_SIZE", 1000)
    with pytest.raises(ForeignObject, match="more than any such object"):
        repo.load_report(report_id)


def test_a_rescue_record_larger_than_any_record_is_refused_unread() -> None:
    repo = _repo()
    repo.storage.objects[layout.rescue_record_name("1.0.0")] = b"\0" * (MAX_RESCUE_RECORD_SIZE + 1)  # type: ignore[attr-defined]
    with pytest.raises(ForeignObject, match="more than any such object"):
        repo.load_rescue_record("1.0.0")


def test_extending_a_lock_on_a_storage_without_object_lock_says_so() -> None:
    with pytest.raises(StorageError) as caught:
        _repo().extend_lock(layout.CONFIG, dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc))
    assert str(caught.value) == "memory has no object lock to extend"


# ---- packs and index files ------------------------------------------------------------------

def test_a_pack_no_index_lists_is_adopted_and_its_blobs_read_again() -> None:
    """An interrupted backup left a complete pack but not its index file: the next backup
    adopts it, its blobs are read from it, and the next index file lists it."""
    repo = _repo()
    chunk_id, _ = repo.store_blob(BLOB_DATA, b"letter " * 500)
    repo.flush()
    objects = repo.storage.objects  # type: ignore[attr-defined]
    for name in [n for n in objects if n.startswith(layout.INDEX_PREFIX)]:
        del objects[name]
    [pack_name] = [n for n in objects if n.startswith(layout.DATA_PREFIX)]
    pack_id = layout.pack_id_from_name(pack_name)
    again = Repository.open(repo.storage, PASSPHRASE)
    again.load_index()
    assert chunk_id not in again.index
    assert again.adopt_pack(pack_id) == 1
    assert again.load_blob(chunk_id) == b"letter " * 500
    again.flush()
    reopened = Repository.open(repo.storage, PASSPHRASE)
    reopened.load_index()
    assert reopened.load_blob(chunk_id) == b"letter " * 500


def test_a_blob_stored_again_twice_is_stored_once() -> None:
    repo = _repo()
    chunk_id, _ = repo.store_blob(BLOB_DATA, b"moved by prune " * 100)
    repo.flush()
    repo.store_blob_again(BLOB_DATA, chunk_id, b"moved by prune " * 100)
    repo.store_blob_again(BLOB_DATA, chunk_id, b"moved by prune " * 100)
    repo.flush()
    objects = repo.storage.objects  # type: ignore[attr-defined]
    packs = [layout.pack_id_from_name(n) for n in objects if n.startswith(layout.DATA_PREFIX)]
    copies = sum(len(repo.read_pack(p)[1]) for p in packs)
    assert copies == 2  # the first copy and one copy stored again


def test_the_last_index_file_of_a_complete_index_supersedes_the_old_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    """Until the last file is written the old files stay current: only it names them."""
    repo = _repo()
    for number in range(3):
        repo.store_blob(BLOB_DATA, b"blob %d " % number * 50)
        repo.flush()
    old = sorted(layout.index_id_from_name(n) for n in repo.storage.objects  # type: ignore[attr-defined]
                 if n.startswith(layout.INDEX_PREFIX))
    repo.load_index(reload=True)
    monkeypatch.setattr(repository_module, "PACKS_PER_INDEX_FILE", 2)
    written = repo.write_index_files(repo.index.packs(), supersede=old)
    assert [sorted(repo.read_index_file(i)[1]) for i in written] == [[], sorted(old)]


# ---- opening with a passphrase --------------------------------------------------------------

def test_a_config_naming_another_repository_than_the_key_is_refused_as_such() -> None:
    """Sealed with this repository's key and bound to its id, yet its plaintext names
    another repository: a config object moved between the disks of a set, say."""
    repo = _repo()
    moved = dataclasses.replace(repo.config, repository_id=bytes(16))
    repo.storage.write(layout.CONFIG, repo._seal_metadata(layout.KIND_CONFIG, b"", moved.encode()))
    with pytest.raises(IntegrityError) as caught:
        Repository.open(repo.storage, PASSPHRASE)
    assert str(caught.value) == "the config object belongs to another repository than the key"


class FirstReadAltered(MemoryStorage):
    """The first read of each key file comes back altered in transit (a blank added)."""

    def __init__(self) -> None:
        super().__init__()
        self.altered: set[str] = set()

    def read(self, name: str, *, max_size: int | None = None) -> bytes:
        data = super().read(name, max_size=max_size)
        if name.startswith(layout.KEYS_PREFIX) and name not in self.altered:
            self.altered.add(name)
            return data + b" "
        return data


def test_a_key_file_altered_on_its_first_read_opens_with_the_reads_that_agree() -> None:
    storage = FirstReadAltered()
    repo = _repo(storage)
    storage.altered.clear()
    assert Repository.open(storage, PASSPHRASE).key_id == repo.key_id
    assert storage.altered == {layout.key_name(repo.key_id)}


def test_a_key_file_of_exactly_the_largest_size_opens() -> None:
    repo = _repo()
    name = layout.key_name(repo.key_id)
    data = repo.storage.objects[name]  # type: ignore[attr-defined]
    repo.storage.objects[name] = data + b" " * (MAX_KEY_FILE_SIZE - len(data))  # type: ignore[attr-defined]
    assert Repository.open(repo.storage, PASSPHRASE).key_id == repo.key_id


def test_too_many_key_files_the_passphrase_does_not_open_say_what_to_do() -> None:
    repo = _repo()
    for _ in range(MAX_KEY_FILES_TRIED + 1):
        repo.add_key(b"another phrase", params=FAST)
    with pytest.raises(WrongPassphrase) as caught:
        Repository.open(repo.storage, b"a phrase of none of them")
    assert caught.value.hint == ("open once with the recovery sheet (`backupctl recover --add-key`): this machine "
                                 "then tries its own key first; or remove unused keys (`backupctl key remove`)")


class NeverAgrees(MemoryStorage):
    """Each read of a key file comes back different (one more blank each time)."""

    def __init__(self) -> None:
        super().__init__()
        self.key_reads = 0

    def read(self, name: str, *, max_size: int | None = None) -> bytes:
        data = super().read(name, max_size=max_size)
        if not name.startswith(layout.KEYS_PREFIX):
            return data
        self.key_reads += 1
        return data + b" " * self.key_reads


def test_a_key_file_whose_reads_never_agree_is_read_five_times_at_most() -> None:
    storage = NeverAgrees()
    repo = _repo(storage)
    storage.key_reads = 0
    assert Repository.open(storage, PASSPHRASE).key_id == repo.key_id  # the last read, as good as any
    assert storage.key_reads == 5


# ---- how the opening reads: at once over a network, each when wanted on a local disk ----------

class Recording(MemoryStorage):
    """Records the listings asked for and the bound each read of the config was asked with."""

    def __init__(self, max_concurrency: int | None = None) -> None:
        super().__init__()
        if max_concurrency is not None:
            self.max_concurrency = max_concurrency  # a NetworkStorage, as S3 is
        self.listed: list[str] = []
        self.config_bounds: list[int | None] = []
        self.exists_asked: list[str] = []

    def list(self, prefix: str):
        self.listed.append(prefix)
        return super().list(prefix)

    def read(self, name: str, *, max_size: int | None = None) -> bytes:
        if name == layout.CONFIG:
            self.config_bounds.append(max_size)
        return super().read(name, max_size=max_size)

    def exists(self, name: str) -> bool:
        self.exists_asked.append(name)
        return super().exists(name)


def test_on_a_local_disk_the_opening_lists_only_what_it_needs() -> None:
    storage = Recording()
    _repo(storage)
    storage.listed.clear()
    Repository.open(storage, PASSPHRASE)
    assert storage.listed == [layout.KEYS_PREFIX]  # snapshots/ is listed when a command wants it, not before


@pytest.mark.parametrize("requests, config_checked_apart", [(1, True), (2, False), (8, False)])
def test_a_storage_that_runs_several_requests_gets_the_openings_reads_at_once(requests: int,
                                                                            config_checked_apart: bool) -> None:
    """One request at a time (a network store configured so) is opened as a local disk is:
    "is there a config?" is its own request; with two or more the config's read answers it."""
    storage = _without_keys(Recording(requests), "whole")
    storage.exists_asked.clear()
    with pytest.raises(NoKeyFile):
        Repository.open(storage, PASSPHRASE)
    assert storage.exists_asked == ([layout.CONFIG] if config_checked_apart else [])


@pytest.mark.parametrize("requests", [None, 8], ids=["local", "network"])
def test_the_config_is_never_read_unbounded(requests: int | None) -> None:
    storage = Recording(requests)
    _repo(storage)
    storage.config_bounds.clear()
    Repository.open(storage, PASSPHRASE)
    assert storage.config_bounds and set(storage.config_bounds) == {MAX_CONFIG_SIZE}


@pytest.mark.parametrize("requests", [None, 8], ids=["local", "network"])
def test_keys_without_a_config_are_said_as_such(requests: int | None) -> None:
    storage = Recording(requests)
    _repo(storage)
    del storage.objects[layout.CONFIG]
    with pytest.raises(IntegrityError) as caught:
        Repository.open(storage, PASSPHRASE)
    assert str(caught.value) == "repository at memory has keys but no config object"


def test_an_object_sealed_with_another_cipher_than_the_repositorys_names_both() -> None:
    """No silent downgrade: a snapshot sealed (with the right key) under the other cipher
    is refused, and the message says which cipher each side uses."""
    repo = _repo()
    snapshot_id = bytes(range(16))
    other = Repository(repo.storage, repo.master, dataclasses.replace(repo.config, cipher="aes-256-gcm"))
    name = layout.snapshot_name(snapshot_id)
    repo.storage.write(name, other._seal_metadata(layout.KIND_SNAPSHOT, snapshot_id, b"{}"))
    with pytest.raises(IntegrityError) as caught:
        repo.load_snapshot(snapshot_id)
    assert str(caught.value) == f"{name}: encrypted with aes-256-gcm, repository uses xchacha20-poly1305"


# ---- listing and deleting -------------------------------------------------------------------

class DeleteRecording(MemoryStorage):
    def __init__(self) -> None:
        super().__init__()
        self.deletes: list[tuple[str, bool]] = []

    def delete(self, name: str, *, ephemeral: bool = False) -> None:
        self.deletes.append((name, ephemeral))
        super().delete(name, ephemeral=ephemeral)


def test_index_files_and_locks_are_listed_by_id_strays_left_out() -> None:
    repo = _repo()
    repo.store_blob(BLOB_DATA, b"indexed")
    repo.flush()
    [index_name] = [n for n in repo.storage.objects if n.startswith(layout.INDEX_PREFIX)]  # type: ignore[attr-defined]
    lock_id = bytes(range(16))
    repo.write_lock_object(lock_id, b"{}")
    for stray in ("index/not-an-id", "locks/not-an-id"):
        repo.storage.write(stray, b"stray")
    assert repo.list_index_ids() == [layout.index_id_from_name(index_name)]
    assert repo.list_lock_ids() == [lock_id]


def test_a_lock_is_deleted_as_an_ephemeral_object() -> None:
    """A lock is never under object lock: its deletion asks nothing more of S3."""
    storage = DeleteRecording()
    repo = _repo(storage)
    lock_id = bytes(range(16))
    repo.write_lock_object(lock_id, b"{}")
    repo.delete_lock_object(lock_id)
    assert storage.deletes == [(layout.lock_name(lock_id), True)]


def test_a_deleted_snapshot_or_index_file_leaves_the_storage_and_the_cache(tmp_path) -> None:
    from agent.repo.cache import CacheRoot

    repo = _repo()
    repo.store_blob(BLOB_DATA, b"indexed")
    repo.flush()
    [index_id] = repo.list_index_ids()
    snapshot_id = bytes(range(16))
    repo.cache = CacheRoot(str(tmp_path / "cache")).repository(repo.config.repository_id)
    for name in (layout.index_name(index_id), layout.snapshot_name(snapshot_id)):
        repo.storage.write(name, b"sealed")
        repo.cache.put(name, b"sealed")
    repo.delete_index_file(index_id)
    repo.delete_snapshot(snapshot_id)
    for name in (layout.index_name(index_id), layout.snapshot_name(snapshot_id)):
        assert name not in repo.storage.objects and repo.cache.get(name) is None  # type: ignore[attr-defined]

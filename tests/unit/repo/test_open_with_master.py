"""Repository.open_with_master: the recovery code opens a repository with no passphrase."""

from __future__ import annotations

import os

import pytest

from agent.crypto.kdf import KdfParams
from agent.crypto.keys import MAX_KEY_FILE_SIZE, MasterKey
from agent.errors import ForeignObject, RepositoryNotFound, WrongPassphrase
from agent.repo import layout
from agent.repo.repository import MAX_CONFIG_SIZE, Repository
from agent.storage.memory import MemoryStorage

FAST = KdfParams(memory_kib=8192, iterations=1)


def _repo(master: MasterKey | None = None) -> tuple[MemoryStorage, Repository]:
    storage = MemoryStorage()
    return storage, Repository.init(storage, b"phrase", cipher="aes-256-gcm", compression_level=3,
                                    kdf_params=FAST, master=master)


def test_opens_without_key_files_and_refuses_a_wrong_secret():
    storage, repo = _repo()
    for info in list(storage.list(layout.KEYS_PREFIX)):
        storage.delete(info.name)  # every passphrase lost
    opened = Repository.open_with_master(storage, repo.master, repo.config.repository_id)
    assert opened.config == repo.config and opened.key_id is None
    with pytest.raises(WrongPassphrase, match="does not open"):
        Repository.open_with_master(storage, MasterKey(os.urandom(32)), repo.config.repository_id)
    with pytest.raises(RepositoryNotFound):
        Repository.open_with_master(MemoryStorage(), repo.master, repo.config.repository_id)


def test_a_disk_of_the_set_opens_with_the_sheet_of_another_disk():
    master = MasterKey.generate()
    _storage_a, disk_a = _repo(master)
    storage_b, disk_b = _repo(master)
    assert disk_a.config.repository_id != disk_b.config.repository_id
    opened = Repository.open_with_master(storage_b, master, disk_a.config.repository_id)
    assert opened.config.repository_id == disk_b.config.repository_id


def test_keys_added_removed_and_listed():
    storage, repo = _repo()
    added = repo.add_key(b"seconde phrase", params=FAST)
    assert {k.key_id for k in repo.list_keys()} == {repo.key_id, added}
    assert Repository.open(storage, b"seconde phrase").key_id == added
    repo.remove_key(added)
    with pytest.raises(WrongPassphrase):
        Repository.open(storage, b"seconde phrase")
    assert [k.key_id for k in repo.list_keys()] == [repo.key_id]


# ---- the recovery code, precisely --------------------------------------------------------------

def _disk_b_of_a_set() -> tuple[MasterKey, Repository, MemoryStorage, Repository]:
    master = MasterKey.generate()
    _storage_a, disk_a = _repo(master)
    storage_b, disk_b = _repo(master)
    return master, disk_a, storage_b, disk_b


def _listed_first(storage: MemoryStorage, name: str, data: bytes) -> None:
    """Put an object ahead of every other in the storage's listing order."""
    storage.objects = {name: data, **{n: d for n, d in storage.objects.items() if n != name}}


def test_no_repository_is_said_with_where_it_was_looked_for():
    with pytest.raises(RepositoryNotFound) as caught:
        Repository.open_with_master(MemoryStorage(), MasterKey.generate(), os.urandom(16))
    assert str(caught.value) == "no repository at memory"


def test_a_code_that_opens_nothing_says_what_to_check():
    storage, repo = _repo()
    with pytest.raises(WrongPassphrase) as caught:
        Repository.open_with_master(storage, MasterKey(os.urandom(32)), repo.config.repository_id)
    assert str(caught.value) == ("the recovery code does not open the repository at memory: it belongs to another "
                                 "repository, or a share is missing or wrong")
    assert caught.value.hint == ("check --url against the sheet, and that every share is the one of this repository "
                                 "(each line's check characters were verified)")


def test_the_repository_opened_with_the_code_reads_its_storage():
    storage, repo = _repo()
    opened = Repository.open_with_master(storage, repo.master, repo.config.repository_id)
    assert opened.storage is storage and opened.snapshots() == []


def test_a_config_larger_than_any_config_is_refused_unread():
    storage, repo = _repo()
    storage.objects[layout.CONFIG] = b"\0" * (MAX_CONFIG_SIZE + 1)
    with pytest.raises(ForeignObject):
        Repository.open_with_master(storage, repo.master, repo.config.repository_id)


def test_another_disks_key_file_listed_first_does_not_stop_the_search():
    """Disk B holds a copy of disk A's key file (naming A's id) ahead of its own: with A's
    sheet, A's id is tried once, and B's own key file still gives B's id."""
    master, disk_a, storage_b, disk_b = _disk_b_of_a_set()
    key_a = _storage_a_key(disk_a)
    _listed_first(storage_b, "keys/" + "00" * 16, key_a)
    opened = Repository.open_with_master(storage_b, master, disk_a.config.repository_id)
    assert opened.config.repository_id == disk_b.config.repository_id


def test_each_repository_id_is_tried_once_however_many_key_files_name_it(monkeypatch: pytest.MonkeyPatch):
    master, disk_a, storage_b, disk_b = _disk_b_of_a_set()
    key_a = _storage_a_key(disk_a)
    for planted in ("keys/" + "01" * 16, "keys/" + "00" * 16):
        _listed_first(storage_b, planted, key_a)
    tried: list[bytes] = []
    open_metadata = Repository._open_metadata

    def counted(self, kind, object_id, envelope, *, what):
        tried.append(self.config.repository_id)
        return open_metadata(self, kind, object_id, envelope, what=what)

    monkeypatch.setattr(Repository, "_open_metadata", counted)
    Repository.open_with_master(storage_b, master, disk_a.config.repository_id)
    assert tried == [disk_a.config.repository_id, disk_b.config.repository_id]


@pytest.mark.parametrize("planted", ["junk", "oversized"])
def test_an_unreadable_key_file_listed_first_does_not_stop_the_search(planted: str):
    master, disk_a, storage_b, disk_b = _disk_b_of_a_set()
    data = b"not a key file" if planted == "junk" else b" " * (MAX_KEY_FILE_SIZE + 1)
    _listed_first(storage_b, "keys/" + "00" * 16, data)
    opened = Repository.open_with_master(storage_b, master, disk_a.config.repository_id)
    assert opened.config.repository_id == disk_b.config.repository_id


def _padded_to_the_bound(storage: MemoryStorage) -> None:
    """Every key file of `storage` made exactly MAX_KEY_FILE_SIZE bytes (JSON allows the blanks)."""
    for info in list(storage.list(layout.KEYS_PREFIX)):
        data = storage.objects[info.name]
        storage.objects[info.name] = data + b" " * (MAX_KEY_FILE_SIZE - len(data))


def test_a_key_file_of_exactly_the_largest_size_is_read():
    master, disk_a, storage_b, disk_b = _disk_b_of_a_set()
    _padded_to_the_bound(storage_b)
    opened = Repository.open_with_master(storage_b, master, disk_a.config.repository_id)
    assert opened.config.repository_id == disk_b.config.repository_id
    assert [k.key_id for k in disk_b.list_keys()] == [disk_b.key_id]


def _storage_a_key(disk_a: Repository) -> bytes:
    return disk_a.storage.objects[layout.key_name(disk_a.key_id)]  # type: ignore[attr-defined,arg-type]


# ---- keys -----------------------------------------------------------------------------------

def test_an_added_key_uses_the_parameters_asked_for():
    _storage, repo = _repo()
    slow = KdfParams(memory_kib=16384, iterations=2)
    added = repo.add_key(b"seconde phrase", params=slow)
    assert {k.key_id: k.params for k in repo.list_keys()}[added] == slow


def test_the_keys_listed_are_this_repositorys_under_their_own_names():
    storage, repo = _repo()
    _other_storage, other = _repo()
    foreign = other.storage.objects[layout.key_name(other.key_id)]  # type: ignore[attr-defined,arg-type]
    storage.write(layout.key_name(other.key_id), foreign)  # another repository's key, under its own name
    own = storage.objects[layout.key_name(repo.key_id)]  # type: ignore[arg-type]
    storage.write("keys/" + "ee" * 16, own)  # this repository's key, under another name
    _listed_first(storage, "keys/" + "00" * 16, b" " * (MAX_KEY_FILE_SIZE + 1))  # junk ahead of all
    assert [k.key_id for k in repo.list_keys()] == [repo.key_id]

"""Repository.open_with_master: the recovery code opens a repository with no passphrase."""

from __future__ import annotations

import os

import pytest

from agent.crypto.kdf import KdfParams
from agent.crypto.keys import MasterKey
from agent.errors import RepositoryNotFound, WrongPassphrase
from agent.repo import layout
from agent.repo.repository import Repository
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

"""A listing of keys/ altered on its way (a byte flipped inside a name, the XML still valid)
names a key file that is not there: a storage failure to retry (exit 14), not a key
problem (exit 12). Found by the S3 fault campaign (tests/integration/test_s3_faults.py)."""

from __future__ import annotations

import pytest

from agent.errors import KeyFileError, TransientStorageError
from agent.repo.repository import Repository
from agent.storage.memory import MemoryStorage
from tests.support.repos import memory_repository


class _FlippedListing(MemoryStorage):
    """keys/ listed with the first character of each name replaced by `flip` (a flipped bit
    turns '6' into 'v': 0x36 ^ 0x40)."""

    def __init__(self, source: MemoryStorage, flip: str) -> None:
        super().__init__()
        self.objects = source.objects
        self.flip = flip

    def list(self, prefix: str):  # type: ignore[override]
        for info in super().list(prefix):
            if info.name.startswith("keys/"):
                info = type(info)(**{**info.__dict__, "name": "keys/" + self.flip + info.name[6:]})
            yield info


def test_a_key_name_altered_in_the_listing_is_a_storage_failure():
    repo = memory_repository()
    with pytest.raises(TransientStorageError, match="the listing was altered on its way"):
        Repository.open(_FlippedListing(repo.storage, "v"), b"phrase")


def test_a_key_file_that_disappears_is_still_a_key_problem():
    repo = memory_repository()
    [key] = [i.name for i in repo.storage.list("keys/")]
    other = "1" if key[5] == "0" else "0"  # a valid name, not there
    with pytest.raises(KeyFileError, match="disappeared while being read"):
        Repository.open(_FlippedListing(repo.storage, other), b"phrase")

"""A repository in memory for the unit tests: the format's real code over MemoryStorage, with
Argon2id at the cheapest parameters it accepts (8 MiB, one pass), so that opening one costs
milliseconds instead of the production second."""

from __future__ import annotations

from agent.crypto.kdf import KdfParams
from agent.repo.repository import Repository
from agent.storage.base import Storage
from agent.storage.memory import MemoryStorage

FAST = KdfParams(memory_kib=8192, iterations=1)


def memory_repository(*, compression_level: int = 1, storage: Storage | None = None,
                      cipher: str = "xchacha20-poly1305", passphrase: bytes = b"phrase") -> Repository:
    return Repository.init(storage if storage is not None else MemoryStorage(), passphrase, cipher=cipher,
                           compression_level=compression_level, kdf_params=FAST)

"""A key file planted in the storage costs an opening at most a small constant (issue 16,
point 4; docs/SECURITY.md section 4). Work is counted, not timed: every Argon2id
derivation goes through agent.crypto.keys.derive_key, which these tests count, with the
parameters each derivation was asked to run."""

from __future__ import annotations

import base64
import json
import os

import pytest

from agent.crypto import keys
from agent.crypto.kdf import DEFAULT_ITERATIONS, DEFAULT_MEMORY_KIB, KdfParams
from agent.state.known_keys import KnownKeys
from agent.errors import KeyFileError, WrongPassphrase
from agent.repo import layout
from agent.repo.repository import Repository
from agent.storage.memory import MemoryStorage

FAST = KdfParams(memory_kib=8192, iterations=1)
PASSPHRASE = b"Cabinet medical - phrase de passe 2026"
HOSTILE = (4 * 1024 * 1024, 6)  # 4 GiB, 6 passes: 25 s per command before the fix
LARGEST_ACCEPTED = (DEFAULT_MEMORY_KIB, DEFAULT_ITERATIONS)  # what init writes: 64 MiB, 3 passes


@pytest.fixture
def derivations(monkeypatch) -> list[tuple[int, int]]:
    """(memory_kib, iterations) of every Argon2id derivation run, in order."""
    runs: list[tuple[int, int]] = []
    real = keys.derive_key

    def counting(passphrase, salt, params):
        runs.append((params.memory_kib, params.iterations))
        return real(passphrase, salt, params)

    monkeypatch.setattr(keys, "derive_key", counting)
    return runs


@pytest.fixture
def storage() -> MemoryStorage:
    return MemoryStorage()


@pytest.fixture
def repo(storage) -> Repository:
    return Repository.init(storage, PASSPHRASE, cipher="xchacha20-poly1305", compression_level=None,
                           kdf_params=FAST)


def plant(storage: MemoryStorage, repository_id: bytes, count: int, params: tuple[int, int], *,
          start: int = 0) -> list[bytes]:
    """Key files as someone who can only add objects would write them: well formed, any
    parameters, a wrapped key that nothing opens; their ids sort before any random id."""
    planted = []
    for number in range(start, start + count):
        key_id = number.to_bytes(16, "big")
        document = {
            "version": 1, "repository_id": repository_id.hex(), "key_id": key_id.hex(),
            "created": "2026-01-01T00:00:00+00:00", "host": "planted",
            "kdf": {"algorithm": "argon2id", "version": 19, "memory_kib": params[0], "iterations": params[1],
                    "parallelism": 1, "salt": base64.b64encode(os.urandom(16)).decode()},
            "wrapped_master_key": base64.b64encode(b"\x01\x01" + os.urandom(72)).decode(),
        }
        storage.write(layout.key_name(key_id), json.dumps(document).encode())
        planted.append(key_id)
    return planted


def _real_key_sorts_last(repo: Repository) -> None:
    assert layout.key_name(repo.key_id) > layout.key_name((10**6).to_bytes(16, "big"))


@pytest.mark.parametrize("count", [1, 20])
def test_keys_asking_for_more_than_init_writes_cost_no_derivation(repo, storage, derivations, count):
    _real_key_sorts_last(repo)
    plant(storage, repo.config.repository_id, count, HOSTILE)
    opened = Repository.open(storage, PASSPHRASE)
    assert opened.key_id == repo.key_id
    assert derivations == [(FAST.memory_kib, FAST.iterations)]  # the real key only


def test_one_planted_key_at_the_largest_accepted_parameters_costs_one_default_derivation(repo, storage, derivations):
    plant(storage, repo.config.repository_id, 1, LARGEST_ACCEPTED)
    Repository.open(storage, PASSPHRASE)
    assert derivations == [LARGEST_ACCEPTED, (FAST.memory_kib, FAST.iterations)]


def test_no_derivation_is_ever_asked_more_than_init_writes(repo, storage, derivations):
    plant(storage, repo.config.repository_id, 3, HOSTILE)
    plant(storage, repo.config.repository_id, 3, LARGEST_ACCEPTED, start=3)
    plant(storage, repo.config.repository_id, 3, (DEFAULT_MEMORY_KIB + 1024, 1), start=6)
    plant(storage, repo.config.repository_id, 3, (8192, DEFAULT_ITERATIONS + 1), start=9)
    Repository.open(storage, PASSPHRASE)
    assert len(derivations) == 4
    assert all(m <= DEFAULT_MEMORY_KIB and t <= DEFAULT_ITERATIONS for m, t in derivations)


def test_the_key_that_opened_last_time_is_tried_first(repo, storage, derivations):
    plant(storage, repo.config.repository_id, 20, LARGEST_ACCEPTED)
    plant(storage, repo.config.repository_id, 20, HOSTILE, start=20)
    opened = Repository.open(storage, PASSPHRASE, try_first=[os.urandom(16), repo.key_id])
    assert opened.key_id == repo.key_id
    assert derivations == [(FAST.memory_kib, FAST.iterations)]


def test_many_planted_keys_stop_after_the_bound_with_a_clear_error(repo, storage, derivations):
    plant(storage, repo.config.repository_id, 20, LARGEST_ACCEPTED)
    with pytest.raises(WrongPassphrase) as caught:
        Repository.open(storage, PASSPHRASE)
    assert len(derivations) == keys.MAX_KEY_FILES_TRIED == 8
    message = caught.value.one_line()
    assert "none of the 8 key files tried" in message and "13 more were not tried" in message
    assert "recover --add-key" in message and caught.value.exit_code == 12


def test_malformed_and_hostile_files_do_not_count_against_the_bound(repo, storage, derivations):
    """Files refused before Argon2id cost a read, not a derivation: they cannot push
    the real key out of the keys tried."""
    plant(storage, repo.config.repository_id, 30, HOSTILE)
    for number in range(30, 40):
        storage.write(layout.key_name(number.to_bytes(16, "big")), b"{not json")
    plant(storage, repo.config.repository_id, 7, LARGEST_ACCEPTED, start=40)
    assert Repository.open(storage, PASSPHRASE).key_id == repo.key_id
    assert len(derivations) == 8


def test_key_files_with_a_one_byte_salt_cost_no_derivation_and_do_not_lock_out(repo, storage, derivations):
    """The reviewer's reproduction: 8 files named after their key_id, valid parameters,
    salt "eA==" (1 byte). They used to count as tried and lock a new machine out (exit 12)
    without a single Argon2id run; parse now refuses them, and the real key opens."""
    _real_key_sorts_last(repo)
    for key_id in plant(storage, repo.config.repository_id, 8, LARGEST_ACCEPTED):
        name = layout.key_name(key_id)
        document = json.loads(storage.read(name))
        document["kdf"]["salt"] = "eA=="
        storage.write(name, json.dumps(document).encode())
    assert Repository.open(storage, PASSPHRASE).key_id == repo.key_id
    assert derivations == [(FAST.memory_kib, FAST.iterations)]


class CountingStorage(MemoryStorage):
    """A MemoryStorage that counts the reads of each object."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: dict[str, int] = {}

    def read(self, name: str, *, max_size: int | None = None) -> bytes:
        self.reads[name] = self.reads.get(name, 0) + 1
        return super().read(name) if max_size is None else super().read(name, max_size=max_size)

    def key_reads(self) -> dict[str, int]:
        return {name: count for name, count in self.reads.items() if name.startswith(layout.KEYS_PREFIX)}


@pytest.fixture
def counted() -> tuple[CountingStorage, Repository]:
    storage = CountingStorage()
    repo = Repository.init(storage, PASSPHRASE, cipher="xchacha20-poly1305", compression_level=None,
                           kdf_params=FAST)
    storage.reads.clear()
    return storage, repo


def test_each_junk_key_file_is_read_once(counted, derivations):
    """20,000 junk key files were each read twice (the two-reads-agree check): tens of
    thousands of GETs on S3. Now one small read each; only a file about to run Argon2id
    is read again to confirm its bytes."""
    storage, repo = counted
    junk = 200
    for number in range(junk):
        storage.write(layout.key_name(number.to_bytes(16, "big")), b"{not a key file")
    assert Repository.open(storage, PASSPHRASE).key_id == repo.key_id
    reads = storage.key_reads()
    real = reads.pop(layout.key_name(repo.key_id))
    assert len(reads) == junk and set(reads.values()) == {1}
    assert real == 2  # two reads that agree, then Argon2id
    assert len(derivations) == 1


def test_a_key_file_too_large_to_be_one_is_never_read_nor_counted(counted, derivations):
    """A planted 400 MB key file cost 1.27 GB on a machine without keys.json. Anything over
    MAX_KEY_FILE_SIZE is refused from its listed size, unread, and is no tried key."""
    storage, repo = counted
    _real_key_sorts_last(repo)
    big = [layout.key_name(number.to_bytes(16, "big")) for number in range(3)]
    for name in big:
        storage.write(name, b" " * (keys.MAX_KEY_FILE_SIZE + 1))
    plant(storage, repo.config.repository_id, 7, LARGEST_ACCEPTED, start=3)
    assert Repository.open(storage, PASSPHRASE).key_id == repo.key_id
    assert not set(big) & set(storage.reads)
    assert len(derivations) == 8  # the 7 planted that look valid, then the real one
    only_big = CountingStorage()
    only_big.write(layout.CONFIG, b"x")
    only_big.write(big[0], b" " * (keys.MAX_KEY_FILE_SIZE + 1))
    with pytest.raises(KeyFileError, match=f"key file {big[0]} is {keys.MAX_KEY_FILE_SIZE + 1} bytes, "
                                           f"larger than any key file"):
        Repository.open(only_big, PASSPHRASE)
    assert only_big.reads == {}


def test_the_recovery_sheet_opens_without_reading_any_key_file(counted):
    """`recover` read every key file before trying the sheet's repository id (a planted
    400 MB key cost `recover --list` 1.27 GB): the sheet's id is now tried first."""
    storage, repo = counted
    oversize = layout.key_name(b"\x00" * 16)
    storage.write(oversize, b" " * (keys.MAX_KEY_FILE_SIZE + 1))
    plant(storage, repo.config.repository_id, 5, HOSTILE, start=1)
    opened = Repository.open_with_master(storage, repo.master, repo.config.repository_id)
    assert opened.config.repository_id == repo.config.repository_id
    assert storage.key_reads() == {}
    # Another disk of a set (same secret, its own id, not the sheet's): the key files
    # name it, each read once, the oversize one never.
    storage.reads.clear()
    opened = Repository.open_with_master(storage, repo.master, os.urandom(16))
    assert opened.config.repository_id == repo.config.repository_id
    reads = storage.key_reads()
    assert oversize not in reads and reads and set(reads.values()) == {1}


def test_a_wrong_passphrase_still_says_so(repo, storage, derivations):
    plant(storage, repo.config.repository_id, 2, HOSTILE)
    with pytest.raises(WrongPassphrase, match="opens none of the 3 key"):
        Repository.open(storage, b"not the passphrase at all")
    assert len(derivations) == 1


def test_only_hostile_key_files_is_a_key_file_error(storage, derivations):
    plant(storage, os.urandom(16), 2, HOSTILE)
    storage.write(layout.CONFIG, b"x")
    with pytest.raises(KeyFileError, match="accepted range is 8192..65536 KiB"):
        Repository.open(storage, PASSPHRASE)
    assert derivations == []


# ---- the memory of this machine (agent/state/known_keys.py) -------------------------


def test_known_keys_round_trip_private_and_tolerant(tmp_path):
    known = KnownKeys(str(tmp_path / "state"))
    assert known.key_ids() == []
    repository_id, key_id = os.urandom(16), os.urandom(16)
    known.remember(repository_id, key_id)
    assert known.key_ids() == [key_id]
    assert os.stat(known.path).st_mode & 0o777 == 0o600
    with open(known.path, "w") as handle:
        handle.write('{"zz": "not an id", "%s": 7}' % repository_id.hex())
    assert known.key_ids() == []
    with open(known.path, "w") as handle:
        handle.write("garbage")
    assert known.key_ids() == []


def test_known_keys_is_not_rewritten_when_nothing_changed(tmp_path):
    known = KnownKeys(str(tmp_path))
    repository_id, key_id = os.urandom(16), os.urandom(16)
    known.remember(repository_id, key_id)
    before = os.stat(known.path).st_ino
    known.remember(repository_id, key_id)
    assert os.stat(known.path).st_ino == before
    known.remember(repository_id, None)  # opened with the recovery code: nothing to remember
    assert known.key_ids() == [key_id]

"""Format version 4 (docs/FORMAT.md section 7.2): what a pack shows to someone without the key.

Version 3 packs show every blob's start (clear `01 01` bytes), the header's length (a clear
u32 at the end, hence the blob count) and, in small packs, each blob's exact size. These
tests pin down that version 4 shows none of it, that older repositories keep their own
layout, and that the chunker of a version-4 repository is keyed by its whole gear table.
"""

from __future__ import annotations

import io
import itertools
import os
import random
import struct

import pytest

from agent.crypto import ids
from agent.crypto.kdf import KdfParams
from agent.errors import IntegrityError
from agent.repo import layout
from agent.repo.chunker import Chunker
from agent.repo.pack import (
    BLOB_DATA,
    BLOB_TREE,
    PAD_MINIMUM,
    TRAILER_SIZE,
    padded_length,
    padme,
)
from agent.repo.repository import FORMAT_VERSION, Repository
from agent.storage.memory import MemoryStorage

FAST = KdfParams(memory_kib=8192, iterations=1)
PASSPHRASE = b"phrase de passe du cabinet"


@pytest.fixture
def deterministic_nonces(monkeypatch):
    """Nonces (and ids) from a seeded generator, so that no test depends on luck: with
    os.urandom, a version-4 blob would start with `01 01` once in 65,536."""
    rng = random.Random(2026)
    monkeypatch.setattr(os, "urandom", lambda n: rng.randbytes(n))


def _repo(version: int = 4, cipher: str = "xchacha20-poly1305", level: int | None = 3) -> Repository:
    return Repository.init(MemoryStorage(), PASSPHRASE, cipher=cipher, compression_level=level, kdf_params=FAST,
                           format_version=version)


def _only_pack(repo: Repository) -> tuple[bytes, list]:
    [pack_id] = list(repo.index.pack_ids())
    return repo.read_pack(pack_id)


def _index_sizes(repo: Repository) -> list[int]:
    return [info.size for info in repo.storage.list(layout.INDEX_PREFIX)]


def test_a_version_4_repository_is_still_made_for_tests_and_opens_as_version_4():
    """`init` writes version 5 (test_format_v5.py); these tests make version-4 repositories,
    whose layout (section 7.2) older repositories keep, and version 5 shares but for its trailer."""
    repo = _repo()
    assert FORMAT_VERSION == 5 and repo.config.format_version == 4
    assert Repository.open(repo.storage, PASSPHRASE).config.format_version == 4


@pytest.mark.parametrize("cipher", ["xchacha20-poly1305", "aes-256-gcm"])
def test_a_v4_pack_has_no_clear_marker_at_blob_starts_nor_a_clear_header_length(deterministic_nonces, cipher):
    repo = _repo(cipher=cipher)
    for n in range(20):
        repo.store_blob(BLOB_DATA, os.urandom(200 + 37 * n))
    repo.flush()
    data, entries = _only_pack(repo)
    assert len(entries) == 20
    marker = bytes((1, {"xchacha20-poly1305": 1, "aes-256-gcm": 2}[cipher]))
    assert [data[e.offset : e.offset + 2] == marker for e in entries] == [False] * 20
    # The blobs are back to back from offset 0; what follows them is the header body,
    # then the 44-byte trailer, none of whose bytes gives the header's length in clear.
    assert entries[0].offset == 0
    assert all(a.offset + a.length == b.offset for a, b in itertools.pairwise(entries))
    header_length = len(data) - TRAILER_SIZE - (entries[-1].offset + entries[-1].length)
    assert struct.pack("<I", header_length) not in data[-TRAILER_SIZE:]
    assert marker not in (data[len(data) - TRAILER_SIZE - header_length :][:2], data[-TRAILER_SIZE:][:2])
    # The same blobs in a version-3 repository: every blob starts with the marker.
    old = _repo(version=3, cipher=cipher)
    for n in range(20):
        old.store_blob(BLOB_DATA, os.urandom(200 + 37 * n))
    old.flush()
    old_data, old_entries = _only_pack(old)
    assert all(old_data[e.offset : e.offset + 2] == marker for e in old_entries)


def test_blobs_in_one_padme_bucket_make_packs_and_index_files_of_identical_length():
    # Incompressible: each payload is 00 || data, so 4 + 1 + 3000 and 4 + 1 + 3050 bytes,
    # which Padmé rounds to one length (3072).
    a, b = os.urandom(3000), os.urandom(3050)
    assert padded_length(5 + len(a)) == padded_length(5 + len(b)) == 3072
    sizes = {}
    for version in (3, 4):
        for name, blobs in (("a", [a]), ("b", [b]), ("ab", [a, os.urandom(3010)]), ("ba", [b, os.urandom(2990)])):
            repo = _repo(version=version)
            for blob in blobs:
                repo.store_blob(BLOB_DATA, blob)
            repo.flush()
            data, _entries = _only_pack(repo)
            sizes[version, name] = (len(data), _index_sizes(repo))
    assert sizes[4, "a"] == sizes[4, "b"] and sizes[4, "ab"] == sizes[4, "ba"]
    assert sizes[3, "a"] != sizes[3, "b"] and sizes[3, "ab"] != sizes[3, "ba"]  # what version 3 shows


def test_small_blobs_of_any_size_look_alike():
    """Below the 512-byte floor every blob is stored in the same number of bytes."""
    lengths = set()
    for size in (1, 10, 60, 200, 400, 500):
        repo = _repo()
        repo.store_blob(BLOB_DATA, os.urandom(size))
        repo.flush()
        lengths.add(len(_only_pack(repo)[0]))
    assert len(lengths) == 1


def test_the_header_is_padded_so_the_blob_count_does_not_show():
    """Headers of 1 to 11 entries are one size; larger ones round with Padmé."""
    header_lengths = {}
    for count in (1, 2, 5, 11, 12, 40):
        repo = _repo()
        for n in range(count):
            repo.store_blob(BLOB_TREE, b'{"nodes":[]}' + str(n).encode())
        repo.flush()
        data, entries = _only_pack(repo)
        header_lengths[count] = len(data) - TRAILER_SIZE - (entries[-1].offset + entries[-1].length)
    assert header_lengths[1] == header_lengths[2] == header_lengths[5] == header_lengths[11] == PAD_MINIMUM + 40
    for count in (12, 40):  # zstd may shorten the entries a little; the result is a padded size
        plain = header_lengths[count] - 40
        assert plain == padded_length(plain) <= padded_length(4 + 1 + 45 * count)
    assert header_lengths[40] > header_lengths[12]


def test_padme_keeps_only_the_top_bits_of_a_length():
    for length in [*range(2, 5000), *random.Random(1).sample(range(5000, 1 << 26), 2000)]:
        padded = padme(length)
        exponent = length.bit_length() - 1
        kept = exponent.bit_length() + 1
        assert length <= padded <= length * 1.12 + 1
        assert padded % (1 << (exponent - kept + 1)) == 0, length  # low E - S bits are zero
    assert padme(1 << 20) == 1 << 20 and padme((1 << 20) + 1) == (1 << 20) + (1 << 15)


def test_a_header_or_trailer_from_another_pack_is_refused():
    repo = _repo()
    repo.store_blob(BLOB_DATA, os.urandom(300))
    repo.flush()
    for n in range(30):  # a header longer than the 512-byte floor
        repo.store_blob(BLOB_DATA, os.urandom(100 + n))
    repo.flush()
    (first, first_entries), (second, second_entries) = sorted(
        (repo.read_pack(p) for p in repo.index.pack_ids()), key=lambda pack: len(pack[1]))
    end_first = first_entries[-1].offset + first_entries[-1].length
    end_second = second_entries[-1].offset + second_entries[-1].length
    assert len(first) - end_first != len(second) - end_second  # two header lengths
    # The trailer only says where the header starts: another pack's trailer points at
    # bytes that are not a header, which then fail authentication.
    with pytest.raises(IntegrityError, match="authentication failed|impossible"):
        repo.pack_header_entries(first[:-TRAILER_SIZE] + second[-TRAILER_SIZE:], "p")
    with pytest.raises(IntegrityError, match="authentication failed|impossible"):
        repo.pack_header_entries(second[:-TRAILER_SIZE] + first[-TRAILER_SIZE:], "p")
    # Another pack's header and trailer after these blobs: the header opens (it is bound
    # to no pack, FORMAT.md section 13) but lists blobs that are not there, which each
    # blob's own authentication then refuses.
    grafted = first[:end_first] + second[end_second:]
    entries = repo.pack_header_entries(grafted, "p")
    assert entries == second_entries
    for entry in entries:
        with pytest.raises(IntegrityError):
            repo.decode_blob(entry.chunk_id, entry.kind, grafted[entry.offset : entry.offset + entry.length],
                             entry.raw_length, pack_name="p")
    truncated = first[: len(first) - 1]
    with pytest.raises(IntegrityError):
        repo.pack_header_entries(truncated, "p")


def test_a_v3_repository_keeps_writing_v3_packs_and_its_config():
    repo = _repo(version=3, level=None)
    storage = repo.storage
    config_bytes = storage.read(layout.CONFIG)
    for session in range(2):
        again = Repository.open(storage, PASSPHRASE)
        again.load_index()
        assert again.config.format_version == 3
        again.store_blob(BLOB_DATA, f"session {session}".encode() * 30)
        again.flush()
    assert storage.read(layout.CONFIG) == config_bytes
    reopened = Repository.open(storage, PASSPHRASE)
    reopened.load_index()
    for pack_id in reopened.index.pack_ids():
        data, entries = reopened.read_pack(pack_id)
        (header_length,) = struct.unpack("<I", data[-4:])  # the version-3 clear trailer
        assert len(data) - 4 - header_length == entries[-1].offset + entries[-1].length
        assert all(data[e.offset : e.offset + 2] == b"\x01\x01" for e in entries)
        assert [e.length for e in entries] == [42 + 1 + e.raw_length for e in entries]  # unpadded


def test_the_chunker_of_each_version_is_keyed_as_its_format_says():
    data = os.urandom(10 * 1024 * 1024)
    v3, v4 = _repo(version=3), _repo(version=4)

    def lengths(chunker: Chunker) -> list[int]:
        return [len(c) for c in chunker.chunks(io.BytesIO(data))]

    assert lengths(v3.new_chunker()) == lengths(Chunker(v3.config.chunker, v3.master.chunker_seed))
    by_table = lengths(Chunker(v4.config.chunker, gear=ids.gear_table(v4.master.secret)))
    assert lengths(v4.new_chunker()) == by_table
    assert by_table != lengths(Chunker(v4.config.chunker, v4.master.chunker_seed))


def test_index_files_are_padded_so_the_blob_count_does_not_show():
    """An index file lists one entry per blob: unpadded, its length counts the blobs of the
    packs it covers. In version 4 index files of a few entries are one length (the
    512-byte floor), where version 3 shows each count."""
    lengths: dict[tuple[int, int], list[int]] = {}
    for version in (3, 4):
        for count in (1, 2, 3, 5):
            repo = _repo(version=version)
            for n in range(count):
                repo.store_blob(BLOB_DATA, os.urandom(100 + n))
            repo.flush()
            lengths[version, count] = _index_sizes(repo)
    assert lengths[4, 1] == lengths[4, 2] == lengths[4, 3] == lengths[4, 5]
    assert len({tuple(lengths[3, count]) for count in (1, 2, 3, 5)}) == 4  # what version 3 shows

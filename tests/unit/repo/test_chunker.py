from __future__ import annotations

import io
import math
import os

import blake3
import pytest
from hypothesis import given, settings, strategies as st

from agent.crypto import ids
from agent.repo.chunker import Chunker, ChunkerParams


class Trickle(io.RawIOBase):
    """A stream that returns at most 1,000 bytes per read, like a pipe or a network file."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.position = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        size = len(self.data) if size < 0 else min(size, 1000)
        out = self.data[self.position : self.position + size]
        self.position += len(out)
        return out


@settings(max_examples=30)
@given(st.binary(max_size=200_000), st.sampled_from([4096, 32768]))
def test_fixed_chunks_are_aligned_and_complete_even_with_short_reads(data, size):
    chunks = list(Chunker.fixed_chunks(Trickle(data), size))
    assert b"".join(chunks) == data
    assert all(len(c) == size for c in chunks[:-1])
    assert not chunks or 0 < len(chunks[-1]) <= size


def _cut(data: bytes, hint: int | None) -> list[bytes]:
    chunker = Chunker(ChunkerParams(), seed=12345)
    return [bytes(c) for c in chunker.chunks(io.BytesIO(data), size_hint=hint)]


def test_in_memory_and_streamed_cutting_give_the_same_chunks():
    data = os.urandom(3 * 1024 * 1024) + b"\x00" * 100_000 + os.urandom(2 * 1024 * 1024)
    assert _cut(data, len(data)) == _cut(data, None)
    assert b"".join(_cut(data, len(data))) == data


def test_a_file_that_grew_after_stat_is_read_entirely():
    data = os.urandom(600_000)
    assert b"".join(_cut(data, 100)) == data  # stat said 100 bytes; all 600,000 are kept


def test_small_files_are_one_chunk_and_empty_files_none():
    assert _cut(b"lettre", 6) == [b"lettre"]
    assert _cut(b"", 0) == []


# Small sizes, so that tests cut many chunks quickly.
SMALL = ChunkerParams(min_size=256, avg_size=1024, max_size=8192)


class Recorded(io.RawIOBase):
    """A stream that notes the size of each read asked of it; `trickle` caps what a read
    returns, as a pipe or a network file does."""

    def __init__(self, data: bytes, trickle: int | None = None) -> None:
        self.data, self.trickle, self.position, self.asked = data, trickle, 0, []

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        self.asked.append(size)
        size = len(self.data) - self.position if size < 0 else size
        out = self.data[self.position : self.position + min(size, self.trickle or size)]
        self.position += len(out)
        return out


def test_fixed_chunks_of_a_large_file_read_in_short_pieces_are_aligned_on_its_start():
    data = os.urandom(100_000)
    chunks = [bytes(c) for c in Chunker.fixed_chunks(Trickle(data), 4096)]
    assert b"".join(chunks) == data
    assert [len(c) for c in chunks] == [4096] * 24 + [100_000 - 24 * 4096]


@pytest.mark.parametrize("trickle", [None, 1000])
def test_fixed_chunks_never_ask_for_more_than_the_read_size(trickle):
    # The read size is rounded down to whole chunks (10,000 -> 8,192 for 4 KiB pages), so a
    # full read ends on a chunk boundary; short reads are completed, never overshot, and a
    # block that already ends on a boundary is not topped up with reads of 0 bytes.
    data = os.urandom(50_000)
    stream = Recorded(data, trickle)
    chunks = [bytes(c) for c in Chunker.fixed_chunks(stream, 4096, read_size=10_000)]
    assert b"".join(chunks) == data
    assert [len(c) for c in chunks[:-1]] == [4096] * 12
    assert max(stream.asked) == 8192 and min(stream.asked) > 0


class Growing:
    """A file appended to while it is read: each read() returns what was written since."""

    def __init__(self, *parts: bytes) -> None:
        self.parts = list(parts)

    def read(self, size: int = -1) -> bytes:
        return self.parts.pop(0) if self.parts else b""


def test_what_a_file_gained_while_it_was_cut_in_memory_is_kept():
    first, added = os.urandom(5000), os.urandom(20_000)
    chunks = [bytes(c) for c in Chunker(SMALL, seed=12345).chunks(Growing(first, added), size_hint=len(first))]
    assert b"".join(chunks) == first + added


@pytest.mark.parametrize("size", [SMALL.min_size + 1, SMALL.max_size])
def test_a_file_of_at_most_the_largest_chunk_is_read_whole_in_one_read(size):
    # Cut in memory: one read() of the whole file and one to see that it did not grow,
    # instead of the streaming cutter's buffer of several times max_size for every file.
    stream = Recorded(os.urandom(size))
    assert sum(len(c) for c in Chunker(SMALL, seed=12345).chunks(stream, size_hint=size)) == size
    assert stream.asked == [-1, -1]


def test_the_seed_moves_chunk_boundaries():
    data = os.urandom(6 * 1024 * 1024)
    first = [len(c) for c in Chunker(ChunkerParams(), seed=1).chunks(io.BytesIO(data))]
    second = [len(c) for c in Chunker(ChunkerParams(), seed=2**62 + 7).chunks(io.BytesIO(data))]
    assert first != second


# ---- format version 4: a gear table derived whole from the key ---------------------------


def _reference_cuts(data: bytes, params: ChunkerParams, gear: list[int]) -> list[int]:
    """Chunk lengths by FastCDC 2020, normalized level 1, written from docs/FORMAT.md
    section 11 alone (one byte per step; pyfastcdc takes two at a time, same cuts)."""
    from pyfastcdc.py.constants import MASKS

    bits = round(math.log2(params.avg_size))
    mask_s, mask_l = MASKS[bits + 1], MASKS[bits - 1]
    lengths, start = [], 0
    while start < len(data):
        remaining = len(data) - start
        if remaining <= params.min_size:
            lengths.append(remaining)
            break
        end = min(remaining, params.max_size)
        center = min(params.avg_size, end)
        cut, h = end, 0
        for pos in range(params.min_size // 2 * 2, end // 2 * 2):
            h = ((h << 1) + gear[data[start + pos]]) & 0xFFFFFFFFFFFFFFFF
            if h & (mask_s if pos < center // 2 * 2 else mask_l) == 0:
                cut = pos
                break
        lengths.append(cut)
        start += cut
    return lengths


def _lengths(chunker: Chunker, data: bytes, hint: int | None) -> list[int]:
    return [len(c) for c in chunker.chunks(io.BytesIO(data), size_hint=hint)]


def test_the_key_derived_gear_table_is_the_one_the_compiled_chunker_cuts_with():
    """The installed table is really used, entry for entry: the compiled chunker's cut
    points equal those of an independent gear loop fed the same 256 entries."""
    gear = list(ids.gear_table(b"\x07" * 32))
    data = os.urandom(120_000) + bytes(range(256)) * 300 + os.urandom(60_000)
    expected = _reference_cuts(data, SMALL, gear)
    assert len(expected) > 20
    chunker = Chunker(SMALL, gear=gear)
    assert _lengths(chunker, data, None) == expected  # streamed
    big = ChunkerParams(min_size=256, avg_size=1024, max_size=len(data) + 1024)
    assert _lengths(Chunker(big, gear=gear), data, len(data)) == _reference_cuts(data, big, gear)  # in memory
    # ...and not the public table XOR a seed, nor a neighbouring key's table.
    assert expected != _reference_cuts(data, SMALL, [g ^ 1 for g in gear])


def test_two_keys_cut_the_same_data_at_different_points():
    data = os.urandom(12 * 1024 * 1024)
    first = _lengths(Chunker(ChunkerParams(), gear=ids.gear_table(b"\x01" * 32)), data, None)
    second = _lengths(Chunker(ChunkerParams(), gear=ids.gear_table(b"\x02" * 32)), data, None)
    assert sum(first) == sum(second) == len(data)
    assert first != second
    assert _lengths(Chunker(ChunkerParams(), gear=ids.gear_table(b"\x01" * 32)), data, None) == first


def test_gear_table_is_the_blake3_derive_key_xof_read_as_little_endian_u64():
    master = bytes(range(32))
    stream = blake3.blake3(master, derive_key_context="backupctl 2026-12 gear table").digest(length=2048)
    table = ids.gear_table(master)
    assert len(table) == 256 and len(set(table)) == 256
    assert table == tuple(int.from_bytes(stream[8 * i : 8 * i + 8], "little") for i in range(256))
    # The XOF's first 32 bytes are the ordinary derive_key output (BLAKE3 prefix property).
    assert stream[:32] == ids.derive_subkey(master, "backupctl 2026-12 gear table")


def test_a_chunker_takes_a_seed_or_a_table_not_both():
    with pytest.raises(ValueError):
        Chunker(ChunkerParams())
    with pytest.raises(ValueError):
        Chunker(ChunkerParams(), 5, gear=ids.gear_table(b"\x00" * 32))
    with pytest.raises(ValueError):
        Chunker(ChunkerParams(), gear=[1] * 255)


def test_a_gear_table_that_does_not_take_stops_the_backup_instead_of_cutting_with_another(monkeypatch):
    # The table is read back after it is written: chunking with the probe table would cut at
    # points an observer of the public table could predict.
    import ctypes

    from agent.errors import BackupctlError

    monkeypatch.setattr(ctypes, "memmove", lambda *args: None)
    with pytest.raises(BackupctlError) as raised:
        Chunker(SMALL, gear=ids.gear_table(b"\x07" * 32))
    assert str(raised.value) == "the chunker's gear table could not be set"

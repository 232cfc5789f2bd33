from __future__ import annotations

import io
import os

from hypothesis import given, settings, strategies as st

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


def test_the_seed_moves_chunk_boundaries():
    data = os.urandom(6 * 1024 * 1024)
    first = [len(c) for c in Chunker(ChunkerParams(), seed=1).chunks(io.BytesIO(data))]
    second = [len(c) for c in Chunker(ChunkerParams(), seed=2**62 + 7).chunks(io.BytesIO(data))]
    assert first != second

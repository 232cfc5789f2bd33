"""agent.engine.source.holes: a sparse file read through its data only gives the file's bytes."""

from __future__ import annotations

import os
import random

import pytest

from agent.engine.source.holes import HoleSkippingReader, is_sparse

MiB = 1 << 20


def _sparse_file(path, size: int, islands: list[tuple[int, int]]) -> bytes:
    with open(path, "wb") as handle:
        handle.truncate(size)
        for offset, length in islands:
            handle.seek(offset)
            handle.write(os.urandom(length))
    with open(path, "rb") as handle:
        return handle.read()


@pytest.mark.parametrize("seed", range(6))
def test_the_bytes_are_the_files_whatever_the_buffer_sizes(tmp_path, seed):
    rng = random.Random(seed)
    size = rng.randrange(1, 48) * MiB + rng.randrange(4096)
    islands = [(rng.randrange(size), rng.randrange(1, 300_000)) for _ in range(rng.randrange(0, 6))]
    if seed == 0:
        islands = [(0, 5000), (size - 100, 100)]  # data at both ends
    expected = _sparse_file(tmp_path / "f", max(size, *(o + n for o, n in islands)) if islands else size, islands)
    with open(tmp_path / "f", "rb", buffering=0) as handle:
        reader = HoleSkippingReader(handle)
        out = bytearray()
        while True:
            buffer = bytearray(rng.choice([1, 4096, 65536, 3 * MiB, 9 * MiB]))
            count = reader.readinto(buffer)
            if not count:
                break
            out += buffer[:count]
    assert bytes(out) == expected


def test_read_and_an_empty_file(tmp_path):
    expected = _sparse_file(tmp_path / "f", 20 * MiB, [(7 * MiB, 10)])
    assert is_sparse(os.stat(tmp_path / "f"))
    with open(tmp_path / "f", "rb", buffering=0) as handle:
        reader = HoleSkippingReader(handle)
        assert reader.read(3) == expected[:3] and reader.read() == expected[3:] and reader.read() == b""
    (tmp_path / "e").write_bytes(b"")
    with open(tmp_path / "e", "rb", buffering=0) as handle:
        assert HoleSkippingReader(handle).read() == b""


def _bytes_read() -> int:
    """What this process's read system calls returned so far (/proc/self/io, every thread)."""
    with open("/proc/self/io") as counters:
        return next(int(line.split()[1]) for line in counters if line.startswith("rchar:"))


def test_the_holes_are_not_read(tmp_path):
    """Served from memory: the file system is asked for the data only (what is produced
    cannot show it, the zeros are the same)."""
    expected = _sparse_file(tmp_path / "f", 64 * MiB, [(MiB, MiB), (50 * MiB, 2 * MiB)])
    with open(tmp_path / "f", "rb", buffering=0) as handle:
        reader = HoleSkippingReader(handle)
        before = _bytes_read()
        out = bytearray()
        buffer = bytearray(4 * MiB)
        while count := reader.readinto(buffer):
            out += buffer[:count]
        read = _bytes_read() - before
    assert bytes(out) == expected
    assert 3 * MiB <= read < 3 * MiB + 512 * 1024, f"{read} bytes read for 3 MiB of data in 64 MiB"

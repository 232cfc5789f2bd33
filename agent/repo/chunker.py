"""Content-defined chunking (the only user of pyfastcdc).

FastCDC 2020 (Xia et al.) with normalized chunking level 1, as in fastcdc-rs and
pyfastcdc's Cython build. Chunk boundaries depend on the key so that they do not
fingerprint known files:

* format versions 1-3: pyfastcdc's public gear table XOR a 63-bit seed derived from
  the master secret (its `seed` argument);
* format version 4: a gear table of 256 independent secret u64 derived from the master
  secret (agent.crypto.ids.gear_table). XOR with one seed keeps the public table's
  structure, which "Breaking and Fixing Content-Defined Chunking" (RWC 2025) used to
  recover Borg's chunker key.

pyfastcdc 0.3 takes only a seed. Its compiled FastCDC object keeps the table it cuts
with in two heap arrays of 256 u64 (the table and the table shifted left by one) that
it allocates whenever the seed is not 0, and reads them on every cut through a pointer
in its own C struct. `_install_gear_table` writes the key's table into those two
arrays: the cutting loop stays the compiled one (same speed, docs/BENCHMARKS.md), and
no pure-Python chunker is on the hot path. It first identifies the struct by values
it must hold (the masks for these sizes, then each table pointer twice), reads the
arrays back and compares them with the seed-XOR table it expects before writing, and
reads them back after; any other layout (another pyfastcdc) stops with an error
instead of chunking with an unknown table. tests/unit/repo/test_chunker.py checks
the cut points against an independent pure-Python gear loop with the same table.

Sizes: minimum 256 KiB, pyfastcdc "average" parameter 1 MiB (the expected chunk is
about min + avg = 1.25 MiB), maximum 8 MiB. Chunks of about a megabyte keep the
index small (about 800 entries per GiB) while a letter of 2-60 KiB is one chunk and
a 2 % page rewrite in a large database touches a bounded set of chunks.
"""

from __future__ import annotations

import ctypes
import io
import struct
from dataclasses import dataclass
from typing import Iterator, Protocol, Sequence

from pyfastcdc.cy import FastCDC
from pyfastcdc.py.constants import GEAR, GEAR_LS, MASKS
from pyfastcdc.utils import logarithm2

from agent.errors import BackupctlError

MIN_SIZE = 256 * 1024
AVG_SIZE = 1024 * 1024
MAX_SIZE = 8 * 1024 * 1024
ALGORITHM = "fastcdc-2020-nc1"
# Chunk size for files declared as databases ([source] databases): a multiple of every
# common page size (SQLite 4 KiB, PostgreSQL 8 KiB, InnoDB 16 KiB).
DEFAULT_DATABASE_CHUNK_SIZE = 32 * 1024


@dataclass(frozen=True)
class ChunkerParams:
    algorithm: str = ALGORITHM
    min_size: int = MIN_SIZE
    avg_size: int = AVG_SIZE
    max_size: int = MAX_SIZE

    def as_dict(self) -> dict[str, object]:
        return {
            "algorithm": self.algorithm,
            "min_size": self.min_size,
            "avg_size": self.avg_size,
            "max_size": self.max_size,
        }


NORMALIZED_CHUNKING = 1
_U64 = (1 << 64) - 1
# A seed that only makes pyfastcdc allocate its own table arrays (a seed of 0 would
# make it point at the shared public table); its table is overwritten at once.
_PROBE_SEED = 0x2545F4914F6CDD1D


class ByteStream(Protocol):
    """What the chunker reads: an open file, a dump's pipe, the backup's hole-skipping
    reader. `read` is all it needs; pyfastcdc's cut_stream uses `readinto` instead when the
    stream has one (all three do)."""

    def read(self, size: int = -1, /) -> bytes: ...


class Chunker:
    def __init__(self, params: ChunkerParams, seed: int | None = None, *,
                 gear: Sequence[int] | None = None) -> None:
        """Either `seed` (format versions 1-3) or `gear`, the 256-entry table (version 4)."""
        if (seed is None) == (gear is None):
            raise ValueError("a chunker takes either a seed or a gear table")
        self.params = params
        self._fastcdc = FastCDC(
            params.avg_size,
            min_size=params.min_size,
            max_size=params.max_size,
            normalized_chunking=NORMALIZED_CHUNKING,
            seed=_PROBE_SEED if gear is not None else seed,
        )
        if gear is not None:
            _install_gear_table(self._fastcdc, params, gear)

    def chunks(self, stream: ByteStream, size_hint: int | None = None) -> Iterator[bytes | memoryview]:
        """Yield the chunks of `stream`.

        A file of at most `max_size` bytes (by far the most common: letters, scans) is
        read whole and cut in memory; cut_stream would allocate its own buffer of
        several times `max_size` for every file, which measured as 20 % of a backup's
        time on a tree of 5,000 letters.
        """
        if size_hint is not None and size_hint <= self.params.max_size:
            data = stream.read()
            if len(data) <= self.params.min_size:
                if data:
                    yield data
                return
            view = memoryview(data)
            for chunk in self._fastcdc.cut_buf(view):
                yield view[chunk.offset : chunk.offset + chunk.length]
            rest = stream.read()  # the file grew while being read: cut the rest as a stream
            if rest:
                yield from self.chunks(io.BytesIO(rest))
            return
        for chunk in self._fastcdc.cut_stream(stream):
            # cut_stream reuses its buffer; copy before the next chunk is cut.
            yield bytes(chunk.data)

    @staticmethod
    def fixed_chunks(stream: ByteStream, size: int, *, read_size: int = 1024 * 1024) -> Iterator[memoryview]:
        """Fixed-size chunks aligned on the file's start, for database files.

        A database rewrites pages in place at fixed offsets; content-defined chunks of a
        megabyte around each rewritten 8 KiB page would store nearly the whole file again
        every week (measured in docs/BENCHMARKS.md). Chunks that are a multiple of the
        page size, aligned like the pages, store only the blocks that changed. The file
        is read a megabyte at a time (one read per 32 KiB block measured 20 % slower).
        """
        read_size = max(size, read_size - read_size % size)
        while True:
            block = stream.read(read_size)
            while block and len(block) % size:  # short reads: pipes, network file systems
                more = stream.read(read_size - len(block))
                if not more:
                    break
                block += more
            if not block:
                return
            view = memoryview(block)
            for start in range(0, len(view), size):
                yield view[start : start + size]


def _install_gear_table(fastcdc: FastCDC, params: ChunkerParams, gear: Sequence[int]) -> None:
    """Make `fastcdc` (built with _PROBE_SEED) cut with `gear`; see the module docstring."""
    if len(gear) != 256 or not all(0 <= g <= _U64 for g in gear):
        raise ValueError("a gear table is 256 unsigned 64-bit integers")
    size = type(fastcdc).__basicsize__
    words = struct.unpack(f"<{size // 8}Q", ctypes.string_at(id(fastcdc), size))
    bits = logarithm2(params.avg_size)
    mask_s, mask_l = MASKS[bits + NORMALIZED_CHUNKING], MASKS[bits - NORMALIZED_CHUNKING]
    masks = (mask_s, mask_l, mask_s << 1, mask_l << 1)
    probe = bytes(struct.pack("<256Q", *(g ^ _PROBE_SEED for g in GEAR)))
    probe_ls = bytes(struct.pack("<256Q", *(g ^ ((_PROBE_SEED << 1) & _U64) for g in GEAR_LS)))
    # _Config ends with mask_s, mask_l, mask_s_ls, mask_l_ls, gear, gear_ls; the object
    # then holds gear_holder, gear_holder_ls: the same two pointers.
    places = [i for i in range(len(words) - 7)
              if tuple(words[i : i + 4]) == masks
              and words[i + 4] == words[i + 6] != 0 and words[i + 5] == words[i + 7] != 0]
    if len(places) != 1 or ctypes.string_at(words[places[0] + 4], 2048) != probe \
            or ctypes.string_at(words[places[0] + 5], 2048) != probe_ls:
        raise BackupctlError(
            "the installed pyfastcdc cannot take this repository's key-derived gear table "
            "(its compiled chunker is not laid out as pyfastcdc 0.3's)",
            hint="install pyfastcdc 0.3.x (pip install 'pyfastcdc>=0.3,<0.4')")
    table = struct.pack("<256Q", *gear)
    table_ls = struct.pack("<256Q", *((g << 1) & _U64 for g in gear))
    ctypes.memmove(words[places[0] + 4], table, 2048)
    ctypes.memmove(words[places[0] + 5], table_ls, 2048)
    if ctypes.string_at(words[places[0] + 4], 2048) != table \
            or ctypes.string_at(words[places[0] + 5], 2048) != table_ls:
        raise BackupctlError("the chunker's gear table could not be set")

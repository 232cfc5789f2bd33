"""Pack files: many encrypted blobs in one stored object.

Layout of format versions 1-3 (docs/FORMAT.md section 7.1):

    blob envelope 1 | blob envelope 2 | ... | header envelope | u32 LE header length

Layout of format version 4 (section 7.2): nothing in clear. Every part is an envelope
without its two clear bytes (version 1 and the repository's cipher id are implied, and
still authenticated), and every plaintext but the trailer's is padded (`pad`):

    blob body 1 | blob body 2 | ... | header body | trailer body (44 bytes)

The trailer's 4-byte plaintext is the header body's length, so the blob count, the
blob boundaries and the header's place are visible only to the key holder.

Format version 5 (section 7.3) is version 4's layout with a 48-byte trailer whose 8-byte
plaintext is `u32 format version (5) | u32 header body length`: a pack says its own
version, inside its authenticated bytes, to a reader that has nothing but the pack and
the key.

The header envelope's plaintext (after its compression byte) is a sequence of
45-byte entries, one per blob, in file order:

    u8 kind (0 data, 1 tree) | 32-byte chunk id | u32 offset | u32 stored length |
    u32 plaintext length

The pack's name is the SHA-256 of all its bytes, so anyone can verify storage
integrity without the key. The header makes a pack self-describing: the index can be
rebuilt from the packs alone.
"""

from __future__ import annotations

import hashlib
import mmap
import struct
from typing import NamedTuple

from agent.errors import IntegrityError
from agent.repo.layout import ChunkId, PackId

BLOB_DATA = 0
BLOB_TREE = 1
ENTRY = struct.Struct("<B32sIII")
TRAILER = struct.Struct("<I")
TARGET_PACK_SIZE = 16 * 1024 * 1024
MAX_HEADER_SIZE = 16 * 1024 * 1024

# Format version 4.
LENGTH_PREFIX = struct.Struct("<I")
TRAILER_PLAIN = struct.Struct("<I")
BODY_OVERHEAD = 24 + 16  # nonce and tag of an envelope without its two clear bytes
TRAILER_SIZE = BODY_OVERHEAD + TRAILER_PLAIN.size
# Format version 5: the trailer's plaintext is the format version, then the header's length.
TRAILER_PLAIN_V5 = struct.Struct("<II")
TRAILER_SIZE_V5 = BODY_OVERHEAD + TRAILER_PLAIN_V5.size
# Every padded plaintext is at least this long: Padmé alone would show the exact size
# of the smallest blobs (it rounds nothing below 8 bytes and little below 256).
PAD_MINIMUM = 512


class PackEntry(NamedTuple):
    """One blob of a pack. A named tuple rather than a frozen dataclass: one is made per
    blob written and per entry read back (agent/repo/index.py PackEntries), and a frozen
    dataclass's __init__ (object.__setattr__ for each field) cost about six times as much."""

    kind: int
    chunk_id: ChunkId
    offset: int
    length: int
    raw_length: int


def encode_header_entries(entries: list[PackEntry]) -> bytes:
    return b"".join(
        ENTRY.pack(e.kind, e.chunk_id, e.offset, e.length, e.raw_length) for e in entries
    )


def decode_header_entries(plain: bytes, *, what: str) -> list[PackEntry]:
    if len(plain) % ENTRY.size:
        raise IntegrityError(f"{what}: header length {len(plain)} is not a multiple of {ENTRY.size}")
    entries = []
    for kind, chunk_id, offset, length, raw_length in ENTRY.iter_unpack(plain):
        if kind not in (BLOB_DATA, BLOB_TREE):
            raise IntegrityError(f"{what}: unknown blob kind {kind}")
        entries.append(PackEntry(kind, ChunkId(chunk_id), offset, length, raw_length))
    return entries


def split_pack(data: bytes, *, what: str) -> tuple[bytes, int]:
    """Return (header envelope, header offset) of a whole pack."""
    if len(data) < TRAILER.size:
        raise IntegrityError(f"{what}: too short to be a pack")
    (header_length,) = TRAILER.unpack_from(data, len(data) - TRAILER.size)
    start = len(data) - TRAILER.size - header_length
    if header_length > MAX_HEADER_SIZE or start < 0:
        raise IntegrityError(f"{what}: header length {header_length} is impossible")
    return data[start : len(data) - TRAILER.size], start


def padme(length: int) -> int:
    """Padmé (Nikitin et al., "Reducing Metadata Leakage from Encrypted Files and
    Communication with PURBs", PETS 2019): round `length` up so that only its top
    log2(log2(length)) + 2 bits remain; costs at most 1/2^S (6.25 % from 512 bytes to
    64 KiB, 3.125 % above) and leaks O(log log L) bits of the length instead of log L."""
    if length < 2:
        return length
    exponent = length.bit_length() - 1          # floor(log2 L)
    size_bits = exponent.bit_length()           # floor(log2 E) + 1
    mask = (1 << (exponent - size_bits)) - 1
    return (length + mask) & ~mask


def padded_length(length: int) -> int:
    return padme(max(length, PAD_MINIMUM))


def pad(payload: bytes) -> bytes:
    """u32 LE len(payload) || payload || zero bytes, to padded_length(4 + len(payload))."""
    length = LENGTH_PREFIX.size + len(payload)
    return LENGTH_PREFIX.pack(len(payload)) + payload + bytes(padded_length(length) - length)


def pad_parts(method: int, body: bytes | memoryview) -> bytearray:
    """`pad(bytes((method,)) + body)`, built in one buffer: the body is copied once."""
    length = LENGTH_PREFIX.size + 1 + len(body)
    plain = bytearray(padded_length(length))
    LENGTH_PREFIX.pack_into(plain, 0, 1 + len(body))
    plain[LENGTH_PREFIX.size] = method
    plain[LENGTH_PREFIX.size + 1 : length] = body
    return plain


def unpad(plain: bytes, *, what: str) -> bytes:
    if len(plain) < LENGTH_PREFIX.size:
        raise IntegrityError(f"{what}: padded plaintext too short")
    (length,) = LENGTH_PREFIX.unpack_from(plain)
    end = LENGTH_PREFIX.size + length
    if end > len(plain) or plain.count(0, end) != len(plain) - end:  # counted in place, no copy
        raise IntegrityError(f"{what}: bad padding")
    return plain[LENGTH_PREFIX.size : end]


def split_trailer(data: bytes, *, what: str, trailer_size: int = TRAILER_SIZE) -> bytes:
    """The trailer body of a whole version-4 (or, with TRAILER_SIZE_V5, version-5) pack."""
    if len(data) < trailer_size:
        raise IntegrityError(f"{what}: too short to be a pack")
    return data[len(data) - trailer_size :]


def header_body(data: bytes, header_length: int, *, what: str, trailer_size: int = TRAILER_SIZE) -> tuple[bytes, int]:
    """(header body, its offset) of a whole version-4 or -5 pack, from the trailer's length."""
    start = len(data) - trailer_size - header_length
    if header_length > MAX_HEADER_SIZE or header_length < BODY_OVERHEAD or start < 0:
        raise IntegrityError(f"{what}: header length {header_length} is impossible")
    return data[start : len(data) - trailer_size], start


class PackBuilder:
    """Accumulates sealed blobs until the pack reaches its target size.

    The parts are sealed straight into the builder's buffer (`reserve` gives each its
    place; several threads may seal into their places at once), so a pack's bytes are
    written once, not sealed into one object per blob and then joined into another.
    The buffer is an anonymous mapping of the target size plus room for the largest
    chunk: untouched pages cost no memory, and it goes back to the system with the pack.
    A part that does not fit (a large tree) starts another buffer, joined at the end.
    """

    def __init__(self, capacity: int = TARGET_PACK_SIZE + 9 * 1024 * 1024) -> None:
        self.entries: list[PackEntry] = []
        self.size = 0
        self.writers = 0  # parts reserved and not yet sealed into their place
        self.closed = False  # full: taken out of the repository's open builders
        self.failed = False  # a part was never sealed: the pack must not be written
        self._capacity = capacity
        self._segments: list[memoryview] = []
        self._buffer: mmap.mmap | None = None
        self._used = 0

    def reserve(self, kind: int, chunk_id: ChunkId, length: int, raw_length: int) -> memoryview:
        """The place of the next part, `length` bytes; the caller seals into it, then
        says so with `done_writing` (under the same lock as this call)."""
        if self._buffer is None or self._used + length > len(self._buffer):
            self._close_segment()
            self._buffer = mmap.mmap(-1, max(self._capacity - self.size, length, 1))
            self._used = 0
        view = memoryview(self._buffer)[self._used : self._used + length]
        self.entries.append(PackEntry(kind, chunk_id, self.size, length, raw_length))
        self._used += length
        self.size += length
        self.writers += 1
        return view

    def done_writing(self) -> None:
        self.writers -= 1

    def add(self, kind: int, chunk_id: ChunkId, envelope: bytes | memoryview, raw_length: int) -> None:
        """A part sealed elsewhere (a worker process), copied into its place."""
        view = self.reserve(kind, chunk_id, len(envelope), raw_length)
        view[:] = envelope
        view.release()
        self.done_writing()

    def is_full(self, target: int = TARGET_PACK_SIZE) -> bool:
        return self.size >= target

    def finish(self, header_envelope: bytes) -> tuple[PackId, bytes | memoryview]:
        """Versions 1-3: the header envelope, then its length in clear."""
        return self._finish(header_envelope + TRAILER.pack(len(header_envelope)))

    def finish_v4(self, header: bytes, trailer: bytes) -> tuple[PackId, bytes | memoryview]:
        """Versions 4 and 5: the header body, then the encrypted trailer holding its length
        (and in version 5 the format version)."""
        if len(trailer) not in (TRAILER_SIZE, TRAILER_SIZE_V5):
            raise ValueError("a pack trailer is 44 bytes (version 4) or 48 (version 5)")
        return self._finish(header + trailer)

    def _close_segment(self) -> None:
        if self._buffer is not None and self._used:
            self._segments.append(memoryview(self._buffer)[: self._used])
        self._buffer = None

    def _finish(self, tail: bytes) -> tuple[PackId, bytes | memoryview]:
        if self.writers:
            raise RuntimeError("a pack is finished while parts are still being sealed into it")
        if not self._segments and self._buffer is not None and self._used + len(tail) <= len(self._buffer):
            self._buffer[self._used : self._used + len(tail)] = tail  # the whole pack in one buffer
            data: bytes | memoryview = memoryview(self._buffer)[: self._used + len(tail)]
        else:
            self._close_segment()
            data = b"".join([*self._segments, tail])
        return PackId(hashlib.sha256(data).digest()), data

"""Pack files: many encrypted blobs in one stored object.

Layout (docs/FORMAT.md, "Packs"):

    blob envelope 1 | blob envelope 2 | ... | header envelope | u32 LE header length

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
import struct
from dataclasses import dataclass

from agent.errors import IntegrityError
from agent.repo.layout import ChunkId, PackId

BLOB_DATA = 0
BLOB_TREE = 1
ENTRY = struct.Struct("<B32sIII")
TRAILER = struct.Struct("<I")
TARGET_PACK_SIZE = 16 * 1024 * 1024
MAX_HEADER_SIZE = 16 * 1024 * 1024


@dataclass(frozen=True)
class PackEntry:
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


class PackBuilder:
    """Accumulates blob envelopes until the pack reaches its target size."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.entries: list[PackEntry] = []
        self.size = 0

    def add(self, kind: int, chunk_id: ChunkId, envelope: bytes, raw_length: int) -> None:
        self.entries.append(PackEntry(kind, chunk_id, self.size, len(envelope), raw_length))
        self.parts.append(envelope)
        self.size += len(envelope)

    def is_full(self, target: int = TARGET_PACK_SIZE) -> bool:
        return self.size >= target

    def finish(self, header_envelope: bytes) -> tuple[PackId, bytes]:
        data = b"".join(self.parts) + header_envelope + TRAILER.pack(len(header_envelope))
        return PackId(hashlib.sha256(data).digest()), data

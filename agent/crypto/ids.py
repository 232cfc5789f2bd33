"""Keyed BLAKE3 chunk ids, SHA-256 file fingerprints, and subkey derivation.

Chunk ids are keyed so that someone who can read the bucket cannot confirm that a
known document (a standard form, a published article) is stored there by hashing it.
"""

from __future__ import annotations

import hashlib
import struct

import blake3

ID_SIZE = 32

# Contexts of BLAKE3's derive_key mode; changing one changes every repository key,
# so they are part of the format (docs/FORMAT.md, "Key hierarchy").
CONTEXT_ENCRYPTION = "backupctl 2026-11 encryption key"
CONTEXT_CHUNK_ID = "backupctl 2026-11 chunk id key"
CONTEXT_CHUNKER_SEED = "backupctl 2026-11 chunker seed"
CONTEXT_AES_OBJECT_KEY = "backupctl 2026-11 aes-256-gcm object key"
# Format version 4: the chunker's whole gear table comes from the master secret
# (docs/FORMAT.md section 3.3), not a public table XOR one 64-bit seed.
CONTEXT_GEAR_TABLE = "backupctl 2026-12 gear table"
GEAR_ENTRIES = 256


def derive_subkey(master: bytes, context: str) -> bytes:
    """32-byte subkey of `master` for one purpose (BLAKE3 derive_key mode)."""
    return blake3.blake3(master, derive_key_context=context).digest()


def gear_table(master: bytes) -> tuple[int, ...]:
    """The 256 u64 entries of a version-4 repository's FastCDC gear table.

    The first 2,048 bytes of BLAKE3's derive_key output (an XOF) for the context
    CONTEXT_GEAR_TABLE, read as 256 little-endian u64. Every entry is independent and
    secret: the published attacks on keyed chunking ("Breaking and Fixing
    Content-Defined Chunking", RWC 2025) exploit tables that are a public table XOR
    one short seed, whose structure survives the XOR.
    """
    raw = blake3.blake3(master, derive_key_context=CONTEXT_GEAR_TABLE).digest(length=8 * GEAR_ENTRIES)
    return struct.unpack(f"<{GEAR_ENTRIES}Q", raw)


def chunk_id(id_key: bytes, data: bytes | memoryview) -> bytes:
    """Keyed BLAKE3-256 of a chunk's plaintext: its identity in the repository."""
    # max_threads lets BLAKE3 use both cores on large chunks; it releases the GIL.
    return blake3.blake3(data, key=id_key).digest()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def new_file_fingerprint() -> "hashlib._Hash":
    """Streaming SHA-256 for a file's whole content (rule C3)."""
    return hashlib.sha256()

"""Sealing one blob for a pack: its id, compression and encryption, without the repository.

`Repository` seals every blob through a `BlobSealer`, and the backup's worker processes
(agent.engine.small_files) seal small files with a copy of the same one, so a blob is
the same bytes (up to its random nonce) whichever process sealed it: the format has one
writer. A sealer holds the repository's encryption and chunk-id keys: it is handed only
to this program's own worker processes (over their pipe), never written anywhere.

The module imports only the crypto and compression modules, so a worker process starts
without the storage backends, the index or the CLI.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.crypto import aead, ids
from agent.repo import compression, layout
from agent.repo.layout import ChunkId
from agent.repo.pack import BLOB_TREE, pad, pad_parts
from agent.repo.versions import PADDED_FORMAT
AAD_PREFIX = b"backupctl\x00"


@dataclass(frozen=True)
class BlobSealer:
    enc_key: bytes
    id_key: bytes
    repository_id: bytes
    cipher: str
    compression_level: int | None
    format_version: int

    @property
    def padded(self) -> bool:
        return self.format_version >= PADDED_FORMAT

    def aad(self, kind: int, object_id: bytes) -> bytes:
        return AAD_PREFIX + self.repository_id + bytes((kind,)) + object_id

    def chunk_id(self, data: bytes | memoryview) -> ChunkId:
        return ChunkId(ids.chunk_id(self.id_key, data))

    def blob_kind(self, blob_type: int) -> int:
        """The envelope kind (associated data) of a data or tree blob in this format
        (versions 4 and 5 share the padded kinds: a blob's layout is the same in both)."""
        if self.padded:
            return layout.KIND_TREE_BLOB_V4 if blob_type == BLOB_TREE else layout.KIND_DATA_BLOB_V4
        return layout.KIND_TREE_BLOB if blob_type == BLOB_TREE else layout.KIND_DATA_BLOB

    def seal_part(self, kind: int, object_id: bytes, payload: bytes) -> bytes | memoryview:
        """One part of a pack: a whole envelope (versions 1-3), or (version 4) an envelope
        of the padded payload without its two clear bytes, which the repository's
        format and cipher imply and the associated data still covers (a view, not a
        copy of up to 8 MiB: the pack joins its parts once)."""
        if not self.padded:
            return aead.seal(self.enc_key, payload, self.aad(kind, object_id), cipher=self.cipher)
        sealed = aead.seal(self.enc_key, pad(payload), self.aad(kind, object_id), cipher=self.cipher)
        return memoryview(sealed)[2:]

    # A blob sealed in place: `blob_plaintext`, then `seal_blob_into` the part_length bytes
    # that its pack reserved for it. Same bytes as seal_part(blob_kind, id, compress(data)).

    def blob_plaintext(self, data: bytes | memoryview) -> bytes | bytearray:
        """What is encrypted for a blob: its compression byte and body, padded (version 4)."""
        method, body = compression.compress_parts(data, self.compression_level)
        if self.padded:
            return pad_parts(method, body)
        return bytes((method,)) + body

    def part_length(self, plaintext_length: int) -> int:
        return aead.sealed_length(plaintext_length, clear_header=not self.padded)

    def seal_blob_into(self, blob_type: int, chunk_id: bytes, plaintext: bytes | bytearray, out: memoryview) -> None:
        aead.seal_into(self.enc_key, plaintext, self.aad(self.blob_kind(blob_type), chunk_id), cipher=self.cipher,
                       out=out, clear_header=not self.padded)

    def seal_blob(self, blob_type: int, chunk_id: bytes, data: bytes | memoryview) -> bytearray:
        """The stored part of a data or tree blob, in a new buffer."""
        plaintext = self.blob_plaintext(data)
        part = bytearray(self.part_length(len(plaintext)))
        self.seal_blob_into(blob_type, chunk_id, plaintext, memoryview(part))
        return part

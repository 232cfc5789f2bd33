"""The index: where each blob lives (pack, offset, length).

Index file plaintext (docs/FORMAT.md, "Index files"), after its compression byte:

    u8 version (1)
    u32 n_superseded, then n_superseded x 16-byte index ids this file replaces
    u32 n_packs, then per pack:
        32-byte pack id | u32 n_entries | n_entries x pack entry (45 bytes, as in packs)

In memory the master index maps chunk id -> location for all index files.
"""

from __future__ import annotations

import struct
import threading
from dataclasses import dataclass
from typing import Iterable, Iterator

from agent.errors import IntegrityError
from agent.repo.layout import ChunkId, IndexId, PackId
from agent.repo.pack import BLOB_DATA, BLOB_TREE, ENTRY, PackEntry

INDEX_VERSION = 1
_U32 = struct.Struct("<I")


@dataclass(frozen=True, slots=True)  # one per blob in memory: no per-instance dict
class BlobLocation:
    pack_id: PackId
    kind: int
    offset: int
    length: int
    raw_length: int


def encode_index(packs: dict[PackId, list[PackEntry]], superseded: Iterable[IndexId] = ()) -> bytes:
    superseded = list(superseded)
    out = [bytes((INDEX_VERSION,)), _U32.pack(len(superseded)), *superseded, _U32.pack(len(packs))]
    for pack_id, entries in packs.items():
        out.append(pack_id)
        out.append(_U32.pack(len(entries)))
        out.extend(ENTRY.pack(e.kind, e.chunk_id, e.offset, e.length, e.raw_length) for e in entries)
    return b"".join(out)


def decode_index(data: bytes, *, what: str) -> tuple[dict[PackId, list[PackEntry]], list[IndexId]]:
    try:
        if data[0] != INDEX_VERSION:
            raise IntegrityError(f"{what}: unknown index version {data[0]}")
        pos = 1
        (n_superseded,) = _U32.unpack_from(data, pos)
        pos += 4
        if n_superseded * 16 > len(data):
            raise IntegrityError(f"{what}: impossible superseded count")
        superseded = [IndexId(data[pos + 16 * i : pos + 16 * (i + 1)]) for i in range(n_superseded)]
        pos += 16 * n_superseded
        (n_packs,) = _U32.unpack_from(data, pos)
        pos += 4
        packs: dict[PackId, list[PackEntry]] = {}
        for _ in range(n_packs):
            pack_id = PackId(data[pos : pos + 32])
            (n_entries,) = _U32.unpack_from(data, pos + 32)
            pos += 36
            end = pos + n_entries * ENTRY.size
            if len(pack_id) != 32 or end > len(data):
                raise IntegrityError(f"{what}: truncated pack list")
            entries = [PackEntry(*fields) for fields in ENTRY.iter_unpack(data[pos:end])]
            if any(e.kind not in (BLOB_DATA, BLOB_TREE) for e in entries):
                raise IntegrityError(f"{what}: unknown blob kind")
            packs[pack_id] = entries
            pos = end
        if pos != len(data):
            raise IntegrityError(f"{what}: {len(data) - pos} trailing bytes")
        return packs, superseded
    except (struct.error, IndexError):
        raise IntegrityError(f"{what}: truncated index") from None


class MasterIndex:
    """All known blobs. Thread-safe for the backup pipeline's concurrent lookups."""

    def __init__(self) -> None:
        # chunk id -> (pack id, its entry): the BlobLocation is made when looked up, not
        # for every blob of every index read (a backup only asks whether a blob is known).
        self._blobs: dict[bytes, tuple[PackId, PackEntry]] = {}
        self._packs: dict[PackId, list[PackEntry]] = {}
        self._lock = threading.Lock()

    def add_pack(self, pack_id: PackId, entries: list[PackEntry]) -> None:
        with self._lock:
            self._packs[pack_id] = entries
            setdefault = self._blobs.setdefault
            for e in entries:
                setdefault(e.chunk_id, (pack_id, e))

    def lookup(self, chunk_id: ChunkId) -> BlobLocation | None:
        found = self._blobs.get(chunk_id)
        if found is None:
            return None
        pack_id, e = found
        return BlobLocation(pack_id, e.kind, e.offset, e.length, e.raw_length)

    def __contains__(self, chunk_id: bytes) -> bool:
        return chunk_id in self._blobs

    def __len__(self) -> int:
        return len(self._blobs)

    def packs(self) -> dict[PackId, list[PackEntry]]:
        return dict(self._packs)

    def pack_ids(self) -> Iterator[PackId]:
        return iter(list(self._packs))

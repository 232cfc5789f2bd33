"""The index: where each blob lives (pack, offset, length).

Index file plaintext (docs/FORMAT.md, "Index files"), after its compression byte:

    u8 version (1 in repositories of formats 1 to 4; from format 5 on, the format version)
    u32 n_superseded, then n_superseded x 16-byte index ids this file replaces
    u32 n_packs, then per pack:
        32-byte pack id | u32 n_entries | n_entries x pack entry (45 bytes, as in packs)

In memory the master index maps chunk id -> location for all index files, keeping each
pack's entries as those 45-byte records (MasterIndex says why).
"""

from __future__ import annotations

import struct
import threading
from array import array
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Mapping, Sequence
from itertools import compress, count, islice, repeat
from operator import eq, itemgetter, lshift, or_, rshift
from typing import Iterable, Iterator, NamedTuple, overload

from agent.errors import IntegrityError
from agent.repo.layout import ChunkId, IndexId, PackId
from agent.repo.pack import BLOB_DATA, BLOB_TREE, ENTRY, PackEntry
from agent.repo.versions import DOCUMENT_VERSION_BEFORE_5, check_version, document_version

INDEX_VERSION = DOCUMENT_VERSION_BEFORE_5  # the version byte of formats 1 to 4
_U32 = struct.Struct("<I")
_VALID_KINDS = bytes((BLOB_DATA, BLOB_TREE))
# From each 45-byte record: its chunk id, or its chunk id's first 4 bytes as a number.
_RECORD_CHUNK_ID = struct.Struct("<x32s12x")
_RECORD_PREFIX = struct.Struct(">xI40x")
_ID_PREFIX = struct.Struct(">I")
_POSITION_BITS = 32
_POSITION_MASK = (1 << _POSITION_BITS) - 1
# Blobs of packs added since the sorted array was built are found through a dict (about
# 190 bytes a blob) until they are more than both RECENT_BLOBS_MIN and a
# RECENT_BLOBS_FRACTION-th of the array; the array is then built again with them.
RECENT_BLOBS_MIN = 4096
RECENT_BLOBS_FRACTION = 8


class BlobLocation(NamedTuple):
    """Where one blob is. A named tuple rather than a frozen dataclass: a restore makes one
    per blob, and a frozen dataclass's __init__ cost about six times as much."""

    pack_id: PackId
    kind: int
    offset: int
    length: int
    raw_length: int


class PackEntries(Sequence[PackEntry]):
    """One pack's blob list as its 45-byte records, the bytes an index file holds: a
    PackEntry object is made only for the entry read. Kept as objects, a million blobs
    cost about 300 MB more (bench/index_memory.py), and making them took most of a load."""

    __slots__ = ("raw",)

    def __init__(self, raw: bytes) -> None:
        if len(raw) % ENTRY.size:
            raise ValueError(f"{len(raw)} bytes are not whole {ENTRY.size}-byte pack entries")
        self.raw = bytes(raw)

    @classmethod
    def of(cls, entries: Iterable[PackEntry]) -> PackEntries:
        if isinstance(entries, PackEntries):
            return entries
        return cls(b"".join(ENTRY.pack(e.kind, e.chunk_id, e.offset, e.length, e.raw_length) for e in entries))

    def __len__(self) -> int:
        return len(self.raw) // ENTRY.size

    @overload
    def __getitem__(self, item: int) -> PackEntry: ...

    @overload
    def __getitem__(self, item: slice) -> PackEntries: ...

    def __getitem__(self, item: int | slice) -> PackEntry | PackEntries:
        if isinstance(item, slice):
            return PackEntries.of(self[number] for number in range(*item.indices(len(self))))
        number = item + len(self) if item < 0 else item
        if not 0 <= number < len(self):
            raise IndexError("pack entry index out of range")
        return PackEntry._make(ENTRY.unpack_from(self.raw, number * ENTRY.size))

    def __iter__(self) -> Iterator[PackEntry]:
        return map(PackEntry._make, ENTRY.iter_unpack(self.raw))

    def chunk_ids(self) -> Iterator[bytes]:
        return map(itemgetter(0), _RECORD_CHUNK_ID.iter_unpack(self.raw))

    def __eq__(self, other: object) -> bool:
        # Equal to a list of the same entries, as the list it replaces was.
        if isinstance(other, PackEntries):
            return self.raw == other.raw
        if isinstance(other, Sequence) and not isinstance(other, (str, bytes, bytearray)):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # like the list it replaces

    def __repr__(self) -> str:
        return f"PackEntries({list(self)!r})"


def encode_index(packs: Mapping[PackId, Sequence[PackEntry]], superseded: Iterable[IndexId] = (), *,
                 format_version: int = INDEX_VERSION) -> bytes:
    """An index file's plaintext for a repository of `format_version` (its first byte says
    that version from format 5 on, 1 before)."""
    superseded = list(superseded)
    out = [bytes((document_version(format_version),)), _U32.pack(len(superseded)), *superseded,
           _U32.pack(len(packs))]
    for pack_id, entries in packs.items():
        out.append(pack_id)
        out.append(_U32.pack(len(entries)))
        out.append(PackEntries.of(entries).raw)
    return b"".join(out)


def decode_index(data: bytes, *, what: str, format_version: int = INDEX_VERSION
                 ) -> tuple[dict[PackId, PackEntries], list[IndexId]]:
    """The packs an index file of a repository of `format_version` lists, each with its
    entries (PackEntries, a sequence of PackEntry), and the index files it supersedes. Its
    version byte must be the one that format writes (versions.check_version)."""
    try:
        check_version(data[0], format_version, what=what)
        pos = 1
        (n_superseded,) = _U32.unpack_from(data, pos)
        pos += 4
        if n_superseded * 16 > len(data):
            raise IntegrityError(f"{what}: impossible superseded count")
        superseded = [IndexId(data[pos + 16 * i : pos + 16 * (i + 1)]) for i in range(n_superseded)]
        pos += 16 * n_superseded
        (n_packs,) = _U32.unpack_from(data, pos)
        pos += 4
        packs: dict[PackId, PackEntries] = {}
        for _ in range(n_packs):
            pack_id = PackId(data[pos : pos + 32])
            (n_entries,) = _U32.unpack_from(data, pos + 32)
            pos += 36
            end = pos + n_entries * ENTRY.size
            if len(pack_id) != 32 or end > len(data):
                raise IntegrityError(f"{what}: truncated pack list")
            raw = bytes(data[pos:end])
            # Every record's first byte is its kind: all of them checked in one pass.
            if raw[:: ENTRY.size].translate(None, _VALID_KINDS):
                raise IntegrityError(f"{what}: unknown blob kind")
            packs[pack_id] = PackEntries(raw)
            pos = end
        if pos != len(data):
            raise IntegrityError(f"{what}: {len(data) - pos} trailing bytes")
        return packs, superseded
    except (struct.error, IndexError):
        raise IntegrityError(f"{what}: truncated index") from None




class MasterIndex:
    """All known blobs: chunk id -> where it is stored, the first location added for an id
    winning (a blob stored twice keeps its older copy). Thread-safe: the backup pipeline
    looks blobs up from several threads while packs are added.

    A restore of a million one-chunk files has a million blobs here. Kept as a dict of
    PackEntry objects that was about 370 bytes a blob (350 MiB); here it is about 60:
    - each pack's entries stay the 45-byte records of its index file (PackEntries);
    - blobs have positions 0, 1, 2... in the order they were added, pack after pack
      (`_starts` holds each pack's first position, `_pack_of` each position's pack, 4
      bytes a blob), and a sorted array('Q') holds (first 4 bytes of the chunk id << 32 |
      position) for each, 8 bytes a blob. A fan-out array (2 to 4 bytes a blob) gives
      where the keys of each value of the ids' first `bits` bits begin, one or two keys
      each, so a lookup reads the few keys of its bucket, in the order they were added,
      and compares the full id with the record of those whose 4 bytes are its own: the
      first equal one is the answer. Chunk ids are keyed BLAKE3 (and index files
      authenticated), so nobody without the key can make many ids share a bucket to
      slow lookups down.
    Building the arrays is a sort of Python ints and bisections, in C, and decoding an
    index file makes no object per blob: the load does no per-blob Python work.
    Packs added later (a backup's new packs) first go into `_recent`, a dict chunk id ->
    position, and the array is built again when more than RECENT_BLOBS_MIN blobs and an
    eighth of the array wait (so the dict adds at most ~24 bytes a blob): that sort is
    mostly a merge of the array's run with the new keys, and a backup that adds n blobs
    one pack at a time sorts about 9 n keys in all. Index files read at start are all
    added before the first question, so they make one array and no dict (if they hold
    more than RECENT_BLOBS_MIN blobs).
    Readers take `_view` (arrays, dict) in one read, so a rebuild by another thread never
    shows them a half-updated set; packs are only ever appended to `_raw`, `_starts`,
    `_pack_of` and `_ids`, and a key is in the view only once its pack is complete there.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._raw: list[bytes] = []  # pack number -> its 45-byte records
        self._starts: list[int] = []  # pack number -> position of its first blob
        self._pack_of = array("I")  # position -> pack number
        self._ids: list[PackId] = []  # pack number -> pack id
        self._numbers: dict[PackId, int] = {}  # pack id -> its latest pack number
        self._end = 0  # the next position
        # (sorted keys, fan-out, its shift, recent): see _rebuild.
        self._view: tuple[array[int], array[int], int, dict[bytes, int]] = (array("Q"), array("I", [0, 0]), 32, {})
        self._sorted_packs = 0  # packs [0, _sorted_packs) are in the array
        self._settled = 0  # packs [0, _settled) are in the array or the dict
        self._length: int | None = None

    def add_pack(self, pack_id: PackId, entries: Sequence[PackEntry]) -> None:
        raw = PackEntries.of(entries).raw
        with self._lock:
            count_ = len(raw) // ENTRY.size
            if self._end + count_ > _POSITION_MASK:
                raise OverflowError(f"an index of more than {_POSITION_MASK} blobs")
            self._raw.append(raw)
            self._starts.append(self._end)
            self._pack_of.extend(repeat(len(self._raw) - 1, count_))
            self._ids.append(pack_id)
            self._numbers[pack_id] = len(self._raw) - 1
            self._end += count_
            self._length = None

    def _settle(self) -> None:
        """Make the packs added since the last question findable (under the lock)."""
        last = len(self._raw)
        if self._settled == last:
            return
        sorted_keys, _fan, _shift, recent = self._view
        waiting = self._end - self._starts[self._sorted_packs]
        if waiting > RECENT_BLOBS_MIN and waiting > len(sorted_keys) // RECENT_BLOBS_FRACTION:
            self._rebuild()
            return
        for number in range(self._settled, last):
            entries = PackEntries(self._raw[number])
            start = self._starts[number]
            # Reversed, so that the first of an id's duplicates in this pack is kept.
            fresh = dict(zip(reversed(list(entries.chunk_ids())), range(start + len(entries) - 1, start - 1, -1),
                             strict=True))  # one id per entry
            for chunk_id in list(filter(recent.__contains__, fresh)):
                del fresh[chunk_id]  # seen in an earlier pack: that location stays
            recent.update(fresh)  # ids also in the array are found there first
        self._settled = last

    def _rebuild(self) -> None:
        last = len(self._raw)
        keys = self._view[0].tolist()
        for number in range(self._sorted_packs, last):
            prefixes = map(itemgetter(0), _RECORD_PREFIX.iter_unpack(self._raw[number]))
            keys.extend(map(or_, map(lshift, prefixes, repeat(_POSITION_BITS)), count(self._starts[number])))
        keys.sort()
        # Fan-out: fan[b] is where the keys whose ids start with the `bits` bits b begin,
        # one or two keys a bucket. (Fewer buckets would cost each lookup more keys to
        # read; more, a longer build: this bisects once a bucket.)
        bits = min(_POSITION_BITS, max(4, len(keys).bit_length() - 1))
        shift = 64 - bits
        fan = array("I", map(bisect_left, repeat(keys), map(lshift, range(1 << bits), repeat(shift))))
        fan.append(len(keys))
        self._view = (array("Q", keys), fan, shift - _POSITION_BITS, {})
        self._sorted_packs = self._settled = last

    def _chunk_id_at(self, position: int) -> tuple[int, int, bytes]:
        number = self._pack_of[position]
        offset = (position - self._starts[number]) * ENTRY.size
        return number, offset, self._raw[number][offset + 1 : offset + 33]

    def _find(self, chunk_id: bytes) -> tuple[int, int] | None:
        """(pack number, offset of its record) of the first location of `chunk_id`."""
        if self._settled != len(self._raw):
            with self._lock:
                self._settle()
        if len(chunk_id) != 32:
            return None  # no chunk id (startswith below compares 32 bytes)
        sorted_keys, fan, shift, recent = self._view
        prefix = _ID_PREFIX.unpack_from(chunk_id)[0]
        bucket = prefix >> shift
        # Inlined _chunk_id_at: a backup asks this once a file, a restore once a blob.
        at, end = fan[bucket], fan[bucket + 1]
        while at < end:  # mostly 0 or 1 keys: cheaper than a range
            key = sorted_keys[at]
            if key >> _POSITION_BITS == prefix:
                position = key & _POSITION_MASK
                number = self._pack_of[position]
                offset = (position - self._starts[number]) * ENTRY.size
                if self._raw[number].startswith(chunk_id, offset + 1):
                    return number, offset
            at += 1
        position = recent.get(chunk_id)
        if position is None:
            return None
        number, offset, _found = self._chunk_id_at(position)
        return number, offset

    def lookup(self, chunk_id: ChunkId) -> BlobLocation | None:
        found = self._find(chunk_id)
        if found is None:
            return None
        number, offset = found
        kind, _chunk_id, blob_offset, length, raw_length = ENTRY.unpack_from(self._raw[number], offset)
        return BlobLocation._make((self._ids[number], kind, blob_offset, length, raw_length))

    def __contains__(self, chunk_id: bytes) -> bool:
        return self._find(chunk_id) is not None

    def __len__(self) -> int:
        """The number of distinct chunk ids."""
        with self._lock:
            if self._length is None:
                if self._sorted_packs != len(self._raw):
                    self._rebuild()
                sorted_keys = self._view[0]
                # Only blobs whose ids share their first 4 bytes can be the same blob:
                # found in C, compared one by one.
                prefixes = map(rshift, sorted_keys, repeat(_POSITION_BITS))
                following = map(rshift, islice(sorted_keys, 1, None), repeat(_POSITION_BITS))
                groups: defaultdict[int, set[int]] = defaultdict(set)
                for at in compress(count(), map(eq, prefixes, following)):
                    groups[sorted_keys[at] >> _POSITION_BITS].update(
                        (sorted_keys[at] & _POSITION_MASK, sorted_keys[at + 1] & _POSITION_MASK))
                repeated = sum(len(positions) - len({self._chunk_id_at(p)[2] for p in positions})
                               for positions in groups.values())
                self._length = len(sorted_keys) - repeated
            return self._length

    def packs(self) -> dict[PackId, PackEntries]:
        with self._lock:
            return {pack_id: PackEntries(self._raw[number]) for pack_id, number in self._numbers.items()}

    def pack_ids(self) -> Iterator[PackId]:
        with self._lock:
            return iter(list(self._numbers))

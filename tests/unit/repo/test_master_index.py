"""agent.repo.index.MasterIndex: a compact chunk id -> location map (issue 19 point 5).

Each pack's entries stay 45-byte records; a sorted array of id prefixes finds them, and
packs added later wait in a small dict until the array is built again. These tests make
that dict tiny (RECENT_BLOBS_MIN) so both paths and the rebuilds between them run.
"""

from __future__ import annotations

import gc
import random
import struct
import sys
import threading
import time
import tracemalloc

import pytest

from agent.errors import IntegrityError
from agent.repo import index as index_module
from agent.repo.index import MasterIndex, decode_index, encode_index
from agent.repo.layout import ChunkId, IndexId, PackId
from agent.repo.pack import BLOB_DATA, BLOB_TREE, ENTRY, PackEntry


def _pack(rng: random.Random, count: int, ids: list[bytes] | None = None) -> list[PackEntry]:
    ids = ids if ids is not None else [rng.randbytes(32) for _ in range(count)]
    return [PackEntry(rng.choice((BLOB_DATA, BLOB_TREE)), ChunkId(chunk_id), 1000 * n, 100 + n, 200 + n)
            for n, chunk_id in enumerate(ids)]


def _check(index: MasterIndex, expected: dict[bytes, tuple[PackId, PackEntry]]) -> None:
    for chunk_id, (pack_id, entry) in expected.items():
        location = index.lookup(ChunkId(chunk_id))
        assert location is not None, chunk_id.hex()
        assert (location.pack_id, location.kind, location.offset, location.length, location.raw_length) == (
            pack_id, entry.kind, entry.offset, entry.length, entry.raw_length)
        assert chunk_id in index


@pytest.fixture
def small_recent(monkeypatch):
    monkeypatch.setattr(index_module, "RECENT_BLOBS_MIN", 8, raising=False)


def test_every_blob_found_through_the_array_and_the_recent_dict(small_recent):
    rng = random.Random(1)
    index = MasterIndex()
    expected = {}
    for number in range(40):
        pack_id = PackId(rng.randbytes(32))
        entries = _pack(rng, rng.randrange(0, 9))
        # As load_index adds them (decoded records) and as a backup does (a list).
        index.add_pack(pack_id, decode_index(encode_index({pack_id: entries}), what="i")[0][pack_id]
                       if number % 2 else entries)
        expected.update({e.chunk_id: (pack_id, e) for e in entries})
        if number % 3 == 0:  # questions between adds: some packs wait in the dict, some are rebuilt
            _check(index, expected)
    _check(index, expected)
    assert len(index) == len(expected)
    for _ in range(200):
        assert index.lookup(ChunkId(rng.randbytes(32))) is None
    assert ChunkId(rng.randbytes(32)) not in index
    assert index.lookup(ChunkId(b"")) is None and b"\x01" not in index


def test_first_location_added_wins_across_packs_and_within_one(small_recent):
    rng = random.Random(2)
    twice = rng.randbytes(32)
    index = MasterIndex()
    first, later = PackId(b"\x01" * 32), PackId(b"\x02" * 32)
    index.add_pack(first, _pack(rng, 0, [rng.randbytes(32), twice, twice]))  # twice in one pack too
    assert index.lookup(ChunkId(twice)).offset == 1000  # its first record
    for number in range(30):  # the later copies land in the dict, then in rebuilt arrays
        index.add_pack(PackId(bytes([3 + number]) * 32), _pack(rng, 0, [twice, *(rng.randbytes(32) for _ in range(5))]))
        location = index.lookup(ChunkId(twice))
        assert (location.pack_id, location.offset) == (first, 1000)
    index.add_pack(later, _pack(rng, 0, [twice]))
    assert index.lookup(ChunkId(twice)).pack_id == first
    assert len(index) == 2 + 30 * 5 + 0  # distinct ids: twice counted once


def test_ids_sharing_their_first_bytes_are_told_apart(small_recent):
    """The array sorts on 4 bytes of each id; the full id decides."""
    rng = random.Random(3)
    same_start = [b"\xab\xcd\xef\x01" + rng.randbytes(28) for _ in range(50)]
    index = MasterIndex()
    expected = {}
    for start in range(0, 50, 10):
        pack_id = PackId(rng.randbytes(32))
        entries = _pack(rng, 0, same_start[start:start + 10] + [rng.randbytes(32)])
        index.add_pack(pack_id, entries)
        expected.update({e.chunk_id: (pack_id, e) for e in entries})
    _check(index, expected)
    assert index.lookup(ChunkId(b"\xab\xcd\xef\x01" + b"\x00" * 28)) is None
    assert len(index) == 55


def test_packs_round_trip_and_a_pack_added_again():
    rng = random.Random(4)
    index = MasterIndex()
    packs = {PackId(rng.randbytes(32)): _pack(rng, n) for n in (3, 0, 7)}
    for pack_id, entries in packs.items():
        index.add_pack(pack_id, entries)
    assert index.packs() == packs
    assert list(index.packs()) == list(packs) == list(index.pack_ids())
    assert encode_index(index.packs()) == encode_index(packs)
    # Added again (listed by two index files): packs() shows the last list, as before;
    # its blobs keep their first location.
    pack_id, old = next(iter(packs.items()))
    index.add_pack(pack_id, old[:1])
    assert index.packs()[pack_id] == old[:1]
    assert list(index.pack_ids()) == list(packs)
    assert index.lookup(old[2].chunk_id).offset == old[2].offset


def test_pack_entries_behave_as_the_list_they_replace():
    rng = random.Random(5)
    entries = _pack(rng, 6)
    pack_id = PackId(b"\x07" * 32)
    decoded = decode_index(encode_index({pack_id: entries}), what="i")[0][pack_id]
    assert len(decoded) == 6 and list(decoded) == entries and decoded == entries and entries == decoded
    assert decoded[0] == entries[0] and decoded[-1] == entries[-1]
    assert decoded[1:4] == entries[1:4] and decoded[::2] == entries[::2]
    assert entries[3] in decoded
    with pytest.raises(IndexError):
        decoded[6]
    assert decoded != entries[:5] and decoded != b"x"



def test_pack_entries_compare_by_their_records_and_refuse_what_is_no_sequence():
    rng = random.Random(7)
    entries = _pack(rng, 4)
    pack_id = PackId(b"\x08" * 32)
    decoded = decode_index(encode_index({pack_id: entries}), what="i")[0][pack_id]
    same = index_module.PackEntries.of(entries)
    assert decoded == same and not decoded != same
    assert decoded != index_module.PackEntries.of(entries[:3])
    # Unequal to what is not a list of entries, as a list would be, without raising.
    assert decoded != None and decoded != 4 and decoded != "entries"  # noqa: E711
    assert repr(decoded) == f"PackEntries({entries!r})"


@pytest.mark.parametrize("position", [4, -5, 100])
def test_a_pack_entry_past_either_end_is_refused_as_a_list_would(position):
    entries = index_module.PackEntries.of(_pack(random.Random(8), 4))
    assert entries[-4] == entries[0] and entries[3] == entries[-1]
    with pytest.raises(IndexError, match="^pack entry index out of range$"):
        entries[position]


def test_an_id_stored_twice_around_another_of_the_same_first_bytes_counts_once():
    # The count compares the ids of each run of equal 4-byte prefixes as one group: a
    # pairwise look at neighbours would miss the copy of A two places further (A, B, A).
    rng = random.Random(9)
    first, other = (b"\x12\x34\x56\x78" + rng.randbytes(28) for _ in range(2))
    index = MasterIndex()
    index.add_pack(PackId(b"\x01" * 32), _pack(rng, 0, [first, other, first, rng.randbytes(32)]))
    assert len(index) == 3


def test_the_fan_out_has_a_bucket_for_each_value_of_the_first_bits_about_one_key_each():
    """A lookup reads only the keys of its bucket: one or two on average (2 to 4 bytes of
    fan-out a blob). Were the buckets fewer, or some never used, a restore of a million
    blobs would read many keys a lookup (and with one bucket, all of them)."""
    rng = random.Random(10)
    blobs = 5000
    index = MasterIndex()
    index.add_pack(PackId(b"\x01" * 32), _pack(rng, blobs))
    assert len(index) == blobs  # builds the array
    keys, fan, shift, _recent = index._view
    buckets = len(fan) - 1
    assert blobs / 2 < buckets <= blobs
    assert fan[0] == 0 and fan[-1] == blobs and list(fan) == sorted(fan)
    assert 0xFFFFFFFF >> shift == buckets - 1  # the largest prefix falls in the last bucket: all are used
    for bucket in range(buckets):
        assert all(keys[at] >> 32 >> shift == bucket for at in range(fan[bucket], fan[bucket + 1]))


def _plaintext(blobs: int, per_pack: int) -> bytes:
    rng = random.Random(6)
    out = [b"\x01", struct.pack("<I", 0), struct.pack("<I", blobs // per_pack)]
    for _ in range(blobs // per_pack):
        out.append(rng.randbytes(32) + struct.pack("<I", per_pack))
        out.extend(ENTRY.pack(BLOB_DATA, rng.randbytes(32), n * 500, 400, 300) for n in range(per_pack))
    return b"".join(out)


def _load(plain: bytes) -> MasterIndex:
    index = MasterIndex()
    for pack_id, entries in decode_index(plain, what="i")[0].items():
        index.add_pack(pack_id, entries)
    assert b"\x00" * 32 not in index  # the first question builds what is built lazily
    return index


def test_an_index_costs_under_70_bytes_a_blob():
    """A restore of a million one-chunk files holds a million blobs here: as a dict of
    PackEntry objects that was about 330 bytes each (330 MB); now 45-byte records and
    an 8-byte key each."""
    blobs = 20_000
    plain = _plaintext(blobs, 500)
    tracemalloc.start()
    try:
        index = _load(plain)
        kept, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert kept / blobs < 70
    assert len(index) == blobs


def test_loading_makes_no_python_object_per_blob():
    """Objects the garbage collector tracks made a load of a million blobs spend seconds
    in collections; records and an array of ints are not tracked."""
    plain = _plaintext(20_000, 500)
    gc.collect()
    before = len(gc.get_objects())
    index = _load(plain)
    assert len(gc.get_objects()) - before < 1000
    assert len(index) == 20_000


@pytest.mark.parametrize(
    "mangle, message",
    [
        (lambda raw: b"\x02" + raw[1:], "i says format version 2, the repository's config says format version 1: "
                                            "refused (a structure of another layout is never read as this one's)"),
        (lambda raw: raw[:-1], "i: truncated pack list"),
        (lambda raw: raw[:30], "i: truncated index"),
        (lambda raw: raw + b"\x00", "i: 1 trailing bytes"),
        (lambda raw: raw[:1] + struct.pack("<I", 2**32 - 1) + raw[5:], "i: impossible superseded count"),
        (lambda raw: raw[:61] + b"\x02" + raw[62:], "i: unknown blob kind"),
        (lambda raw: raw[:106] + b"\xff" + raw[107:], "i: unknown blob kind"),
    ],
)
def test_damaged_index_messages(mangle, message):
    raw = encode_index({PackId(b"\x07" * 32): [PackEntry(BLOB_DATA, ChunkId(b"\x01" * 32), 0, 1, 2),
                                                PackEntry(BLOB_TREE, ChunkId(b"\x02" * 32), 1, 1, 2)]},
                       [IndexId(b"\x09" * 16)])
    assert raw[61] == BLOB_DATA and raw[106] == BLOB_TREE  # the two kind bytes
    with pytest.raises(IntegrityError) as caught:
        decode_index(mangle(raw), what="i")
    assert str(caught.value) == message


def test_lookups_while_packs_are_added_from_another_thread(small_recent):
    """Every blob of a pack whose add_pack returned is found by the other threads, while
    rebuilds of the array and additions to the dict happen under them."""
    rng = random.Random(7)
    packs = [(PackId(rng.randbytes(32)), _pack(rng, rng.randrange(1, 12))) for _ in range(300)]
    index = MasterIndex()
    added = 0
    failures: list[str] = []
    done = threading.Event()

    def reader(seed: int) -> None:
        local = random.Random(seed)
        asked = 0
        while not done.is_set() or asked < 100:
            upto = added
            if not upto:
                continue
            pack_id, entries = packs[local.randrange(upto)]
            entry = local.choice(entries)
            location = index.lookup(entry.chunk_id)
            if location is None or (location.pack_id, location.offset) != (pack_id, entry.offset):
                failures.append(entry.chunk_id.hex())
            asked += 1

    threads = [threading.Thread(target=reader, args=(seed,)) for seed in range(3)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # threads interleave inside add_pack and lookup
    for thread in threads:
        thread.start()
    try:
        for number, (pack_id, entries) in enumerate(packs):
            index.add_pack(pack_id, entries)
            added = number + 1
            time.sleep(0)  # let the readers in between two packs too
    finally:
        done.set()
        for thread in threads:
            thread.join()
        sys.setswitchinterval(interval)
    assert failures == []
    assert len(index) == sum(len(entries) for _pack_id, entries in packs)


def test_more_blobs_than_positions_can_number_are_refused_not_wrapped(monkeypatch):
    # Positions are 32 bits in the sorted keys: past 2^32 - 1 blobs they would alias. Shown
    # with positions of 2 bits (up to 3 blobs) instead of 4 billion blobs.
    monkeypatch.setattr(index_module, "_POSITION_MASK", 3)
    rng = random.Random(11)
    index = MasterIndex()
    index.add_pack(PackId(b"\x01" * 32), _pack(rng, 2))
    with pytest.raises(OverflowError):
        index.add_pack(PackId(b"\x02" * 32), _pack(rng, 2))
    index.add_pack(PackId(b"\x03" * 32), _pack(rng, 1))  # up to the last position

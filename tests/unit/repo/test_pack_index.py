"""agent.repo.pack and agent.repo.index: binary encodings and their round trips."""

from __future__ import annotations

import hashlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.errors import IntegrityError
from agent.repo.index import MasterIndex, decode_index, encode_index
from agent.repo.layout import ChunkId, IndexId, PackId
from agent.repo.pack import (
    BLOB_DATA,
    BLOB_TREE,
    BODY_OVERHEAD,
    ENTRY,
    MAX_HEADER_SIZE,
    TRAILER,
    PackBuilder,
    PackEntry,
    decode_header_entries,
    encode_header_entries,
    header_body,
    unpad,
    split_pack,
)

SETTINGS = settings(max_examples=100, deadline=None, derandomize=True, database=None)

u32 = st.integers(min_value=0, max_value=2**32 - 1)
entries_strategy = st.lists(
    st.builds(PackEntry, st.sampled_from([BLOB_DATA, BLOB_TREE]), st.binary(min_size=32, max_size=32), u32, u32, u32),
    max_size=20,
)


def _entry(n: int, kind: int = BLOB_DATA) -> PackEntry:
    return PackEntry(kind, ChunkId(bytes([n]) * 32), 100 * n, 90 + n, 1000 + n)


# ---- pack header ---------------------------------------------------------------------


def test_entry_is_45_bytes_little_endian():
    assert ENTRY.size == 45
    raw = encode_header_entries([PackEntry(BLOB_TREE, ChunkId(b"\xaa" * 32), 1, 2, 3)])
    assert raw == b"\x01" + b"\xaa" * 32 + struct.pack("<III", 1, 2, 3)


@SETTINGS
@given(entries=entries_strategy)
def test_header_round_trip(entries):
    raw = encode_header_entries(entries)
    assert len(raw) == 45 * len(entries)
    assert decode_header_entries(raw, what="pack") == entries


def test_header_with_partial_entry_is_refused():
    raw = encode_header_entries([_entry(1), _entry(2)])
    for cut in (1, 44, 46):
        with pytest.raises(IntegrityError):
            decode_header_entries(raw[:-cut], what="pack")


@pytest.mark.parametrize("kind", [2, 3, 255])
def test_header_with_unknown_blob_kind_is_refused(kind):
    raw = bytearray(encode_header_entries([_entry(1)]))
    raw[0] = kind
    with pytest.raises(IntegrityError, match="kind"):
        decode_header_entries(bytes(raw), what="pack")


def test_pack_builder_and_split_pack():
    builder = PackBuilder()
    builder.add(BLOB_DATA, ChunkId(b"\x01" * 32), b"A" * 50, 40)
    builder.add(BLOB_TREE, ChunkId(b"\x02" * 32), b"B" * 70, 300)
    assert builder.size == 120
    assert builder.entries == [
        PackEntry(BLOB_DATA, ChunkId(b"\x01" * 32), 0, 50, 40),
        PackEntry(BLOB_TREE, ChunkId(b"\x02" * 32), 50, 70, 300),
    ]
    assert not builder.is_full(121)
    assert builder.is_full(120)
    header = b"H" * 33
    pack_id, data = builder.finish(header)
    assert data == b"A" * 50 + b"B" * 70 + header + TRAILER.pack(33)
    assert pack_id == hashlib.sha256(data).digest()
    assert split_pack(data, what="pack") == (header, 120)
    for entry in builder.entries:
        assert data[entry.offset : entry.offset + entry.length] in (b"A" * 50, b"B" * 70)


def test_split_pack_with_empty_header():
    assert split_pack(b"abc" + TRAILER.pack(0), what="p") == (b"", 3)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00",
        b"\x00\x00\x00",
        TRAILER.pack(1),  # header longer than the pack
        b"xx" + TRAILER.pack(3),
        b"x" * 100 + TRAILER.pack(2**32 - 1),
        b"x" * 100 + TRAILER.pack(16 * 1024 * 1024 + 1),
    ],
)
def test_split_pack_on_garbage_raises_integrity_error(data):
    with pytest.raises(IntegrityError):
        split_pack(data, what="pack")



def test_split_pack_at_its_limits():
    assert split_pack(TRAILER.pack(0), what="pack") == (b"", 0)  # the trailer alone: just long enough
    assert split_pack(b"HEAD" + TRAILER.pack(4), what="pack") == (b"HEAD", 0)  # a header that starts the pack
    largest = b"H" * MAX_HEADER_SIZE
    assert split_pack(b"x" + largest + TRAILER.pack(MAX_HEADER_SIZE), what="pack") == (largest, 1)



def test_a_version_4_header_of_just_a_nonce_and_a_tag_is_read():
    # The smallest header body: the envelope of an empty header (24-byte nonce, 16-byte tag).
    body = b"N" * BODY_OVERHEAD
    assert header_body(b"blobs" + body + b"T" * 8, BODY_OVERHEAD, what="pack", trailer_size=8) == (body, 5)
    with pytest.raises(IntegrityError) as raised:
        header_body(b"blobs" + body + b"T" * 8, BODY_OVERHEAD - 1, what="pack", trailer_size=8)
    assert str(raised.value) == f"pack: header length {BODY_OVERHEAD - 1} is impossible"

@pytest.mark.parametrize("data, message", [
    (b"\x00\x00\x00", "data/3f/ab: too short to be a pack"),
    (b"xx" + TRAILER.pack(3), "data/3f/ab: header length 3 is impossible"),
    (b"x" * 100 + TRAILER.pack(MAX_HEADER_SIZE + 1), f"data/3f/ab: header length {MAX_HEADER_SIZE + 1} is impossible"),
], ids=["three-bytes", "header-longer-than-the-pack", "header-over-16-MiB"])
def test_split_pack_names_the_pack_and_what_is_wrong(data, message):
    with pytest.raises(IntegrityError) as raised:
        split_pack(data, what="data/3f/ab")
    assert str(raised.value) == message

# ---- index -------------------------------------------------------------------------------

packs_strategy = st.dictionaries(st.binary(min_size=32, max_size=32), entries_strategy, max_size=5)
superseded_strategy = st.lists(st.binary(min_size=16, max_size=16), max_size=5)


@SETTINGS
@given(packs=packs_strategy, superseded=superseded_strategy)
def test_index_round_trip(packs, superseded):
    raw = encode_index(packs, superseded)
    decoded_packs, decoded_superseded = decode_index(raw, what="index")
    assert decoded_packs == packs
    assert decoded_superseded == superseded


def test_index_layout():
    pack_id = PackId(b"\x07" * 32)
    old = IndexId(b"\x09" * 16)
    raw = encode_index({pack_id: [_entry(1)]}, [old])
    assert raw == (b"\x01" + struct.pack("<I", 1) + old + struct.pack("<I", 1) + pack_id + struct.pack("<I", 1)
                   + encode_header_entries([_entry(1)]))


def test_empty_index_round_trip():
    assert decode_index(encode_index({}), what="index") == ({}, [])


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda raw: b"", id="empty"),
        pytest.param(lambda raw: b"\x02" + raw[1:], id="version"),
        pytest.param(lambda raw: raw[:-1], id="truncated-1"),
        pytest.param(lambda raw: raw[:-45], id="truncated-entry"),
        pytest.param(lambda raw: raw[:30], id="truncated-pack-id"),
        pytest.param(lambda raw: raw + b"\x00", id="trailing"),
        pytest.param(lambda raw: raw[:1] + struct.pack("<I", 2**32 - 1) + raw[5:], id="superseded-count"),
        pytest.param(lambda raw: raw[:21] + struct.pack("<I", 2**32 - 1) + raw[25:], id="pack-count"),
    ],
)
def test_damaged_index_raises_integrity_error(mangle):
    raw = encode_index({PackId(b"\x07" * 32): [_entry(1), _entry(2)]}, [IndexId(b"\x09" * 16)])
    with pytest.raises(IntegrityError):
        decode_index(mangle(raw), what="index")


def test_master_index_lookup_and_first_location_wins():
    index = MasterIndex()
    p1, p2 = PackId(b"\x01" * 32), PackId(b"\x02" * 32)
    index.add_pack(p1, [_entry(1), _entry(2, BLOB_TREE)])
    index.add_pack(p2, [PackEntry(BLOB_DATA, ChunkId(b"\x01" * 32), 7, 8, 9)])
    assert len(index) == 2
    assert ChunkId(b"\x01" * 32) in index
    assert ChunkId(b"\x03" * 32) not in index
    assert index.lookup(ChunkId(b"\x03" * 32)) is None
    first = index.lookup(ChunkId(b"\x01" * 32))
    assert (first.pack_id, first.offset, first.length, first.raw_length) == (p1, 100, 91, 1001)
    tree = index.lookup(ChunkId(b"\x02" * 32))
    assert tree.kind == BLOB_TREE
    assert set(index.pack_ids()) == {p1, p2}
    assert index.packs()[p2] == [PackEntry(BLOB_DATA, ChunkId(b"\x01" * 32), 7, 8, 9)]


def test_a_padded_plaintext_shorter_than_its_length_prefix_is_refused_by_name():
    with pytest.raises(IntegrityError) as raised:
        unpad(b"\x01", what="blob ab")
    assert str(raised.value) == "blob ab: padded plaintext too short"

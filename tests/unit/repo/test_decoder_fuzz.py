"""Every decoder of stored bytes raises IntegrityError on garbage, never anything else.

A decoder that lets KeyError, OverflowError, RecursionError or MemoryError escape turns
damaged data into an "internal error" instead of a precise report from `check`.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.errors import IntegrityError, UnsupportedFormat
from agent.repo import compression, layout, tree
from agent.repo.chunker import ChunkerParams
from agent.repo.index import decode_index, encode_index
from agent.repo.layout import SnapshotId
from agent.repo.pack import (
    TRAILER_SIZE,
    PackEntry,
    decode_header_entries,
    encode_header_entries,
    header_body,
    pad,
    split_pack,
    split_trailer,
    unpad,
)
from agent.repo.repository import StoredConfig
from agent.repo.snapshot import Snapshot

FUZZ = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
SNAP_ID = SnapshotId(b"\x5a" * 16)

json_scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=-(2**80), max_value=2**80)
                | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=15)


def _only_integrity_error(decode, data) -> None:
    try:
        decode(data)
    except IntegrityError:
        pass


# ---- binary decoders ---------------------------------------------------------------------

_VALID_INDEX = encode_index({b"\x01" * 32: [PackEntry(0, b"\x02" * 32, 0, 10, 20)]}, [b"\x03" * 16])
_VALID_HEADER = encode_header_entries([PackEntry(1, b"\x04" * 32, 5, 6, 7)])


def _mutations(valid: bytes):
    """Valid bytes with a few bytes changed, cut or appended: reaches the deep branches."""
    return st.one_of(
        st.binary(max_size=400),
        st.tuples(st.integers(0, len(valid) - 1), st.integers(0, 255)).map(
            lambda t: valid[: t[0]] + bytes((t[1],)) + valid[t[0] + 1 :]),
        st.integers(0, len(valid)).map(lambda n: valid[:n]),
        st.binary(max_size=50).map(lambda tail: valid + tail),
    )


@FUZZ
@given(data=_mutations(_VALID_INDEX))
def test_decode_index_raises_only_integrity_error(data):
    _only_integrity_error(lambda d: decode_index(d, what="index"), data)


@FUZZ
@given(data=_mutations(_VALID_HEADER))
def test_decode_header_entries_raises_only_integrity_error(data):
    _only_integrity_error(lambda d: decode_header_entries(d, what="pack"), data)


@FUZZ
@given(data=st.binary(max_size=400))
def test_split_pack_raises_only_integrity_error(data):
    try:
        header, start = split_pack(data, what="pack")
    except IntegrityError:
        return
    assert 0 <= start <= len(data) - 4
    assert data[start : len(data) - 4] == header


_ZSTD_PREFIX = b"\x01\x28\xb5\x2f\xfd"


# A frame header with a declared content size (frame header descriptor with the
# single-segment bit and each content-size field width), then arbitrary bytes.
_sized_frames = st.builds(
    lambda fhd, size, tail: _ZSTD_PREFIX + bytes((fhd,)) + size.to_bytes(8, "little")[: {0x20: 1, 0x60: 2,
                                                                                         0xA0: 4, 0xE0: 8}[fhd]] + tail,
    st.sampled_from([0x20, 0x60, 0xA0, 0xE0]),
    st.integers(min_value=0, max_value=2**64 - 1),
    st.binary(max_size=40),
)


@FUZZ
@given(
    data=st.one_of(st.binary(max_size=300), st.binary(max_size=300).map(lambda b: _ZSTD_PREFIX + b), _sized_frames),
    expected_size=st.one_of(st.none(), st.integers(min_value=0, max_value=10_000)),
)
def test_decompress_raises_only_integrity_error(data, expected_size):
    try:
        out = compression.decompress(data, expected_size=expected_size, what="blob")
    except IntegrityError:
        return
    if expected_size is not None:
        assert len(out) == expected_size


# ---- JSON decoders ----------------------------------------------------------------------------

node_dicts = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["file", "dir", "symlink"]) | json_scalars,
        "name": st.sampled_from(["a", "..", "", "x/y"]) | json_scalars,
        "name_b64": st.sampled_from(["YQ==", "Li4=", "!!"]) | json_scalars,
        "mode": json_scalars,
        "uid": json_scalars,
        "gid": json_scalars,
        "mtime_ns": json_scalars,
        "user": json_values,
        "group": json_values,
        "size": json_scalars,
        "sha256": json_values,
        "chunks": st.lists(st.sampled_from(["00" * 32, "zz"]) | json_scalars, max_size=3) | json_values,
        "subtree": st.sampled_from(["11" * 32, "1"]) | json_values,
        "target": json_values,
        "target_b64": json_values,
        "hardlink": json_values,
        "sparse": json_values,
    },
)


def _decode_tree_bytes(data: bytes) -> None:
    try:
        nodes = tree.decode_tree(data)
    except IntegrityError:
        return
    for node in nodes:
        assert b"/" not in node.name and node.name not in (b"", b".", b"..")


@FUZZ
@given(data=st.binary(max_size=300))
def test_decode_tree_arbitrary_bytes(data):
    _decode_tree_bytes(data)


@FUZZ
@given(value=json_values)
def test_decode_tree_arbitrary_json(value):
    _decode_tree_bytes(json.dumps(value).encode())


@FUZZ
@given(nodes=st.lists(node_dicts | json_values, max_size=3))
def test_decode_tree_arbitrary_nodes(nodes):
    _decode_tree_bytes(json.dumps({"nodes": nodes}).encode())


def test_decode_tree_infinite_number_raises_integrity_error():
    """json accepts Infinity; int(inf) raises OverflowError, which must not escape."""
    doc = b'{"nodes": [{"type": "dir", "name": "x", "mode": Infinity, "uid": 0, "gid": 0, "mtime_ns": 0}]}'
    with pytest.raises(IntegrityError):
        tree.decode_tree(doc)


snapshot_fields = st.fixed_dictionaries(
    {},
    optional={
        "version": st.just(1) | json_scalars,
        "time": st.sampled_from(["2026-11-02T20:00:00+01:00", "2026-13-45"]) | json_values,
        "host": json_values,
        "user": json_values,
        "paths": json_values,
        "tags": json_values,
        "excludes": json_values,
        "tree": st.sampled_from(["ab" * 32, "a"]) | json_values,
        "summary": json_values,
        "program": json_values,
    },
)


@FUZZ
@given(data=st.binary(max_size=300))
def test_snapshot_decode_arbitrary_bytes(data):
    _only_integrity_error(lambda d: Snapshot.decode(d, SNAP_ID), data)


@FUZZ
@given(value=json_values | snapshot_fields)
def test_snapshot_decode_arbitrary_json(value):
    _only_integrity_error(lambda d: Snapshot.decode(d, SNAP_ID), json.dumps(value).encode())


_VALID_CONFIG = json.loads(
    StoredConfig(b"\x01" * 16, "aes-256-gcm", 3, ChunkerParams(), "2026-11-02T20:00:00+01:00").encode()
)


@FUZZ
@given(field=st.sampled_from(sorted(_VALID_CONFIG)), value=json_values)
def test_stored_config_decode_mutated_field(field, value):
    doc = dict(_VALID_CONFIG)
    doc[field] = value
    try:
        StoredConfig.decode(json.dumps(doc).encode())
    except IntegrityError:
        pass
    except UnsupportedFormat:  # the one other documented outcome (a newer format_version)
        pass


@pytest.mark.parametrize("field", ["pack_target_size", "format_version"])
def test_stored_config_infinite_number_raises_integrity_error(field):
    doc = dict(_VALID_CONFIG)
    doc[field] = float("inf")
    with pytest.raises((IntegrityError, UnsupportedFormat)):
        StoredConfig.decode(json.dumps(doc).encode())


@pytest.mark.parametrize(
    "decode",
    [
        pytest.param(tree.decode_tree, id="tree"),
        pytest.param(lambda d: Snapshot.decode(d, SNAP_ID), id="snapshot"),
        pytest.param(StoredConfig.decode, id="config"),
    ],
)
def test_deeply_nested_json_raises_integrity_error(decode):
    depth = 100_000
    with pytest.raises(IntegrityError):
        decode(b"[" * depth + b"]" * depth)


# ---- format version 4: padded payloads, trailers, whole packs ------------------------------------

_VALID_PADDED = pad(b"\x00" + b"contenu" * 10)


@FUZZ
@given(data=_mutations(_VALID_PADDED))
def test_unpad_raises_only_integrity_error(data):
    try:
        payload = unpad(data, what="blob")
    except IntegrityError:
        return
    assert data[4 : 4 + len(payload)] == payload and not data[4 + len(payload) :].strip(b"\0")


@FUZZ
@given(data=st.binary(max_size=400), header_length=st.integers(0, 2**32 - 1))
def test_v4_trailer_and_header_location_raise_only_integrity_error(data, header_length):
    try:
        trailer = split_trailer(data, what="pack")
        header, start = header_body(data, header_length, what="pack")
    except IntegrityError:
        return
    assert len(trailer) == TRAILER_SIZE and data[start : len(data) - TRAILER_SIZE] == header


def _v4_repository():
    from agent.crypto.kdf import KdfParams
    from agent.repo.pack import BLOB_DATA
    from agent.repo.repository import Repository
    from agent.storage.memory import MemoryStorage

    repo = Repository.init(MemoryStorage(), b"phrase", cipher="xchacha20-poly1305", compression_level=3,
                           kdf_params=KdfParams(memory_kib=8192, iterations=1), format_version=4)
    for n in range(3):
        repo.store_blob(BLOB_DATA, bytes([n]) * 100)
    repo.flush()
    [pack_id] = list(repo.index.pack_ids())
    return repo, repo.storage.read(layout.pack_name(pack_id))


_V4_REPO, _V4_PACK = _v4_repository()
_V4_ENTRIES = _V4_REPO.pack_header_entries(_V4_PACK, "p")


@FUZZ
@given(data=st.one_of(
    st.binary(max_size=400),
    st.tuples(st.integers(0, len(_V4_PACK) - 1), st.integers(1, 255)).map(
        lambda t: _V4_PACK[: t[0]] + bytes((_V4_PACK[t[0]] ^ t[1],)) + _V4_PACK[t[0] + 1 :]),
    st.integers(0, len(_V4_PACK) - 1).map(lambda n: _V4_PACK[:n]),
    st.integers(1, len(_V4_PACK) - 1).map(lambda n: _V4_PACK[n:]),
    st.binary(min_size=1, max_size=50).map(lambda tail: _V4_PACK + tail),
))
def test_v4_pack_header_of_damaged_packs_raises_only_integrity_error(data):
    """A damaged version-4 pack (a flipped bit, a cut, bytes added at either end) gives an
    IntegrityError when its header is read, or, when only blob bytes were touched, the
    genuine header (the blobs are authenticated on their own); never another exception
    nor another header."""
    try:
        entries = _V4_REPO.pack_header_entries(data, "data/xx/pack")
    except IntegrityError:
        return
    assert entries == _V4_ENTRIES
    assert data.endswith(_V4_PACK[_V4_ENTRIES[-1].offset + _V4_ENTRIES[-1].length :])


@FUZZ
@given(index=st.integers(0, 2), flip=st.integers(0, 10_000), bit=st.integers(0, 7))
def test_v4_blob_bodies_with_a_flipped_bit_raise_only_integrity_error(index, flip, bit):
    entry = _V4_REPO.pack_header_entries(_V4_PACK, "p")[index]
    body = bytearray(_V4_PACK[entry.offset : entry.offset + entry.length])
    body[flip % len(body)] ^= 1 << bit
    with pytest.raises(IntegrityError):
        _V4_REPO.decode_blob(entry.chunk_id, entry.kind, bytes(body), entry.raw_length, pack_name="p")

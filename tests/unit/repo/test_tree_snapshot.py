"""agent.repo.tree and agent.repo.snapshot: JSON documents and their validation."""

from __future__ import annotations

import base64
import datetime as dt
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.errors import IntegrityError
from agent.repo.layout import SnapshotId
from agent.repo.snapshot import Snapshot
from agent.repo.tree import DIR, FILE, SYMLINK, Node, decode_tree, encode_tree
from tests.support.ids import plain_id

SETTINGS = settings(max_examples=100, deadline=None, derandomize=True, database=None)


def _file(name: bytes, **extra) -> Node:
    fields = dict(mode=0o100640, uid=1000, gid=1000, mtime_ns=1_700_000_000_123_456_789, user="medecin",
                  group="cabinet", size=5, sha256="ab" * 32, chunks=[b"\x01" * 32, b"\x02" * 32])
    fields.update(extra)
    return Node(name=name, type=FILE, **fields)


def _dir(name: bytes, subtree: bytes | None = b"\x03" * 32) -> Node:
    return Node(name=name, type=DIR, mode=0o40750, uid=0, gid=0, mtime_ns=1, subtree=subtree)


def _symlink(name: bytes, target: bytes) -> Node:
    return Node(name=name, type=SYMLINK, mode=0o120777, uid=0, gid=0, mtime_ns=2, target=target)


def _round_trip(nodes: list[Node]) -> list[Node]:
    return decode_tree(encode_tree(nodes))


def test_tree_round_trip_all_node_types():
    nodes = [
        _file(b"lettre.txt"),
        _file(b"hard", hardlink="2049:1234"),
        _file(b"sparse.img", sparse=True, chunks=[]),
        _dir(b"courriers"),
        _dir(b"empty", subtree=None),
        _symlink(b"latest", b"courriers/2026"),
    ]
    decoded = _round_trip(nodes)
    assert decoded == sorted(nodes, key=lambda n: n.name)


def test_utf8_names_are_stored_as_text():
    node = _file("Élodie — compte rendu.pdf".encode())
    doc = json.loads(encode_tree([node]))
    assert doc["nodes"][0]["name"] == "Élodie — compte rendu.pdf"
    assert "name_b64" not in doc["nodes"][0]
    assert _round_trip([node]) == [node]


def test_non_utf8_name_round_trips_exactly():
    node = _file(b"caf\xe9")
    doc = json.loads(encode_tree([node]))
    assert "name" not in doc["nodes"][0]
    assert base64.b64decode(doc["nodes"][0]["name_b64"]) == b"caf\xe9"
    [decoded] = _round_trip([node])
    assert decoded.name == b"caf\xe9"
    assert decoded == node


def test_non_utf8_symlink_target_round_trips_exactly():
    node = _symlink(b"lien", b"/srv/caf\xe9/\xff\xfe")
    doc = json.loads(encode_tree([node]))
    assert "target_b64" in doc["nodes"][0]
    [decoded] = _round_trip([node])
    assert decoded.target == b"/srv/caf\xe9/\xff\xfe"


def test_surrogate_escape_bytes_round_trip():
    """Bytes that Python would surrogate-escape (os.fsdecode) are stored as base64, not mangled."""
    node = _file(b"\xed\xa0\x80name")
    assert _round_trip([node])[0].name == b"\xed\xa0\x80name"


def test_tree_is_sorted_by_raw_name_bytes():
    nodes = [_file(b"b"), _file(b"\xe9"), _file(b"A"), _file(b"a")]
    assert [n.name for n in _round_trip(nodes)] == [b"A", b"a", b"b", b"\xe9"]


def test_encoding_is_deterministic():
    """Trees are content-addressed: the same directory must encode to the same bytes."""
    nodes = [_file(b"x"), _dir(b"d"), _symlink(b"s", b"x")]
    assert encode_tree(nodes) == encode_tree(list(reversed(nodes)))


names = st.binary(min_size=1, max_size=40).filter(
    lambda n: b"/" not in n and b"\x00" not in n and n not in (b".", b".."))


@SETTINGS
@given(name=names, target=st.binary(max_size=60))
def test_any_safe_name_and_target_round_trip(name, target):
    nodes = _round_trip([_file(name), _symlink(name + b"-link", target)])
    assert {n.name for n in nodes} == {name, name + b"-link"}
    assert next(n for n in nodes if n.type == SYMLINK).target == target


def _tree_doc(**node_fields) -> bytes:
    node = _file(b"ok").to_json()
    node.pop("name")
    node.update(node_fields)
    return json.dumps({"nodes": [node]}).encode()


@pytest.mark.parametrize(
    "fields",
    [
        {"name": ".."},
        {"name": "."},
        {"name": ""},
        {"name": "a/b"},
        {"name": "/etc"},
        {"name": "../../etc/passwd"},
        {"name_b64": base64.b64encode(b"..").decode()},
        {"name_b64": base64.b64encode(b"a/b").decode()},
        {"name_b64": ""},
        {"name": "a\u0000b"},
        {"name_b64": base64.b64encode(b"nul\x00").decode()},
    ],
    ids=plain_id,
)
def test_unsafe_names_are_rejected_on_decode(fields):
    with pytest.raises(IntegrityError, match="unsafe"):
        decode_tree(_tree_doc(**fields))


@pytest.mark.parametrize("order", [[b"b", b"a"], [b"a", b"a"], [b"a", b"c", b"b"]], ids=["unsorted", "duplicate",
                                                                                         "unsorted-tail"])
def test_unsorted_or_duplicate_names_are_rejected(order):
    """A tree lists each name once, sorted: duplicates would restore one path twice."""
    doc = json.dumps({"nodes": [_file(name).to_json() for name in order]}).encode()
    with pytest.raises(IntegrityError):
        decode_tree(doc)


@pytest.mark.parametrize(
    "doc",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"[]",
        b"{}",
        b'{"nodes": {}}',
        b'{"nodes": [1]}',
        b'{"nodes": [{"type": "fifo", "name": "x", "mode": 1, "uid": 0, "gid": 0, "mtime_ns": 0}]}',
        b'{"nodes": [{"type": "file", "name": "x", "mode": 1, "uid": 0, "gid": 0, "mtime_ns": 0}]}',
        b'{"nodes": [{"type": "dir", "name": "x", "mode": "rwx", "uid": 0, "gid": 0, "mtime_ns": 0}]}',
        b'{"nodes": [{"type": "dir", "name_b64": "!!", "mode": 1, "uid": 0, "gid": 0, "mtime_ns": 0}]}',
        b'{"nodes": [{"type": "dir", "name": "x", "mode": 1, "uid": 0, "gid": 0, "mtime_ns": 0, "subtree": "zz"}]}',
        b'{"nodes": [{"type": "symlink", "name": "x", "mode": 1, "uid": 0, "gid": 0, "mtime_ns": 0}]}',
        b'{"nodes": [{"type": "dir", "name": "x", "mode": Infinity, "uid": 0, "gid": 0, "mtime_ns": 0}]}',
        b'{"nodes": [{"type": "dir", "name": "x", "mode": 1, "uid": 0, "gid": 0, "mtime_ns": -Infinity}]}',
        b'{"nodes": [{"type": "dir", "name": "x", "mode": NaN, "uid": 0, "gid": 0, "mtime_ns": 0}]}',
        b'{"nodes": [{"type": "dir", "name": "\\ud800", "mode": 1, "uid": 0, "gid": 0, "mtime_ns": 0}]}',
    ],
    ids=plain_id,
)
def test_malformed_trees_raise_integrity_error(doc):
    with pytest.raises(IntegrityError):
        decode_tree(doc)


# ---- snapshots ----------------------------------------------------------------------------

SNAP_ID = SnapshotId(bytes.fromhex("0123456789abcdef0123456789abcdef"))


def _snapshot() -> Snapshot:
    return Snapshot(
        time=dt.datetime(2026, 11, 2, 20, 0, 5, 123456, tzinfo=dt.timezone(dt.timedelta(hours=1))),
        host="cabinet-serveur",
        user="root",
        paths=["/srv/cabinet", "/home/secretariat/Élodie"],
        tree=b"\x42" * 32,
        tags=["nightly"],
        excludes=["*.tmp"],
        summary={"files_new": 3, "bytes_added": 12345},
        program="backupctl 0.1.0",
    )


def test_snapshot_round_trip():
    original = _snapshot()
    decoded = Snapshot.decode(original.encode(), SNAP_ID)
    assert decoded.id == SNAP_ID
    assert decoded.short_id == "01234567"
    original.id = SNAP_ID
    assert decoded == original
    assert decoded.time.utcoffset() == dt.timedelta(hours=1)



def test_a_snapshot_written_without_the_program_member_reads_as_no_program():
    # Snapshots of early versions have no "program": shown empty, never as the word "None".
    doc = json.loads(_snapshot().encode())
    del doc["program"]
    assert Snapshot.decode(json.dumps(doc).encode(), SNAP_ID).program == ""

def test_snapshot_without_id_has_placeholder_short_id():
    assert _snapshot().short_id == "?"


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda d: d.update(version=2), id="version"),
        pytest.param(lambda d: d.pop("time"), id="no-time"),
        pytest.param(lambda d: d.update(time="yesterday"), id="bad-time"),
        pytest.param(lambda d: d.update(time=12), id="int-time"),
        pytest.param(lambda d: d.update(tree="xyz"), id="bad-tree"),
        pytest.param(lambda d: d.pop("tree"), id="no-tree"),
        pytest.param(lambda d: d.update(paths=None), id="null-paths"),
        pytest.param(lambda d: d.update(summary=[1, 2]), id="list-summary"),
        pytest.param(lambda d: d.update(summary="abc"), id="str-summary"),
        pytest.param(lambda d: d.update(tags=5), id="int-tags"),
    ],
)
def test_malformed_snapshot_raises_integrity_error(edit):
    doc = json.loads(_snapshot().encode())
    edit(doc)
    with pytest.raises(IntegrityError):
        Snapshot.decode(json.dumps(doc).encode(), SNAP_ID)


@pytest.mark.parametrize("raw", [b"", b"[]", b"null", b'"x"', b"\xff", b"{}"])
def test_snapshot_garbage_raises_integrity_error(raw):
    with pytest.raises(IntegrityError):
        Snapshot.decode(raw, SNAP_ID)


def test_a_node_written_without_owner_names_reads_as_none_given():
    # Trees of early versions, or a file whose uid has no name: empty names, never "None".
    doc = json.loads(encode_tree([_file(b"lettre.txt")]))
    del doc["nodes"][0]["user"], doc["nodes"][0]["group"]
    (node,) = decode_tree(json.dumps(doc).encode())
    assert (node.user, node.group) == ("", "")


def test_a_tree_of_a_newer_format_is_refused_by_name_even_without_the_repository_version():
    with pytest.raises(IntegrityError) as raised:
        decode_tree(b'{"version":99,"nodes":[]}')
    assert str(raised.value) == ("tree says format version 99, newer than this program's (5); "
                                 "the repository's config says 5")

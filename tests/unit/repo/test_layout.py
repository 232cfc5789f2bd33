"""agent.repo.layout: object names and ids."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.repo import layout
from agent.repo.layout import IndexId, PackId, SnapshotId

SETTINGS = settings(max_examples=100, deadline=None, derandomize=True, database=None)
PACK_ID = PackId(bytes.fromhex("3f9a" + "00" * 29 + "ff"))
PACK_HEX = PACK_ID.hex()


def test_names():
    assert layout.pack_name(PACK_ID) == f"data/3f/{PACK_HEX}"
    assert layout.index_name(IndexId(b"\x01" * 16)) == "index/" + "01" * 16
    assert layout.snapshot_name(SnapshotId(b"\xab" * 16)) == "snapshots/" + "ab" * 16
    assert layout.key_name(b"\x0c" * 16) == "keys/" + "0c" * 16
    assert layout.CONFIG == "config"


def test_kinds_are_distinct():
    kinds = [layout.KIND_CONFIG, layout.KIND_INDEX, layout.KIND_SNAPSHOT, layout.KIND_DATA_BLOB,
             layout.KIND_TREE_BLOB, layout.KIND_PACK_HEADER]
    assert len(set(kinds)) == len(kinds)


@SETTINGS
@given(pack_id=st.binary(min_size=32, max_size=32))
def test_pack_name_round_trip(pack_id):
    name = layout.pack_name(PackId(pack_id))
    assert name.startswith(layout.DATA_PREFIX)
    assert layout.pack_id_from_name(name) == pack_id


@SETTINGS
@given(index_id=st.binary(min_size=16, max_size=16), snapshot_id=st.binary(min_size=16, max_size=16))
def test_index_and_snapshot_name_round_trip(index_id, snapshot_id):
    assert layout.index_id_from_name(layout.index_name(IndexId(index_id))) == index_id
    assert layout.snapshot_id_from_name(layout.snapshot_name(SnapshotId(snapshot_id))) == snapshot_id


@pytest.mark.parametrize(
    "name",
    [
        "",
        "data/",
        f"data/{PACK_HEX}",  # no fan-out directory
        f"data/00/{PACK_HEX}",  # wrong fan-out directory
        f"data/3F/{PACK_HEX.upper()}",  # names are lower-case
        f"data/3f/{PACK_HEX.upper()}",
        f"data/3f/{PACK_HEX[:-2]}",  # 31 bytes
        f"data/3f/{PACK_HEX}00",  # 33 bytes
        f"data/3f/{PACK_HEX[:-1]}g",  # not hex
        f"data/3f/{PACK_HEX}.tmp",
        f"data/3f/.tmp-{PACK_HEX[:16]}",
        f"data/3f/x/{PACK_HEX}",  # extra directory level
        f"index/{PACK_HEX}",
        f"snapshots/3f/{PACK_HEX}",
        f"xdata/3f/{PACK_HEX}",
        f"/data/3f/{PACK_HEX}",
    ],
)
def test_malformed_pack_names_are_rejected(name):
    assert layout.pack_id_from_name(name) is None


@pytest.mark.parametrize(
    "make, parse, prefix",
    [
        (layout.index_name, layout.index_id_from_name, "index/"),
        (layout.snapshot_name, layout.snapshot_id_from_name, "snapshots/"),
        (layout.lock_name, layout.lock_id_from_name, "locks/"),
        (layout.report_name, layout.report_id_from_name, "reports/"),
    ],
    ids=["index", "snapshot", "lock", "report"],
)
@pytest.mark.parametrize(
    "tail",
    [
        "",
        "0" * 31,
        "0" * 33,
        "0" * 30 + "zz",
        "0" * 32 + ".tmp",
        ".tmp-" + "0" * 16,
    ],
)
def test_malformed_index_and_snapshot_names_are_rejected(make, parse, prefix, tail):
    assert parse(prefix + tail) is None


@pytest.mark.parametrize(
    "make, parse, prefix",
    [
        (layout.index_name, layout.index_id_from_name, "index/"),
        (layout.snapshot_name, layout.snapshot_id_from_name, "snapshots/"),
        (layout.lock_name, layout.lock_id_from_name, "locks/"),
        (layout.report_name, layout.report_id_from_name, "reports/"),
    ],
    ids=["index", "snapshot", "lock", "report"],
)
@pytest.mark.parametrize("variant", ["nested", "uppercase", "other-prefix"])
def test_only_canonical_index_and_snapshot_names_are_accepted(make, parse, prefix, variant):
    """An id parsed from a name must name that object: `make(parse(name)) == name`.

    Otherwise a stray "index/old/<hex>" or "index/<HEX>" makes load_index read an
    object that does not exist.
    """
    hex_id = "ab" * 16
    name = {
        "nested": f"{prefix}old/{hex_id}",
        "uppercase": prefix + hex_id.upper(),
        "other-prefix": f"data/{hex_id}",
    }[variant]
    parsed = parse(name)
    assert parsed is None or make(parsed) == name


@SETTINGS
@given(object_id=st.binary(min_size=16, max_size=16))
def test_lock_and_report_name_round_trip(object_id):
    assert layout.lock_id_from_name(layout.lock_name(object_id)) == object_id
    assert layout.report_id_from_name(layout.report_name(object_id)) == object_id


def test_the_rescue_kit_is_named_after_the_version():
    assert layout.rescue_kit_file("1.2.3+local_build-4") == "backupctl-rescue-kit-1.2.3+local_build-4.tar"
    assert layout.rescue_kit_name("1.2") == "rescue/backupctl-rescue-kit-1.2.tar"


@pytest.mark.parametrize("version", ["", "../1.0", "1.0/x", "1.0 beta", "1.0\n"],
                         ids=["empty", "parent", "slash", "space", "newline"])
def test_a_version_that_could_leave_rescue_or_break_a_name_is_refused_by_name(version):
    with pytest.raises(ValueError) as raised:
        layout.rescue_kit_file(version)
    assert str(raised.value) == f"not a version: {version!r}"

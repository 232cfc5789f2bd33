"""Damaged or missing packs: check names the pack, the files and the snapshots; restore
saves everything else, byte for byte."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from .support import Backupctl, assert_error, file_sha256, pack_label, random_file, set_mtimes, write

BIG = "radio volumineuse.dcm"


@dataclass
class Damaged:
    bk: Backupctl
    first: dict
    second: dict
    pack: Path  # the pack holding only the big file's data (second backup)
    tree_pack: Path  # the second backup's pack of directory listings
    hashes: dict[str, str]  # relative path -> sha256 of every file of the source


@pytest.fixture
def two_snapshots(bk: Backupctl) -> Damaged:
    """Snapshot 1: small files. Snapshot 2: the same plus one big file, whose data is
    alone in a new data pack (the small files are deduplicated)."""
    src = bk.src
    for i in range(6):
        write(src / "courriers" / f"lettre {i}.txt", f"Cher confrère, au sujet de M. {i}\n" * 40)
    random_file(src / "scans" / "petit.pdf", 200_000)
    write(src / "Élodie Müller.txt", "dossier\n")
    set_mtimes(src)
    bk.init()
    first = bk.backup()
    packs_before = set(bk.packs())
    random_file(src / BIG, 6 * 1024 * 1024 + 777)
    second = bk.backup()
    new_packs = sorted(set(bk.packs()) - packs_before, key=lambda p: p.stat().st_size)
    assert len(new_packs) == 2, "expected one data pack and one tree pack from the second backup"
    pack = new_packs[-1]
    assert pack.stat().st_size > 6 * 1024 * 1024
    hashes = {str(p.relative_to(src)): file_sha256(p) for p in src.rglob("*") if p.is_file()}
    return Damaged(bk, first, second, pack, new_packs[0], hashes)


def flip_middle_byte(path: Path) -> None:
    size = path.stat().st_size
    with open(path, "r+b") as handle:
        handle.seek(size // 2)
        byte = handle.read(1)
        handle.seek(size // 2)
        handle.write(bytes([byte[0] ^ 0x5A]))


def assert_others_restored(d: Damaged, target: Path, *, missing: str) -> None:
    copy = d.bk.restored(target)
    for rel, sha in d.hashes.items():
        if rel == missing:
            assert not (copy / rel).exists(), f"{rel} must not be left looking restored"
        else:
            assert (copy / rel).is_file(), f"{rel} was not restored"
            assert file_sha256(copy / rel) == sha, f"{rel} restored with different content"


def test_flipped_byte_in_a_pack_is_found_and_named(two_snapshots: Damaged) -> None:
    d = two_snapshots
    bk = d.bk
    flip_middle_byte(d.pack)
    label = pack_label(d.pack)
    first_short, second_short = d.first["snapshot_id"][:8], d.second["snapshot_id"][:8]

    # The check of the structure reads indexes and snapshots, not the packs' data: the byte
    # flipped in the middle of a data pack is found only by --read-data, below.
    structure = bk.run("check")
    assert structure.returncode == 0, str(structure)
    assert "Traceback" not in structure.stderr

    result = bk.run("check", "--read-data")
    line = assert_error(result, 13, only_line=False)
    assert "damaged" in line.lower()
    output = result.stdout + result.stderr
    assert label in output, f"the damaged pack {label} is not named\n{result}"
    assert f"{bk.src}/{BIG}" in output, f"the affected file is not named\n{result}"
    assert second_short in output, f"the affected snapshot is not named\n{result}"
    assert first_short not in output, f"snapshot 1 does not use the pack and must not be listed\n{result}"
    for rel in d.hashes:
        if rel != BIG:
            assert rel not in output, f"{rel} is intact but listed as affected\n{result}"

    report = bk.run("check", "--read-data", "--json")
    assert_error(report, 13)
    doc = report.json()
    assert doc["ok"] is False and doc["read_data"] is True
    assert list(doc["damaged_packs"]) == [label]
    (affected_key,) = doc["affected_files"]
    assert affected_key.startswith(second_short)
    (entry,) = doc["affected_files"][affected_key]
    assert entry.startswith(f"{bk.src}/{BIG}:")

    target = bk.base / "restored"
    restore = bk.run("restore", "latest", "--target", str(target))
    assert_error(restore, 13, only_line=False)
    assert BIG in restore.stderr, f"restore must name the damaged file\n{restore}"
    for rel in d.hashes:
        if rel != BIG:
            assert rel not in restore.stderr
    assert_others_restored(d, target, missing=BIG)

    as_json = bk.run("restore", "latest", "--target", str(bk.base / "again"), "--json")
    assert_error(as_json, 13)
    doc = as_json.json()
    assert [f["path"].endswith(BIG) for f in doc["failures"]] == [True]
    assert doc["sha256_verified"] == len(d.hashes) - 1

    # The older snapshot does not use the damaged pack: it restores whole.
    old = bk.base / "old"
    bk.restore(old, snapshot=d.first["snapshot_id"][:12])
    assert sorted(str(p.relative_to(bk.restored(old))) for p in bk.restored(old).rglob("*") if p.is_file()) \
        == sorted(rel for rel in d.hashes if rel != BIG)

    # The source is still there and unchanged; a new backup (the big file is read again
    # after a touch) succeeds, and check keeps reporting the bad pack, now for both
    # snapshots that need it.
    os.utime(bk.src / BIG)
    third = bk.backup()
    again = bk.run("check", "--read-data")
    assert_error(again, 13, only_line=False)
    output = again.stdout + again.stderr
    # ... and says so: its advice is `repair`, then a backup (a backup alone fixes only missing packs).
    assert "backupctl repair" in again.stderr, again.stderr
    assert label in output and third["snapshot_id"][:8] in output and second_short in output, str(again)


def test_deleted_pack_is_reported_by_structure_check(two_snapshots: Damaged) -> None:
    d = two_snapshots
    bk = d.bk
    d.pack.unlink()
    label = pack_label(d.pack)

    result = bk.run("check")
    assert_error(result, 13, only_line=False)
    output = result.stdout + result.stderr
    assert label in output and "missing" in output.lower(), f"the missing pack is not named\n{result}"
    assert f"{bk.src}/{BIG}" in output, f"the affected file is not named\n{result}"
    assert d.second["snapshot_id"][:8] in output
    assert d.first["snapshot_id"][:8] not in output

    doc = bk.run("check", "--json").json()
    assert doc["ok"] is False and label in doc["damaged_packs"]

    target = bk.base / "restored"
    restore = bk.run("restore", "latest", "--target", str(target))
    assert_error(restore, 13, only_line=False)
    assert BIG in restore.stderr
    assert_others_restored(d, target, missing=BIG)

    full = bk.run("check", "--read-data")
    assert_error(full, 13, only_line=False)
    assert label in full.stdout + full.stderr


def test_damaged_tree_pack_spares_the_rest(two_snapshots: Damaged) -> None:
    """The second backup's tree pack holds the listings that changed (the source root
    and the folders above it); damaging it loses snapshot 2's listing, never snapshot 1."""
    d = two_snapshots
    bk = d.bk
    tree_pack = d.tree_pack
    assert tree_pack.stat().st_size < 64 * 1024
    flip_middle_byte(tree_pack)
    result = bk.run("check", "--read-data")
    assert_error(result, 13, only_line=False)
    output = result.stdout + result.stderr
    assert pack_label(tree_pack) in output
    assert d.second["snapshot_id"][:8] in output
    assert d.first["snapshot_id"][:8] not in output
    old = bk.base / "old"
    bk.restore(old, snapshot=d.first["snapshot_id"])
    restore = bk.run("restore", "latest", "--target", str(bk.base / "new"))
    assert_error(restore, 13, only_line=False)


def test_new_backup_after_a_lost_pack_stores_the_data_again(two_snapshots: Damaged) -> None:
    """check's own advice for a missing pack is "run a new backup to store missing data
    again": the next backup of the unchanged source must give a snapshot that restores
    whole, not one that silently points at the lost pack again."""
    d = two_snapshots
    bk = d.bk
    d.pack.unlink()
    result = bk.run("check")
    line = assert_error(result, 13, only_line=False)
    assert "new backup" in line, line

    os.utime(bk.src / BIG)  # even with the big file read again
    third = bk.backup()
    assert third["partial"] is False

    target = bk.base / "after"
    restore = bk.run("restore", third["snapshot_id"], "--target", str(target))
    assert restore.returncode == 0, f"the new snapshot is not restorable: the lost data was not stored again\n{restore}"
    assert_others_restored(d, target, missing="")
    after = bk.run("check")
    assert third["snapshot_id"][:8] not in after.stdout + after.stderr, str(after)


def _truncate_middle(path: Path) -> None:
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size // 2)


@pytest.mark.parametrize("damage", ["flipped byte", "truncated pack", "deleted index"])
def test_repair_then_a_backup_make_check_clean_and_every_snapshot_restore(two_snapshots: Damaged, damage) -> None:
    """Issue 10, point 3: after damage, check names it and prune is blocked; `repair`
    takes it out of the index (keeping what still reads), the next backup stores the
    lost chunks again from the source, and then check --read-data is clean and every
    snapshot, the damaged one included, restores bit-exact."""
    d = two_snapshots
    bk = d.bk
    if damage == "flipped byte":
        flip_middle_byte(d.pack)
    elif damage == "truncated pack":
        _truncate_middle(d.pack)
    else:
        newest = max(bk.index_files(), key=lambda p: p.stat().st_mtime_ns)
        newest.unlink()

    found = bk.run("check", "--read-data")
    assert_error(found, 13, only_line=False)
    output = found.stdout + found.stderr
    assert d.second["snapshot_id"][:8] in output and d.first["snapshot_id"][:8] not in output, str(found)
    assert "backupctl repair" in found.stderr, str(found)
    if damage != "deleted index":
        assert pack_label(d.pack) in output and f"{bk.src}/{BIG}" in output, str(found)
    else:  # the second backup's listings were in that index: its whole tree is named
        assert "not in any index" in output and "/: directory listing is missing" in output, str(found)
    prune = bk.run("prune")
    assert_error(prune, 13)
    assert "prune refused" in prune.stderr
    untouched = bk.base / "untouched"  # the first snapshot does not need what was damaged
    bk.restore(untouched, snapshot=d.first["snapshot_id"])
    expected = {k: v for k, v in d.hashes.items() if k != BIG}
    assert {str(p.relative_to(bk.restored(untouched))): file_sha256(p)
            for p in bk.restored(untouched).rglob("*") if p.is_file()} == expected

    repair = bk.run("repair", "--json")
    doc = repair.json()
    if damage == "deleted index":  # every pack is intact: indexed again, nothing lost
        assert repair.returncode == 0, str(repair)
        assert doc["packs_reindexed"] >= 1 and doc["blobs_lost"] == 0 and not doc["damaged_packs"]
    else:
        assert_error(repair, 13)
        assert list(doc["damaged_packs"]) == [pack_label(d.pack)], doc
        assert doc["blobs_lost"] >= 1 and doc["blobs_salvaged"] >= 1, doc
        assert not d.pack.exists(), "the damaged pack must be deleted once its good blobs are safe"
        (files,) = doc["check_after"]["affected_files"].values()
        assert [f.split(":")[0] for f in files] == [f"{bk.src}/{BIG}"], files

    third = bk.backup()
    clean = bk.run("check", "--read-data")
    assert clean.returncode == 0, str(clean)
    for number, (snapshot, expected) in enumerate([
            (d.first, {k: v for k, v in d.hashes.items() if k != BIG}),
            (d.second, d.hashes), (third, d.hashes)]):
        assert bk.ok_json("restore", snapshot["snapshot_id"], "--target", str(bk.base / f"r{number}"))
        copy = bk.restored(bk.base / f"r{number}")
        assert {str(p.relative_to(copy)): file_sha256(p) for p in copy.rglob("*") if p.is_file()} == expected
    assert bk.run("prune").returncode == 0, "a clean check must unblock prune"


def test_repair_of_an_intact_repository_changes_nothing(two_snapshots: Damaged) -> None:
    bk = two_snapshots.bk
    before = bk.repo_digest()
    result = bk.run("repair")
    assert result.returncode == 0, str(result)
    assert "Nothing to repair" in result.stdout
    after = {k: v for k, v in bk.repo_digest().items() if not k.startswith("locks/")}
    assert after == before


def test_deleted_snapshot_is_named_and_the_others_restore(two_snapshots: Damaged) -> None:
    """The format cannot show a missing snapshot; this machine's ledger can."""
    d = two_snapshots
    bk = d.bk
    (bk.repo / "snapshots" / d.second["snapshot_id"]).unlink()
    result = bk.run("check", "--read-data")
    line = assert_error(result, 13, only_line=False)
    assert d.second["snapshot_id"][:8] in result.stderr and "gone from the repository" in result.stderr, str(result)
    assert "--accept-storage" in line
    assert_error(bk.run("prune"), 13)
    target = bk.base / "first"
    bk.restore(target, snapshot="latest")
    assert {str(p.relative_to(bk.restored(target))): file_sha256(p)
            for p in bk.restored(target).rglob("*") if p.is_file()} == {k: v for k, v in d.hashes.items() if k != BIG}
    third = bk.backup()  # a backup goes on, and is kept in the ledger
    assert_error(bk.run("check"), 13, only_line=False)
    assert bk.run("check", "--accept-storage").returncode == 0
    assert bk.run("check", "--read-data").returncode == 0
    assert third["snapshot_id"] in {p.name for p in bk.snapshot_files()}


def test_a_backup_over_a_damaged_index_file_says_so_and_stays_whole(two_snapshots: Damaged) -> None:
    """A damaged index file does not stop the backup (what it listed is stored again, so
    the new snapshot is whole), but the backup says so instead of exiting 0 in silence."""
    d = two_snapshots
    bk = d.bk
    for index in bk.index_files():
        flip_middle_byte(index)
    text = bk.run("backup")
    assert text.returncode == 0, str(text)
    assert "the repository's index is damaged" in text.stderr and "backupctl check --read-data" in text.stderr
    document = bk.backup()
    assert document["index_problems"] and document["partial"] is False
    target = bk.base / "after"
    bk.restore(target, snapshot=document["snapshot_id"])
    assert_others_restored(d, target, missing="")

"""Tampering by someone who controls the storage but has no key (issue 10, point 4).

Every attack here uses only what such a person has: the stored objects, their names
and sizes, and the public layout of a pack (format version 4 shows no length in clear).
Each must be detected, never decrypted into wrong plaintext, and must stop prune.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from .support import Backupctl, assert_error, pack_label, random_file, set_mtimes, tree_digests, write


def _two_same_size_files(bk: Backupctl) -> dict:
    """A source of two random files of one size (one chunk each): the backup's data pack
    holds two blob envelopes of equal length, back to back."""
    random_file(bk.src / "ordonnance-a.pdf", 300_000)
    random_file(bk.src / "ordonnance-b.pdf", 300_000)
    set_mtimes(bk.src)
    bk.init()
    return bk.backup()


def _data_pack(bk: Backupctl) -> Path:
    return max(bk.packs(), key=lambda p: p.stat().st_size)


def _blob_region(pack: Path) -> tuple[bytes, int]:
    """The pack's bytes and where its blobs end, as someone without the key can tell.

    Format version 4 (docs/FORMAT.md section 7.2) has no clear header length: the
    attacker reads the public layout instead, a 44-byte trailer after a header padded to
    at least 552 bytes, which is exactly its length for a pack of a few blobs."""
    data = pack.read_bytes()
    return data, len(data) - 44 - 552


def test_two_blobs_swapped_in_a_pack_never_restore_as_the_other_file(bk: Backupctl) -> None:
    snapshot = _two_same_size_files(bk)
    expected = tree_digests(bk.src)
    pack = _data_pack(bk)
    data, end = _blob_region(pack)
    assert end % 2 == 0
    half = end // 2
    pack.write_bytes(data[half:end] + data[:half] + data[end:])  # the name no longer matches, kept anyway

    target = bk.base / "restored"
    restore = bk.run("restore", snapshot["snapshot_id"], "--target", str(target))
    assert_error(restore, 13, only_line=False)
    assert "ordonnance-a.pdf" in restore.stderr and "ordonnance-b.pdf" in restore.stderr, str(restore)
    copy = bk.restored(target)
    for name in expected:
        if (copy / name).exists():
            raise AssertionError(f"{name} was left in the target although its data fails authentication")
    check = bk.run("check", "--read-data")
    assert_error(check, 13, only_line=False)
    assert pack_label(pack) in check.stdout + check.stderr
    prune = bk.run("prune")
    assert_error(prune, 13)
    assert "prune refused" in prune.stderr


def test_a_data_blob_moved_to_a_snapshot_name_is_refused_and_the_rest_lists(bk: Backupctl) -> None:
    snapshot = _two_same_size_files(bk)
    data, end = _blob_region(_data_pack(bk))
    forged = "ab" * 16
    write(bk.repo / "snapshots" / forged, data[: end // 2])

    check = bk.run("check")
    assert_error(check, 13, only_line=False)
    assert forged in check.stdout + check.stderr, str(check)
    listing = bk.run("snapshots")
    assert_error(listing, 13, only_line=False)
    assert snapshot["snapshot_id"][:8] in listing.stdout, "the genuine snapshot must still be listed"
    assert forged[:8] in listing.stderr
    restored = bk.base / "restored"
    restore = bk.run("restore", "latest", "--target", str(restored))
    assert restore.returncode == 0, str(restore)
    assert tree_digests(bk.restored(restored)) == tree_digests(bk.src)
    assert_error(bk.run("prune"), 13)


def _week_of_backups(bk: Backupctl, count: int, *, start: int = 0) -> list[dict]:
    snapshots = []
    for i in range(start, start + count):
        write(bk.src / "courriers" / f"lettre {i}.txt", f"Compte rendu {i}\n" * 200)
        snapshots.append(bk.backup())
    return snapshots


def test_an_old_index_put_back_after_prune_is_ignored_or_detected(bk: Backupctl) -> None:
    random_file(bk.src / "scan.pdf", 2_000_000)
    bk.init()
    first, *_rest = _week_of_backups(bk, 3)
    old_indexes = {p.name: p.read_bytes() for p in bk.index_files()}
    result = bk.ok_json("prune", "--json")
    assert result["snapshots_forgotten"] >= 1, result  # three backups today: the newest is kept
    new_indexes = {p.name for p in bk.index_files()}
    assert not new_indexes & set(old_indexes)

    for name, content in old_indexes.items():  # replayed: the new index supersedes them
        write(bk.repo / "index" / name, content)
    check = bk.run("check", "--read-data")
    assert check.returncode == 0, f"superseded index files must be ignored\n{check}"
    expected = tree_digests(bk.src)
    bk.assert_restores("latest", expected, bk.base / "r1")

    for name in new_indexes:  # and now the newer index is gone: only the old one speaks
        (bk.repo / "index" / name).unlink()
    check = bk.run("check")
    assert_error(check, 13, only_line=False)
    assert_error(bk.run("prune"), 13)


def test_a_snapshot_forgotten_by_prune_and_put_back_is_detected(bk: Backupctl) -> None:
    bk.init()
    snapshots = _week_of_backups(bk, 3)
    saved = {p.name: p.read_bytes() for p in bk.snapshot_files()}
    result = bk.ok_json("prune", "--json")
    forgotten = [s["snapshot_id"] for s in result["snapshots"] if s["action"] == "forget"]
    assert forgotten, result
    write(bk.repo / "snapshots" / forgotten[0], saved[forgotten[0]])

    check = bk.run("check")
    assert_error(check, 13, only_line=False)
    assert forgotten[0][:8] in check.stderr and "is back" in check.stderr, str(check)
    prune = bk.run("prune")
    assert_error(prune, 13)
    assert "is back" in prune.stderr
    assert snapshots[-1]["snapshot_id"] in {p.name for p in bk.snapshot_files()}


def test_a_bucket_rolled_back_is_detected_prune_blocked_and_acceptance_is_explicit(bk: Backupctl) -> None:
    bk.init()
    early = _week_of_backups(bk, 2)
    copy = bk.base / "repo-last-week"
    shutil.copytree(bk.repo, copy)
    expected_early = tree_digests(bk.src)
    late = _week_of_backups(bk, 2, start=2)  # two more snapshots after the copy
    shutil.rmtree(bk.repo)
    shutil.copytree(copy, bk.repo)  # the whole storage, as it was

    check = bk.run("check")
    line = assert_error(check, 13, only_line=False)
    output = check.stdout + check.stderr
    for snap in late:
        assert snap["snapshot_id"][:8] in output, f"vanished snapshot {snap['snapshot_id'][:8]} not named\n{check}"
    assert "rolled back" in output
    assert "--accept-storage" in line, line
    prune = bk.run("prune")
    assert_error(prune, 13)
    assert {p.name for p in bk.snapshot_files()} == {s["snapshot_id"] for s in early}, "prune must not touch it"

    # What is there is genuine and restores; a new backup is still made and kept.
    bk.assert_restores(early[-1]["snapshot_id"], expected_early, bk.base / "r")
    bk.backup()
    assert_error(bk.run("check"), 13, only_line=False)  # the finding stays until accepted

    accepted = bk.run("check", "--accept-storage")
    assert accepted.returncode == 0, str(accepted)
    assert late[0]["snapshot_id"][:8] in accepted.stdout
    assert bk.run("check").returncode == 0
    records = [json.loads(line) for line in (bk.state / "audit.jsonl").read_text().splitlines()]
    (accepting,) = [r for r in records if r.get("action") == "accept_storage"]
    assert sorted(accepting["vanished"]) == sorted(s["snapshot_id"] for s in late), accepting

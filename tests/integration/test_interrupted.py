"""A backup killed halfway leaves no snapshot, a repository that checks clean, and
stored data that the rerun reuses."""

from __future__ import annotations

import signal

from .support import Backupctl, assert_same_tree, count_files, random_file, wait_for

MiB = 1024 * 1024
# An index file is written every 8 packs of 16 MiB (PACKS_PER_INDEX, TARGET_PACK_SIZE),
# so the source must be well above 128 MiB of incompressible data for an index to
# appear while the backup is still running.
FILES = 13
FILE_SIZE = 16 * MiB


def test_killed_backup_then_rerun(bk: Backupctl) -> None:
    for i in range(FILES):
        random_file(bk.src / f"imagerie-{i:02d}.dcm", FILE_SIZE + i * 4099)
    files, total = count_files(bk.src)
    bk.init()

    proc = bk.popen("backup", "--json")
    try:
        wait_for(lambda: bool(bk.index_files()) or proc.poll() is not None, timeout=300,
                 what="the first index file")
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL, (
        f"the backup finished before it could be interrupted (exit {proc.returncode})")
    assert bk.index_files(), "an index file was written before the kill"
    assert bk.snapshot_files() == [], "a killed backup must not leave a snapshot"
    assert bk.snapshots() == []
    stored = sum(p.stat().st_size for p in bk.packs())
    assert stored >= 8 * 16 * MiB

    check = bk.ok("check")
    assert "No problem found" in check.stdout, str(check)
    doc = bk.ok_json("check")
    assert doc["ok"] is True and doc["errors"] == [] and doc["snapshots"] == 0

    rerun = bk.backup()
    assert rerun["partial"] is False
    assert rerun["files_new"] == files and rerun["bytes_read"] == total
    assert rerun["bytes_added"] < 0.6 * total, (
        f"the rerun stored {rerun['bytes_added']} of {total} bytes: indexed data was not reused")

    target = bk.base / "restored"
    restored = bk.restore(target)
    assert restored["failures"] == [] and restored["sha256_verified"] == files
    assert_same_tree(bk.src, bk.restored(target))

    full = bk.ok_json("check", "--read-data")
    assert full["ok"] is True and full["errors"] == [] and full["snapshots"] == 1
    assert full["bytes_read"] >= total


def test_ctrl_c_during_backup_exits_130_in_one_line_and_leaves_no_snapshot(bk: Backupctl) -> None:
    for i in range(4):
        random_file(bk.src / f"imagerie-{i}.dcm", FILE_SIZE)
    files, total = count_files(bk.src)
    bk.init()
    proc = bk.popen("backup")
    try:
        wait_for(lambda: bool(bk.packs()) or proc.poll() is not None, timeout=300, what="the first pack")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    text = err.decode("utf-8", errors="replace")
    assert proc.returncode == 130, f"exit {proc.returncode}: {text}"
    assert "Traceback" not in text
    assert text.splitlines() == [line for line in text.splitlines() if line.startswith("backupctl: error:")]
    assert len(text.splitlines()) == 1 and "interrupted" in text, text
    assert bk.snapshot_files() == []
    assert bk.ok_json("check")["ok"] is True

    rerun = bk.backup()
    assert rerun["files_new"] == files and rerun["bytes_total"] == total
    restored = bk.restore(bk.base / "restored")
    assert restored["sha256_verified"] == files
    assert_same_tree(bk.src, bk.restored(bk.base / "restored"))


def test_the_next_backup_adopts_the_packs_a_killed_backup_left_unindexed(bk: Backupctl) -> None:
    """Issue 18, point 5: `check` says once that there is nothing to do (no per-pack notes, no
    `repair`, which downloads everything); the next backup indexes the complete packs and
    reuses their data instead of storing it again; then `check` has nothing to say."""
    for i in range(FILES):
        random_file(bk.src / f"imagerie-{i:02d}.dcm", FILE_SIZE + i * 4099)
    files, total = count_files(bk.src)
    bk.init()
    proc = bk.popen("backup", "--json")
    try:  # one index file (8 packs) and at least two packs after it, not yet indexed
        wait_for(lambda: (bool(bk.index_files()) and len(bk.packs()) >= 10) or proc.poll() is not None,
                 timeout=300, what="packs after the first index file")
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL, f"the backup finished first (exit {proc.returncode})"
    stored = sum(p.stat().st_size for p in bk.packs())

    check = bk.ok("check")
    notes = [line for line in check.stdout.splitlines() if "note:" in line]
    assert len(notes) == 1 and "next backup indexes them" in notes[0] and "nothing to do" in notes[0], check.stdout
    assert "repair" not in check.stdout + check.stderr
    unindexed = bk.ok_json("check")["unindexed_packs"]
    assert unindexed >= 2

    rerun = bk.backup()
    assert rerun["packs_adopted"] == unindexed
    # Every byte already in a complete pack is reused, indexed or not: only the rest is stored.
    assert rerun["bytes_added"] <= (total - stored) * 1.02 + 2 * MiB, (rerun["bytes_added"], total, stored)
    after = bk.ok_json("check")
    assert after["ok"] is True and after["unindexed_packs"] == 0 and after["warnings"] == [], after
    target = bk.base / "restored"
    restored = bk.restore(target)
    assert restored["failures"] == [] and restored["sha256_verified"] == files
    assert_same_tree(bk.src, bk.restored(target))
    assert bk.ok_json("check", "--read-data")["ok"] is True

"""Backups: excludes, deduplication and the files cache, --time and --tag."""

from __future__ import annotations

import json
import os
import subprocess

from .support import (Backupctl, assert_error, assert_same_tree, base_env, count_files, file_sha256, random_file,
                      set_mtimes, write)

MiB = 1024 * 1024


def test_excludes_name_patterns_and_full_path_patterns(bk: Backupctl) -> None:
    src = bk.src
    write(src / "lettre.txt", "à garder\n")
    write(src / "brouillon.tmp", "excluded by name\n")
    write(src / "patients" / "dupont" / "notes.tmp", "excluded by name, nested\n")
    write(src / "patients" / "dupont" / "bilan.txt", "kept\n")
    write(src / "build.tmp" / "inside.txt", "a whole folder excluded by name\n")
    write(src / "cache" / "vignette.jpg", "excluded by full path\n")
    write(src / "cache" / "sous" / "x.dat", "excluded by full path, nested\n")
    write(src / "patients" / "cache" / "garde.dat", "same folder name elsewhere: kept\n")
    write(src / "x.tmp.txt", "does not end in .tmp: kept\n")
    set_mtimes(src)
    bk.write_config(exclude=["*.tmp", f"{src}/cache/*"])
    bk.init()
    report = bk.backup()
    assert report["files_new"] == 4, report

    target = bk.base / "restored"
    bk.restore(target)
    copy = bk.restored(target)
    kept = sorted(str(p.relative_to(copy)) for p in copy.rglob("*"))
    assert kept == sorted([
        "cache",  # the folder itself is not matched by cache/*, only its content
        "lettre.txt",
        "patients", "patients/cache", "patients/cache/garde.dat",
        "patients/dupont", "patients/dupont/bilan.txt",
        "x.tmp.txt",
    ])
    assert (copy / "patients" / "dupont" / "bilan.txt").read_text() == "kept\n"


def test_second_backup_of_unchanged_tree_adds_nothing_and_reads_nothing(bk: Backupctl) -> None:
    src = bk.src
    for i in range(3):
        random_file(src / "scans" / f"scan-{i}.pdf", (i + 1) * 700_000)
    for i in range(20):
        write(src / "courriers" / f"lettre {i:02d}.txt", f"Cher confrère, patient n°{i}\n" * (50 + i))
    random_file(src / "base" / "cabinet.db", 16 * MiB)
    write(src / "vide.txt", b"")
    files, size = count_files(src)
    bk.init()

    first = bk.backup()
    assert (first["files_new"], first["files_changed"], first["files_unchanged"]) == (files, 0, 0)
    assert first["bytes_read"] == size
    assert first["bytes_added"] > 0.9 * 16 * MiB  # random data does not compress

    second = bk.backup()
    assert (second["files_new"], second["files_changed"], second["files_unchanged"]) == (0, 0, files), second
    assert second["bytes_read"] == 0, "unchanged files must not be read again (files cache)"
    assert second["bytes_added"] <= 64 * 1024, second
    assert second["bytes_total"] == size
    assert second["snapshot_id"] != first["snapshot_id"]

    # Edit 100 bytes in the middle of the big file: only that file is read, and only
    # the chunks around the edit are stored again.
    db = src / "base" / "cabinet.db"
    original_sha = file_sha256(db)
    with open(db, "r+b") as handle:
        handle.seek(8 * MiB)
        handle.write(b"page rewritten by the practice software".ljust(100, b"."))
    third = bk.backup()
    assert (third["files_new"], third["files_changed"], third["files_unchanged"]) == (0, 1, files - 1), third
    assert third["bytes_read"] == db.stat().st_size
    assert 0 < third["bytes_added"] < 8 * MiB, third

    # A new file is new, and only it is read.
    write(src / "courriers" / "nouvelle.txt", "arrivée ce matin\n")
    fourth = bk.backup()
    assert (fourth["files_new"], fourth["files_changed"], fourth["files_unchanged"]) == (1, 0, files), fourth
    assert fourth["bytes_read"] == len("arrivée ce matin\n".encode())

    # Every snapshot still restores as it was: the first one has the old database.
    listed = bk.snapshots()
    assert [s["id"] for s in listed] == [r["snapshot_id"] for r in (first, second, third, fourth)]
    old = bk.base / "old"
    bk.restore(old, snapshot=first["snapshot_id"][:10])
    assert file_sha256(bk.restored(old, db)) == original_sha
    assert not bk.restored(old, src / "courriers" / "nouvelle.txt").exists()
    new = bk.base / "new"
    bk.restore(new)
    assert_same_tree(src, bk.restored(new))


def test_time_and_tags_are_recorded(bk: Backupctl) -> None:
    write(bk.src / "a.txt", "a\n")
    bk.init()
    report = bk.backup("--time", "2026-11-02T18:00:00+01:00", "--tag", "hebdomadaire", "--tag", "fin de mois")
    assert report["time"] == "2026-11-02T18:00:00+01:00"
    plain = bk.backup()
    (tagged,) = [s for s in bk.snapshots() if s["id"] == report["snapshot_id"]]
    assert tagged["time"] == "2026-11-02T18:00:00+01:00"
    assert tagged["tags"] == ["hebdomadaire", "fin de mois"]
    (untagged,) = [s for s in bk.snapshots() if s["id"] == plain["snapshot_id"]]
    assert untagged["tags"] == []
    text = bk.ok("snapshots").stdout
    assert "2026-11-02 18:00:00" in text and "hebdomadaire,fin de mois" in text, text


def test_bad_time_is_a_usage_error_and_saves_nothing(bk: Backupctl) -> None:
    write(bk.src / "a.txt", "a\n")
    bk.init()
    result = bk.run("backup", "--time", "le 2 novembre")
    assert_error(result, 2, "--time", "le 2 novembre")
    assert bk.snapshot_files() == []
    assert bk.packs() == []


def test_missing_source_path_exits_17_and_creates_no_snapshot(bk: Backupctl) -> None:
    write(bk.src / "a.txt", "a\n")
    missing = bk.base / "n'existe pas"
    bk.write_config(paths=[bk.src, missing])
    bk.init()
    before = bk.repo_digest()
    result = bk.run("backup")
    assert_error(result, 17, str(missing))
    assert bk.snapshots() == []
    assert bk.snapshot_files() == []
    assert bk.repo_digest() == before, "a refused backup must not write anything"


def test_source_that_is_a_special_file_exits_17(bk: Backupctl) -> None:
    fifo = bk.base / "tube"
    os.mkfifo(fifo)
    bk.write_config(paths=[fifo])
    bk.init()
    assert_error(bk.run("backup"), 17, str(fifo))
    assert bk.snapshot_files() == []


def test_moved_folder_is_read_again_but_stores_no_new_data(bk: Backupctl) -> None:
    for i in range(4):
        random_file(bk.src / "2025" / f"scan-{i}.pdf", 400_000 + i)
    bk.init()
    bk.backup()
    os.rename(bk.src / "2025", bk.src / "archives 2025")
    moved = bk.backup()
    assert moved["files_new"] == 4 and moved["bytes_read"] == 4 * 400_000 + 6
    assert moved["bytes_added"] <= 64 * 1024, "the same content under a new name is stored once"
    target = bk.base / "restored"
    bk.restore(target)
    assert_same_tree(bk.src, bk.restored(target))


def test_two_backups_at_once_into_one_repository(make_bk) -> None:
    """docs/REFERENCE.md: backups never modify existing objects, so two at once are safe."""
    one, two = make_bk("poste-accueil"), make_bk("poste-médecin")
    shared = f"file://{one.repo}"
    two.write_config(repo_url=shared)
    for bk, tag in ((one, "a"), (two, "b")):
        for i in range(3):
            random_file(bk.src / f"{tag}-{i}.bin", 3 * MiB)
    common = os.urandom(2 * MiB)
    for bk in (one, two):
        write(bk.src / "commun.bin", common)
    one.init()
    procs = [subprocess.Popen(bk.command("backup", "--json"), cwd=bk.base, env=base_env(),
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for bk in (one, two)]
    outputs = [p.communicate() for p in procs]
    ids = []
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err.decode()
        ids.append(json.loads(out)["snapshot_id"])
    assert sorted(s["id"] for s in one.snapshots()) == sorted(ids)
    check = one.ok_json("check", "--read-data")
    assert check["ok"] is True, check
    for bk, snapshot_id in zip((one, two), ids, strict=True):
        target = bk.base / "restored"
        bk.restore(target, snapshot=snapshot_id)
        assert_same_tree(bk.src, bk.restored(target))


def test_a_folder_1500_levels_deep_is_backed_up_restored_and_checked(bk: Backupctl) -> None:
    """A local user who can write in a backed-up folder must not be able to stop every
    backup with a deep folder (the walk recursed past Python's limit: exit 1, no snapshot)."""
    try:
        _backup_restore_and_test_a_deep_folder(bk)
    finally:  # pytest's clean-up of old temporary folders recurses: leave it no deep tree
        subprocess.run(["rm", "-rf", str(bk.src), str(bk.base / "restored"), str(bk.base / "scratch")], check=False)


def _backup_restore_and_test_a_deep_folder(bk: Backupctl) -> None:
    fd = os.open(bk.src, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(1500):  # by descriptor: the path is longer than a shell would take
        os.mkdir("d", dir_fd=fd)
        inner = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = inner
    leaf = os.open("fond.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
    os.write(leaf, b"au fond\n")
    os.close(leaf)
    os.close(fd)
    bk.init()
    report = bk.backup()
    assert report["files_new"] == 1 and report["dirs"] >= 1500, report
    target = bk.base / "restored"
    restored = bk.restore(target)
    assert restored["files"] == 1 and restored["sha256_verified"] == 1, restored
    fd = os.open(bk.restored(target), os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(1500):
        inner = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = inner
    leaf = os.open("fond.txt", os.O_RDONLY, dir_fd=fd)
    assert os.read(leaf, 100) == b"au fond\n"
    os.close(leaf)
    os.close(fd)
    bk.ok("check")
    # The restore test restores it and wipes it (shutil.rmtree recursed: patient data left).
    scratch = bk.base / "scratch"
    tested = bk.ok_json("restore-test", "--scratch-dir", str(scratch))
    assert tested["sha256_verified"] == 1 and tested["scratch_wiped"] is True, tested
    assert os.listdir(scratch) == []

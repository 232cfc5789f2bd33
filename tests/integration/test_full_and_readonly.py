"""Real small file systems (tmpfs): a restore target or a repository disk that is full
or read-only gives its own exit code, one line, and loses nothing stored."""

from __future__ import annotations

import subprocess


from .support import Backupctl, assert_error, assert_same_tree, file_sha256, random_file, write

MiB = 1024 * 1024


def test_restore_into_a_full_file_system_exits_15(twenty_mib: Backupctl, mount_tmpfs) -> None:
    bk = twenty_mib
    before = bk.repo_digest()
    small = mount_tmpfs(bk.base / "petit disque", "4m")
    result = bk.run("restore", "latest", "--target", str(small))
    assert_error(result, 15, "full")
    assert bk.repo_digest() == before
    check = bk.ok_json("check", "--read-data")
    assert check["ok"] is True and check["errors"] == []

    # The same snapshot restores whole where there is room.
    roomy = bk.base / "roomy"
    report = bk.restore(roomy)
    assert report["failures"] == [] and report["sha256_verified"] == 5
    assert_same_tree(bk.src, bk.restored(roomy))


def test_restore_into_a_read_only_file_system_exits_15(twenty_mib: Backupctl, mount_tmpfs) -> None:
    bk = twenty_mib
    read_only = mount_tmpfs(bk.base / "cdrom", "8m", read_only=True)
    result = bk.run("restore", "latest", "--target", str(read_only))
    assert_error(result, 15, "read-only")
    result = bk.run("restore", "latest", "--target", str(read_only / "sous-dossier"))
    assert_error(result, 15, "read-only")
    assert list(read_only.iterdir()) == []
    bk.ok("check")


def test_repository_disk_full_exits_14_and_keeps_earlier_snapshots(bk: Backupctl, mount_tmpfs) -> None:
    disk = mount_tmpfs(bk.base / "nas", "6m")
    bk.write_config(repo_url=f"file://{disk}/repo")
    write(bk.src / "lettre.txt", "Cher confrère\n")
    bk.init()
    first = bk.backup()
    for i in range(3):
        random_file(bk.src / f"irm-{i}.dcm", 4 * MiB)
    result = bk.run("backup")
    assert_error(result, 14, "full")
    assert [s["id"] for s in bk.snapshots()] == [first["snapshot_id"]], "no snapshot may reference missing data"
    check = bk.ok_json("check", "--read-data")
    assert check["ok"] is True
    target = bk.base / "restored"
    bk.restore(target)
    assert file_sha256(bk.restored(target) / "lettre.txt") == file_sha256(bk.src / "lettre.txt")


def test_read_only_repository_exits_14(bk: Backupctl, mount_tmpfs) -> None:
    disk = mount_tmpfs(bk.base / "nas", "16m")
    bk.write_config(repo_url=f"file://{disk}/repo")
    write(bk.src / "lettre.txt", "Cher confrère\n")
    bk.init()
    bk.backup()
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    write(bk.src / "nouvelle.txt", "arrivée ce matin\n")
    assert_error(bk.run("backup"), 14, "read-only")
    assert len(bk.snapshots()) == 1
    bk.ok("check", "--read-data")
    target = bk.base / "restored"
    bk.restore(target)
    assert (bk.restored(target) / "lettre.txt").read_text() == "Cher confrère\n"


def test_state_dir_on_a_read_only_file_system_is_a_config_error(bk: Backupctl, mount_tmpfs) -> None:
    """The files cache lives in state_dir; when it cannot be written the backup must say
    so in one line naming state_dir (exit 2, as when the folder cannot be created), not
    crash with an internal error."""
    state = mount_tmpfs(bk.base / "state-disk", "4m")
    bk.state = state
    bk.write_config()
    write(bk.src / "lettre.txt", "Cher confrère\n")
    bk.init()
    bk.backup()  # creates the files cache
    subprocess.run(["mount", "-o", "remount,ro", str(state)], check=True)
    write(bk.src / "nouvelle.txt", "arrivée ce matin\n")
    result = bk.run("backup")
    assert_error(result, 2, str(state), "state_dir")
    assert len(bk.snapshots()) == 1


def test_state_dir_that_cannot_be_created_is_a_config_error(bk: Backupctl, mount_tmpfs) -> None:
    disk = mount_tmpfs(bk.base / "ro-disk", "1m", read_only=True)
    bk.state = disk / "state"
    bk.write_config()
    write(bk.src / "lettre.txt", "Cher confrère\n")
    bk.init()
    assert_error(bk.run("backup"), 2, str(disk / "state"), "state_dir")
    assert bk.snapshots() == []


def test_one_file_system_keeps_the_mount_point_but_not_its_content(bk: Backupctl, mount_tmpfs) -> None:
    write(bk.src / "lettre.txt", "Cher confrère\n")
    mounted = mount_tmpfs(bk.src / "clé usb", "4m")
    write(mounted / "photo.jpg", b"\xff\xd8" + b"x" * 1000)
    bk.init()
    crossing = bk.backup()
    assert crossing["files_new"] == 2
    staying = bk.backup("--one-file-system")
    assert staying["files_new"] + staying["files_changed"] + staying["files_unchanged"] == 1
    target = bk.base / "restored"
    bk.restore(target, snapshot=staying["snapshot_id"])
    copy = bk.restored(target)
    assert (copy / "lettre.txt").is_file()
    assert (copy / "clé usb").is_dir() and list((copy / "clé usb").iterdir()) == []

    text = bk.config.read_text(encoding="utf-8").replace("[source]\n", "[source]\none_file_system = true\n")
    bk.config.write_text(text, encoding="utf-8")
    from_config = bk.backup()
    assert from_config["files_new"] + from_config["files_changed"] + from_config["files_unchanged"] == 1

"""Files that cannot be read: the backup is partial (exit 3), says which, and keeps the rest.

The suite runs as root, which reads any file; these backups run as an unprivileged
user (setpriv to uid/gid 65534), for whom a mode-000 file really is unreadable.
"""

from __future__ import annotations

import os
from pathlib import Path

from .support import NOBODY, Backupctl, assert_error, file_sha256, set_mtimes, write


def chown_tree(root: Path, uid: int) -> None:
    os.chown(root, uid, uid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.lchown(os.path.join(dirpath, name), uid, uid)


def test_unreadable_file_makes_a_partial_backup_that_still_restores(open_dir: Path) -> None:
    bk = Backupctl(open_dir / "cabinet")
    src = bk.src
    write(src / "lisible.txt", "tout le monde peut lire\n")
    write(src / "patients" / "Élodie Müller.txt", "dossier lisible\n")
    write(src / "patients" / "secret médical.txt", "illisible pour l'agent\n")
    write(src / "verrouillé" / "dedans.txt", "dossier illisible\n")
    set_mtimes(src)
    chown_tree(bk.base, NOBODY)
    os.chmod(src / "patients" / "secret médical.txt", 0o000)
    os.chmod(src / "verrouillé", 0o000)
    unreadable_file = f"{src}/patients/secret médical.txt"
    unreadable_dir = f"{src}/verrouillé"

    init = bk.run("init", user=NOBODY)
    assert init.returncode == 0, str(init)

    result = bk.run("backup", user=NOBODY)
    assert result.returncode == 3, str(result)
    assert "Traceback" not in result.stderr
    assert "backupctl: error:" not in result.stderr, "a partial backup is not an error"
    warnings = [line for line in result.stderr.splitlines() if "warning:" in line]
    assert any(unreadable_file in line and "cannot be read" in line for line in warnings), str(result)
    assert any(unreadable_dir in line for line in warnings), str(result)
    assert not any("lisible.txt" in line or "Élodie" in line for line in warnings), str(result)
    assert "partial" in result.stderr
    assert "saved" in result.stdout

    again = bk.run("backup", "--json", user=NOBODY)
    assert again.returncode == 3, str(again)
    report = again.json()
    assert report["partial"] is True and report["snapshot_id"]
    assert sorted(w["path"] for w in report["warnings"]) == sorted([unreadable_file, unreadable_dir])
    assert report["files_new"] + report["files_changed"] + report["files_unchanged"] == 2

    bk.user = NOBODY  # root may not run commands that write in nobody's state dir (agent/run_as.py)
    listed = bk.snapshots()
    assert len(listed) == 2 and all(s["partial"] for s in listed)
    assert "(partial)" in bk.ok("snapshots").stdout

    target = bk.base / "restored"
    restored = bk.restore(target)
    assert restored["failures"] == [] and restored["sha256_verified"] == 2
    copy = bk.restored(target)
    assert file_sha256(copy / "lisible.txt") == file_sha256(src / "lisible.txt")
    assert file_sha256(copy / "patients" / "Élodie Müller.txt") == file_sha256(src / "patients" / "Élodie Müller.txt")
    assert not (copy / "patients" / "secret médical.txt").exists()
    assert (copy / "verrouillé").is_dir() and list((copy / "verrouillé").iterdir()) == []
    bk.ok("check", "--read-data")

    # Once the file is readable again, the next backup is complete and has it.
    os.chmod(src / "patients" / "secret médical.txt", 0o644)
    os.chmod(src / "verrouillé", 0o755)
    full = bk.run("backup", "--json", user=NOBODY)
    assert full.returncode == 0, str(full)
    assert full.json()["partial"] is False
    bk.restore(bk.base / "complete")
    assert (bk.restored(bk.base / "complete") / "patients" / "secret médical.txt").read_text() \
        == "illisible pour l'agent\n"
    assert (bk.restored(bk.base / "complete") / "verrouillé" / "dedans.txt").read_text() == "dossier illisible\n"


def test_unprivileged_restore_into_an_unwritable_target_exits_15(open_dir: Path) -> None:
    bk = Backupctl(open_dir / "cabinet")
    write(bk.src / "a.txt", "a\n")
    chown_tree(bk.base, NOBODY)
    assert bk.run("init", user=NOBODY).returncode == 0
    assert bk.run("backup", user=NOBODY).returncode == 0
    locked = bk.base / "root-only"
    locked.mkdir(mode=0o755)  # owned by root: nobody cannot write in it
    result = bk.run("restore", "latest", "--target", str(locked), user=NOBODY)
    assert_error(result, 15, "not writable")
    assert list(locked.iterdir()) == []

"""--json: every command prints one valid JSON document (UTF-8) on stdout, and nothing
else; a failing command still prints its JSON, then its one error line on stderr."""

from __future__ import annotations

import os
import subprocess

from .support import Backupctl, assert_error, base_env, write

NON_UTF8 = b"r\xe9sum\xe9.txt"  # latin-1 bytes: not valid UTF-8


def test_every_command_prints_valid_json(bk: Backupctl) -> None:
    write(bk.src / "Élodie Müller.txt", "dossier\n")
    write(bk.src / "ordonnance.txt", "paracétamol\n")

    init = bk.run("init", "--json")
    assert init.returncode == 0 and init.stderr == "", str(init)
    doc = init.json()
    assert doc["repository"] == "main" and len(doc["repository_id"]) == 32
    assert doc["cipher"] == "xchacha20-poly1305" and doc["url"] == f"file://{bk.repo}"

    backup = bk.run("backup", "--json", "--tag", "été")
    assert backup.returncode == 0 and backup.stderr == "", str(backup)
    doc = backup.json()
    for key in ("snapshot_id", "time", "files_new", "files_changed", "files_unchanged", "dirs",
                "bytes_total", "bytes_read", "bytes_added", "duration_s", "partial", "warnings"):
        assert key in doc, f"backup --json has no {key!r}"
    assert doc["files_new"] == 2 and doc["partial"] is False
    snapshot_id = doc["snapshot_id"]

    snapshots = bk.run("snapshots", "--json")
    assert snapshots.returncode == 0 and snapshots.stderr == "", str(snapshots)
    (listed,) = snapshots.json()["snapshots"]
    assert listed["id"] == snapshot_id and listed["tags"] == ["été"] and listed["files"] == 2

    target = bk.base / "restored"
    restore = bk.run("restore", "latest", "--target", str(target), "--json")
    assert restore.returncode == 0 and restore.stderr == "", str(restore)
    doc = restore.json()
    assert doc["snapshot_id"] == snapshot_id and doc["sha256_verified"] == 2 and doc["dry_run"] is False

    dry = bk.run("restore", snapshot_id[:8], "--target", str(bk.base / "dry"), "--dry-run", "--json")
    assert dry.returncode == 0, str(dry)
    assert any(p.endswith("Élodie Müller.txt") for p in dry.json()["would_restore"])

    for args in (["check"], ["check", "--read-data"]):
        check = bk.run(*args, "--json")
        assert check.returncode == 0 and check.stderr == "", str(check)
        doc = check.json()
        assert doc["ok"] is True and doc["snapshots"] == 1 and doc["read_data"] is ("--read-data" in args)

    # Errors: still one line on stderr, and nothing that pretends to be JSON on stdout.
    again = bk.run("init", "--json")
    assert_error(again, 11)
    assert again.stdout == ""


def test_json_output_with_a_file_name_that_is_not_utf8(bk: Backupctl) -> None:
    """Names are file-system bytes; --json output must still be a valid (UTF-8) JSON
    document that a monitoring script can parse."""
    write(os.path.join(os.fsencode(bk.src), NON_UTF8), b"CV\n")
    write(bk.src / "normal.txt", "ok\n")
    bk.init()
    backup = bk.run("backup", "--json")
    assert backup.returncode == 0, str(backup)
    backup.json()

    dry = bk.run("restore", "latest", "--target", str(bk.base / "dry"), "--dry-run", "--json")
    assert dry.returncode == 0, str(dry)
    listed = dry.json()["would_restore"]  # fails if stdout is not valid UTF-8
    assert any(os.path.basename(p).startswith("r") and "sum" in p for p in listed), listed

    target = bk.base / "restored"
    restore = bk.run("restore", "latest", "--target", str(target), "--json")
    assert restore.returncode == 0, str(restore)
    assert restore.json()["sha256_verified"] == 2
    assert os.path.exists(os.path.join(os.fsencode(bk.restored(target)), NON_UTF8))


def test_human_output_with_a_non_utf8_name_does_not_crash(bk: Backupctl) -> None:
    write(os.path.join(os.fsencode(bk.src), NON_UTF8), b"CV\n")
    bk.init()
    bk.ok("backup")
    dry = bk.ok("restore", "latest", "--target", str(bk.base / "dry"), "--dry-run")
    assert "sum" in dry.stdout
    # Under a plain C locale too (the agent may run from cron with no locale at all).
    env = base_env()
    env.update(LANG="C", LC_ALL="C")
    proc = subprocess.run(bk.command("restore", "latest", "--target", str(bk.base / "dry"), "--dry-run"),
                          env=env, stdin=subprocess.DEVNULL, capture_output=True, cwd=bk.base)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert b"Traceback" not in proc.stderr

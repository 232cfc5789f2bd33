"""The audit trail through the CLI: backups, restores (with where they went), prunes and
repository creation are recorded; `audit verify` passes, and fails (exit 13) naming the
record that was edited (tests/unit/state/test_audit.py: every kind of alteration)."""

from __future__ import annotations

import json
from pathlib import Path

from .support import Backupctl, assert_error, write


def test_commands_leave_a_verifiable_trail(bk: Backupctl):
    write(bk.src / "Dupont Jean - compte rendu.txt", "Monsieur, " * 100)
    assert bk.run("init").returncode == 0
    assert bk.run("backup").returncode == 0
    target = bk.base / "restored"
    assert bk.run("restore", "latest", "--target", str(target), "--include", "*Dupont*").returncode == 0
    assert bk.run("restore", "latest", "--target", str(bk.base / "dry"), "--dry-run").returncode == 0
    assert bk.run("prune", "--dry-run").returncode == 0
    trail = Path(bk.state) / "audit.jsonl"
    records = [json.loads(line) for line in trail.read_text().splitlines()]
    assert [r["action"] for r in records] == ["repository_created", "backup", "restore"]
    restore = records[2]
    assert restore["target"] == str(target) and restore["includes"] == ["*Dupont*"]
    assert restore["files"] == 1 and restore["sha256_verified"] == 1
    verify = bk.run("audit", "verify", "--json")
    assert verify.returncode == 0 and verify.json()["records"] == 3 and verify.json()["intact"] is True
    lines = trail.read_text().splitlines()
    lines[1] = lines[1].replace('"files_new": 1', '"files_new": 0')
    trail.write_text("\n".join(lines) + "\n")
    # The edited line is named (line 2), not the one whose link it broke.
    assert_error(bk.run("audit", "verify"), 13, "line 2: it was changed (line 3 does not follow it)")

"""`cipher` and `compression_level` are fixed at init: a configuration changed afterwards is
not applied, and the backup says so in one warning line (issue 18, point 5)."""

from __future__ import annotations

from .support import Backupctl, write


def test_a_cipher_or_level_changed_after_init_is_said_not_silently_ignored(bk: Backupctl):
    write(bk.src / "lettre.txt", "Madame, " * 100)
    bk.init()
    quiet = bk.ok("backup")
    assert "in the configuration" not in quiet.stderr
    bk.write_config(cipher="aes-256-gcm", extra_repo_lines="compression_level = 9")
    result = bk.ok("backup")
    (line,) = [line for line in result.stderr.splitlines() if "in the configuration" in line]
    assert line.startswith("backupctl: warning: [repositories.main]: cipher aes-256-gcm in the configuration, "
                           "xchacha20-poly1305 in the repository; compression_level 9 in the configuration, "
                           "compression_level 1 in the repository"), line
    assert "fixed at init" in line and "copy --to" in line
    bk.write_config(extra_repo_lines='compression = "none"')
    (line,) = [line for line in bk.ok("backup").stderr.splitlines() if "in the configuration" in line]
    assert line.startswith("backupctl: warning: [repositories.main]: compression none in the configuration, "
                           "compression_level 1 in the repository: the repository keeps"), line

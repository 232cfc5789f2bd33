"""Security hardening of keys and secrets through the real CLI (issue 16, points 4, 7, 8;
docs/SECURITY.md sections 4, 7, 8): planted key files, files written in shared folders,
and secrets that never reach a message."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from .support import NOBODY, Backupctl, as_user, assert_error, base_env, write
from .test_recovery import _typed_code

HOSTILE = (4 * 1024 * 1024, 6)  # the planted key of the issue: 4 GiB, 6 passes
LARGEST_ACCEPTED = (65536, 3)  # what init writes


def _plant(repo: Path, repository_id: str, numbers: range, params: tuple[int, int]) -> None:
    """Key files written by someone who can add objects to the storage and nothing else:
    well formed, ids that sort before any real one, a wrapped key nothing opens."""
    for number in numbers:
        key_id = number.to_bytes(16, "big").hex()
        document = {
            "version": 1, "repository_id": repository_id, "key_id": key_id,
            "created": "2026-01-01T00:00:00+00:00", "host": "planted",
            "kdf": {"algorithm": "argon2id", "version": 19, "memory_kib": params[0], "iterations": params[1],
                    "parallelism": 1, "salt": base64.b64encode(os.urandom(16)).decode()},
            "wrapped_master_key": base64.b64encode(os.urandom(74)).decode(),
        }
        (repo / "keys" / key_id).write_text(json.dumps(document))


# ---- point 4: a planted key file cannot stall a command ---------------------------------


def test_planted_key_files_cost_a_machine_in_use_nothing_and_a_new_one_a_bounded_amount(bk: Backupctl):
    write(bk.src / "lettre.txt", "Madame, " * 100)
    repository_id = bk.init()["repository_id"]
    bk.backup()
    sheet = bk.base / "fiche.html"
    bk.ok("key", "export", "--paper", str(sheet))
    assert repository_id in json.loads((bk.state / "keys.json").read_text())  # init remembered its key
    _plant(bk.repo, repository_id, range(0, 1), HOSTILE)
    _plant(bk.repo, repository_id, range(1, 11), LARGEST_ACCEPTED)
    # This machine opened the repository before: its own key first, nothing else tried.
    assert len(bk.ok_json("snapshots")["snapshots"]) == 1
    # A machine without that memory: the 4 GiB file is refused for free, Argon2id runs on
    # 8 key files, then a clear error that says how many were not tried.
    (bk.state / "keys.json").unlink()
    assert_error(bk.run("snapshots"), 12, "none of the 8 key files tried", "3 more were not tried",
                 "recover --add-key")
    # The recovery sheet gives this machine a key, which it then tries first.
    new = write(bk.base / "new", "nouvelle phrase de passe du serveur\n", mode=0o600)
    env = {**base_env(passphrase=None), "BACKUPCTL_STATE_DIR": str(bk.state)}
    added = subprocess.run([sys.executable, "-m", "agent", "recover", "--url", f"file://{bk.repo}", "--add-key",
                            "--new-passphrase-file", str(new)], input=_typed_code(sheet),
                           capture_output=True, text=True, env=env, cwd=bk.base, timeout=300)
    assert added.returncode == 0, added.stderr
    result = bk.run("snapshots", "--json", passphrase="nouvelle phrase de passe du serveur")
    assert result.returncode == 0, result


# ---- point 7: files written safely -------------------------------------------------------


def _shared_folder(open_dir: Path) -> Path:
    """A folder a local user (uid 65534) can write in, where the sheet is asked for."""
    shared = open_dir / "partage"
    shared.mkdir()
    shared.chmod(0o777)
    return shared


def _as_nobody(*argv: str) -> None:
    subprocess.run([*as_user(NOBODY), *argv], check=True)


def test_the_recovery_sheet_is_never_written_through_a_local_users_file(bk: Backupctl, open_dir: Path):
    write(bk.src / "lettre.txt", "Madame, " * 100)
    bk.init()
    shared = _shared_folder(open_dir)
    victim = open_dir / "victim"
    victim.write_text("root's own file\n")
    victim.chmod(0o644)
    # The local user prepares the names the old code used: a symbolic link to a file it
    # wants overwritten, and a file of its own that it keeps open to read the key.
    _as_nobody("ln", "-s", str(victim), str(shared / "fiche.html.tmp"))
    _as_nobody("sh", "-c", f"umask 0; : > {shared / 'autre.html.tmp'}")
    for name in ("fiche.html", "autre.html"):
        bk.ok("key", "export", "--paper", str(shared / name))
        sheet = shared / name
        st = os.lstat(sheet)
        assert stat.S_ISREG(st.st_mode) and st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o600
        assert "<td class=\"check\">" in sheet.read_text(encoding="utf-8")
    assert victim.read_text() == "root's own file\n"
    assert os.readlink(shared / "fiche.html.tmp") == str(victim)
    theirs = os.lstat(shared / "autre.html.tmp")
    assert theirs.st_uid == NOBODY and theirs.st_size == 0
    # Nothing else was left in the folder (no temporary file of ours).
    assert sorted(p.name for p in shared.iterdir()) == ["autre.html", "autre.html.tmp", "fiche.html",
                                                        "fiche.html.tmp"]

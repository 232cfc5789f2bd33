"""Key errors (issue 18, point 4): a wrong passphrase, a damaged key file and a repository
with no key file are three different messages, each exit 12, each naming the next command
(`backupctl recover --add-key` with the recovery sheet); a passphrase message names the
source of the passphrase actually used."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .support import Backupctl, assert_error, base_env, typed_code, write

WRONG = "pas la bonne phrase du tout"


@pytest.fixture
def saved(bk: Backupctl) -> Backupctl:
    write(bk.src / "lettre.txt", "Madame, " * 100)
    bk.init()
    bk.backup()
    return bk


def _key_files(bk: Backupctl) -> list[Path]:
    return sorted(p for p in (bk.repo / "keys").iterdir() if p.is_file())


def test_wrong_passphrase_from_the_environment_names_the_variable_and_the_next_command(saved: Backupctl):
    before = saved.repo_digest()
    line = assert_error(saved.run("snapshots", passphrase=WRONG), 12, "passphrase opens none",
                        "BACKUPCTL_PASSPHRASE", "recover --url file://", "--add-key", "recovery sheet")
    assert "no key file" not in line and "not valid JSON" not in line
    assert saved.repo_digest() == before


def test_wrong_passphrase_from_the_passphrase_file_names_that_file(saved: Backupctl):
    secret = write(saved.base / "phrase", WRONG + "\n", mode=0o600)
    with open(saved.config, "a", encoding="utf-8") as handle:
        handle.write(f'\n[key]\npassphrase_file = "{secret}"\n')
    line = assert_error(saved.run("backup", passphrase=None), 12, f"the passphrase file {secret}",
                        "recover --url", "--add-key")
    assert "BACKUPCTL_PASSPHRASE" not in line.split(" — ")[0]


def test_wrong_passphrase_from_a_systemd_credential_names_the_credential(saved: Backupctl):
    credentials = saved.base / "credentials"
    credentials.mkdir(mode=0o700)
    write(credentials / "passphrase", WRONG + "\n", mode=0o600)
    env = {**base_env(passphrase=None), "CREDENTIALS_DIRECTORY": str(credentials)}
    proc = subprocess.run(saved.command("snapshots"), env=env, cwd=saved.base, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 12, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "the systemd credential 'passphrase'" in proc.stderr and "--add-key" in proc.stderr


def test_wrong_passphrase_typed_at_the_prompt_says_it_was_typed(saved: Backupctl):
    """A real terminal (a pseudo-terminal as the controlling terminal): the prompt is the source."""
    pid, master = pty.fork()
    if pid == 0:  # the child: its terminal is the pty
        os.chdir(saved.base)
        os.execve(sys.executable, saved.command("snapshots"), base_env(passphrase=None))
    output = b""
    sent = False
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1)
        if not ready:
            continue
        try:
            data = os.read(master, 4096)
        except OSError:  # the child is gone
            break
        if not data:
            break
        output += data
        if not sent and b"passphrase" in output.lower():
            os.write(master, (WRONG + "\n").encode())
            sent = True
    _, status = os.waitpid(pid, 0)
    os.close(master)
    text = output.decode("utf-8", "replace")
    assert sent, text
    assert os.waitstatus_to_exitcode(status) == 12, text
    assert "the passphrase typed at the prompt" in text and "--add-key" in text, text


def test_a_damaged_key_file_is_not_called_a_wrong_passphrase(saved: Backupctl):
    (key,) = _key_files(saved)
    key.write_bytes(key.read_bytes()[:100])  # cut short, as a half-copied file is
    line = assert_error(saved.run("snapshots"), 12, f"key file keys/{key.name}", "not valid JSON",
                        "no usable key file", "recover --url", "--add-key", "recovery sheet")
    assert "passphrase opens none" not in line


def test_a_repository_with_no_key_file_says_so_and_the_sheet_mends_it(saved: Backupctl):
    sheet = saved.base / "fiche.html"
    saved.ok("key", "export", "--paper", str(sheet))
    for key in _key_files(saved):
        key.unlink()
    line = assert_error(saved.run("snapshots"), 12, "has no key file", str(saved.repo), "recover --url",
                        "--add-key", "recovery sheet")
    assert "passphrase opens none" not in line and "not valid JSON" not in line
    # The command the message names does mend it.
    new = write(saved.base / "new", "nouvelle phrase de passe du serveur\n", mode=0o600)
    env = {**base_env(passphrase=None), "BACKUPCTL_STATE_DIR": str(saved.state)}
    added = subprocess.run([sys.executable, "-m", "agent", "recover", "--url", f"file://{saved.repo}", "--add-key",
                            "--new-passphrase-file", str(new)], input=typed_code(sheet),
                           capture_output=True, text=True, env=env, cwd=saved.base, timeout=300)
    assert added.returncode == 0, added.stderr
    assert len(saved.ok_json("snapshots", passphrase="nouvelle phrase de passe du serveur")["snapshots"]) == 1

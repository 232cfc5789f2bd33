"""agent/state/files.py: state files and the recovery sheet are written through an
unpredictable temporary name (mkstemp: O_CREAT | O_EXCL | O_NOFOLLOW, 0600) in the same
folder, then renamed; a name prepared by a local user is never opened (SECURITY.md 7)."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from agent.state import files as state_file
from agent.state.audit import AuditTrail
from agent.state import media
from agent.errors import StateDirError

ROOT = Path(__file__).resolve().parents[2]
NOBODY = 65534


@pytest.fixture
def shared(tmp_path: Path) -> Path:
    """A folder that another local user (uid 65534) can write in, not sticky: a shared
    folder where the operator was asked to put the recovery sheet."""
    folder = tmp_path / "shared"
    folder.mkdir()
    os.chmod(folder, 0o777)
    return folder


def _prepare_symlink(link: Path, target: Path) -> None:
    os.symlink(target, link)
    os.lchown(link, NOBODY, NOBODY)


def _prepare_file(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    os.chown(path, NOBODY, NOBODY)
    os.chmod(path, 0o666)


def _assert_private_and_ours(path: Path, data: bytes) -> None:
    st = os.lstat(path)
    assert stat.S_ISREG(st.st_mode)
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (os.getuid(), 0o600)
    assert path.read_bytes() == data


def test_a_prepared_tmp_symlink_is_never_written_through(shared: Path, tmp_path: Path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"the victim's own content\n")
    _prepare_symlink(shared / "sheet.html.tmp", victim)
    state_file.save_bytes(str(shared / "sheet.html"), b"MASTER KEY")
    _assert_private_and_ours(shared / "sheet.html", b"MASTER KEY")
    assert victim.read_bytes() == b"the victim's own content\n"
    assert os.readlink(shared / "sheet.html.tmp") == str(victim)


def test_a_prepared_tmp_file_of_another_user_is_left_untouched(shared: Path):
    attacker = shared / "records.json.tmp"
    _prepare_file(attacker, b"attacker")
    inode = os.stat(attacker).st_ino
    state_file.save_json(str(shared / "records.json"), {"secret": "value"})
    _assert_private_and_ours(shared / "records.json", b'{\n "secret": "value"\n}')
    assert os.stat(shared / "records.json").st_ino != inode
    assert attacker.read_bytes() == b"attacker" and os.stat(attacker).st_uid == NOBODY


def test_a_symlink_at_the_final_name_is_replaced_not_followed(shared: Path, tmp_path: Path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    _prepare_symlink(shared / "sheet.html", victim)
    state_file.save_bytes(str(shared / "sheet.html"), b"MASTER KEY")
    _assert_private_and_ours(shared / "sheet.html", b"MASTER KEY")
    assert victim.read_bytes() == b"keep"


def test_the_temporary_name_is_fresh_and_nothing_is_left_behind(shared: Path, monkeypatch):
    seen: list[str] = []
    real_replace = os.replace

    def spy(src, dst):
        seen.append(os.path.basename(src))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    for _ in range(2):
        state_file.save_bytes(str(shared / "a.json"), b"{}")
    assert len(set(seen)) == 2 and all(name != "a.json.tmp" for name in seen)
    assert sorted(os.listdir(shared)) == ["a.json"]


def test_a_failed_write_keeps_the_old_version_and_leaves_no_temporary_file(shared: Path, monkeypatch):
    state_file.save_bytes(str(shared / "a.json"), b"old")

    def failing_fsync(_fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(StateDirError, match="cannot be written"):
        state_file.save_bytes(str(shared / "a.json"), b"new")
    assert (shared / "a.json").read_bytes() == b"old"
    assert sorted(os.listdir(shared)) == ["a.json"]


def test_the_audit_head_is_not_written_through_a_prepared_name(shared: Path, tmp_path: Path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    _prepare_symlink(shared / "audit.head.tmp", victim)
    AuditTrail(str(shared)).append("test")
    assert victim.read_bytes() == b"keep"
    assert stat.S_IMODE(os.lstat(shared / "audit.head").st_mode) == 0o600
    assert AuditTrail(str(shared)).verify() is not None


def test_a_disk_label_is_not_written_through_a_prepared_name(shared: Path, tmp_path: Path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    _prepare_symlink(shared / f".{media.LABEL_FILE}.tmp", victim)
    media.write_label(str(shared), "DISK-A", "set")
    assert victim.read_bytes() == b"keep"
    assert media.read_label(str(shared)).label == "DISK-A"
    assert os.lstat(shared / media.LABEL_FILE).st_uid == os.getuid()


def test_no_predictable_temporary_name_is_left_in_the_agent():
    """The pattern that let a local user own the sheet: a temporary name made by
    appending to the destination (path + ".tmp", f"{path}.tmp", ".x.tmp")."""
    pattern = re.compile(r"""(\+\s*["']\.(tmp|temp|part|new)["'])|(\.(tmp|temp|part)["'])""")
    offenders = []
    for path in (ROOT / "agent").rglob("*.py"):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if pattern.search(line) and "mkstemp(" not in line:  # mkstemp's suffix is not a name
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []


def test_the_audit_trail_and_ledger_lock_are_never_opened_through_a_link(tmp_path: Path):
    """Files opened in place (append, flock) refuse a symbolic link at their name."""
    from agent.state.ledger import Ledger

    state = tmp_path / "state"
    (state / "ledger").mkdir(parents=True)
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    os.symlink(victim, state / "audit.jsonl")
    with pytest.raises(StateDirError):
        AuditTrail(str(state)).append("test")
    ledger = Ledger(str(state), b"\x01" * 32)
    os.symlink(victim, ledger.path + ".lock")
    ledger.note_saved("a" * 64, "2026-12-06T00:00:00+00:00")
    assert ledger.write_problem is not None
    assert victim.read_bytes() == b"keep"

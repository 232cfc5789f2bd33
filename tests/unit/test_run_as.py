"""agent/run_as.py: root on an installed server switches to the service wrapper or
refuses; a refused access names owner and mode. Real files, real uids, real exec.

The suite runs as root; uid 65534 plays the service user. Where a test needs another
user or an exec, it forks, so the suite's own process is never changed.
"""

from __future__ import annotations

import os
import shlex
import shutil
import stat
import sys
import tempfile
from pathlib import Path

import pytest

from agent import run_as
from agent.errors import PermissionDenied

SERVICE_UID = 65534


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "state"
    folder.mkdir(mode=0o700)
    os.chown(folder, SERVICE_UID, SERVICE_UID)
    return folder


@pytest.fixture
def no_wrapper(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(run_as, "SERVICE_WRAPPER", str(tmp_path / "absent"))
    monkeypatch.delenv(run_as.SWITCHED_ENV, raising=False)
    monkeypatch.delenv("BACKUPCTL_CONFIG", raising=False)


def _wrapper(path: Path, record: Path, *, marker: bool = True, mode: int = 0o755) -> Path:
    """A fake service wrapper: records its arguments and the loop guard, one per line."""
    path.write_text("#!/bin/sh\n" + (run_as.WRAPPER_MARKER + "\n" if marker else "")
                    + f'for a in "$@"; do printf "%s\\n" "$a"; done > {shlex.quote(str(record))}\n'
                    + f'printf "guard=%s\\n" "${run_as.SWITCHED_ENV}" >> {shlex.quote(str(record))}\n')
    os.chmod(path, mode)
    return path


def _in_child(body) -> int:
    """Run body() in a forked child; its exit status (0 when body returns, 3 when it
    raises PermissionDenied, 4 otherwise). An exec replaces the child: its status then."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            body()
        except PermissionDenied:
            code = 3
        except BaseException:  # noqa: BLE001 - reported by the status
            code = 4
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


ARGV = ["/opt/backupctl/bin/backupctl", "--config", "/etc/backupctl/config.toml", "restore", "latest",
        "--target", "/srv/dossier restauré"]


def test_refusal_gives_the_exact_command(state_dir: Path, no_wrapper) -> None:
    with pytest.raises(PermissionDenied) as refused:
        run_as.switch_or_refuse(ARGV, state_dir=str(state_dir), config_given=True)
    assert refused.value.exit_code == 22
    line = refused.value.one_line()
    assert f"would write into {state_dir} (owned by nobody)" in line
    assert line.endswith("run it as nobody: sudo -u nobody /opt/backupctl/bin/backupctl --config "
                         "/etc/backupctl/config.toml restore latest --target '/srv/dossier restauré'")


def test_python_dash_m_is_printed_as_such_and_the_environment_config_made_explicit(
        state_dir: Path, no_wrapper, monkeypatch) -> None:
    monkeypatch.setenv("BACKUPCTL_CONFIG", "/etc/backupctl/autre.toml")
    with pytest.raises(PermissionDenied) as refused:
        run_as.switch_or_refuse([run_as.__file__.replace("run_as.py", "__main__.py"), "backup"],
                                state_dir=str(state_dir), config_given=False)
    assert refused.value.one_line().endswith(
        f"sudo -u nobody {sys.executable} -m agent --config /etc/backupctl/autre.toml backup")


def test_nothing_to_protect_when_the_state_dir_is_roots_or_absent(tmp_path: Path, no_wrapper) -> None:
    run_as.switch_or_refuse(ARGV, state_dir=str(tmp_path), config_given=True)  # root's own
    run_as.switch_or_refuse(ARGV, state_dir=str(tmp_path / "not yet"), config_given=True)


def test_the_service_user_itself_is_never_stopped(state_dir: Path, no_wrapper) -> None:
    def as_service_user() -> None:
        os.setgid(SERVICE_UID)
        os.setuid(SERVICE_UID)
        run_as.switch_or_refuse(ARGV, state_dir=str(state_dir), config_given=True)

    assert _in_child(as_service_user) == 0


def test_root_runs_the_marked_wrapper_with_the_same_arguments(state_dir: Path, tmp_path: Path, monkeypatch) -> None:
    record = tmp_path / "record"
    wrapper = _wrapper(tmp_path / "backupctl", record)
    monkeypatch.setattr(run_as, "SERVICE_WRAPPER", str(wrapper))
    monkeypatch.delenv(run_as.SWITCHED_ENV, raising=False)

    status = _in_child(lambda: run_as.switch_or_refuse(ARGV, state_dir=str(state_dir), config_given=True))
    assert status == 0  # the wrapper's own exit: the child was replaced by it
    assert record.read_text().splitlines() == [*ARGV[1:], "guard=1"]


@pytest.mark.parametrize("flaw", ["no marker", "writable by others", "a symbolic link", "not root's"])
def test_anything_else_at_the_wrapper_path_is_not_run(flaw: str, state_dir: Path, tmp_path: Path,
                                                      monkeypatch) -> None:
    record = tmp_path / "record"
    real = _wrapper(tmp_path / "real", record, marker=flaw != "no marker",
                    mode=0o757 if flaw == "writable by others" else 0o755)
    wrapper = real
    if flaw == "a symbolic link":
        wrapper = tmp_path / "link"
        wrapper.symlink_to(real)
    if flaw == "not root's":
        os.chown(real, SERVICE_UID, SERVICE_UID)
    monkeypatch.setattr(run_as, "SERVICE_WRAPPER", str(wrapper))
    monkeypatch.delenv(run_as.SWITCHED_ENV, raising=False)

    assert not run_as.is_service_wrapper(str(wrapper))
    assert _in_child(lambda: run_as.switch_or_refuse(ARGV, state_dir=str(state_dir), config_given=True)) == 3
    assert not record.exists()


def test_back_as_root_after_the_wrapper_refuses_instead_of_looping(state_dir: Path, tmp_path: Path,
                                                                   monkeypatch) -> None:
    record = tmp_path / "record"
    monkeypatch.setattr(run_as, "SERVICE_WRAPPER", str(_wrapper(tmp_path / "backupctl", record)))
    monkeypatch.setenv(run_as.SWITCHED_ENV, "1")
    with pytest.raises(PermissionDenied) as refused:
        run_as.switch_or_refuse(ARGV, state_dir=str(state_dir), config_given=True)
    assert "ran it as root again" in str(refused.value)
    assert not record.exists()


@pytest.fixture
def open_dir():
    """A folder other users can reach (pytest's own is root's, 0700)."""
    path = Path(tempfile.mkdtemp(prefix="backupctl-run-as-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_a_refused_read_names_owner_mode_and_user(open_dir: Path) -> None:
    tmp_path = open_dir
    repo = tmp_path / "repo"
    (repo / "data" / "ab").mkdir(parents=True)
    pack = repo / "data" / "ab" / ("ab" * 32)
    pack.write_bytes(b"x")
    os.chmod(pack, 0o600)
    for path in (tmp_path, repo, repo / "data", repo / "data" / "ab"):
        os.chown(path, SERVICE_UID, SERVICE_UID)
    os.chmod(tmp_path, 0o755)
    messages = tmp_path / "messages"

    def as_service_user() -> None:
        os.setgid(SERVICE_UID)
        os.setuid(SERVICE_UID)
        line = run_as.denied(str(pack), "read", root=str(repo)).one_line()
        fd = os.open(messages, os.O_WRONLY | os.O_CREAT, 0o644)
        os.write(fd, line.encode())
        os.close(fd)

    assert _in_child(as_service_user) == 0
    assert messages.read_text() == (
        f"cannot read {pack}: owned by root:root, mode 0600, and this command runs as nobody — run commands "
        f"as nobody (docs/INSTALL.md, \"Commands by hand on the server\"), or give the files back: "
        f"chown -R nobody: {repo}")
    assert stat.S_IMODE(pack.stat().st_mode) == 0o600


def _unreadable_for_the_service_user(open_dir: Path, name: str) -> Path:
    os.chmod(open_dir, 0o755)
    secret = open_dir / name
    secret.write_text("un secret\n")
    os.chmod(secret, 0o600)  # root's: the service user may not read it
    return secret


def _line_as_service_user(open_dir: Path, call) -> str:
    """The one-line error `call()` raises as uid 65534 (in a forked child)."""
    out = open_dir / "line"

    def body() -> None:
        os.setgid(SERVICE_UID)
        os.setuid(SERVICE_UID)
        try:
            call()
        except PermissionDenied as exc:
            with open(out, "w", encoding="utf-8") as handle:
                handle.write(exc.one_line())
            raise

    os.chown(open_dir, SERVICE_UID, SERVICE_UID)
    assert _in_child(body) == 3
    return out.read_text(encoding="utf-8")


def test_an_unreadable_smtp_password_file_names_owner_and_mode(open_dir: Path) -> None:
    from agent.alerts import AlertSettings, _password

    secret = _unreadable_for_the_service_user(open_dir, "smtp-password")
    line = _line_as_service_user(open_dir, lambda: _password(AlertSettings(smtp_password_file=str(secret))))
    assert line.startswith(f"cannot read the SMTP password file {secret}: owned by root:root, mode 0600, "
                           f"and this command runs as nobody")


def test_an_unreadable_systemd_passphrase_credential_names_owner_and_mode(open_dir: Path, monkeypatch) -> None:
    from agent import config as config_module

    credentials = open_dir / "credentials"
    credentials.mkdir(mode=0o755)
    secret = _unreadable_for_the_service_user(credentials, "passphrase")
    config = config_module.parse({"source": {"paths": ["/srv"]}, "repositories": {"main": {"url": "file:///r"}}},
                                 "/etc/backupctl/config.toml")
    monkeypatch.delenv("BACKUPCTL_PASSPHRASE", raising=False)
    monkeypatch.setattr(config_module, "_passphrase_from_environment", None)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    line = _line_as_service_user(open_dir, lambda: config_module.read_passphrase(config))
    assert line.startswith(f"cannot read the systemd credential {secret}: owned by root:root, mode 0600")

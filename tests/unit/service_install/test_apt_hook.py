"""The apt hook (agent/service_install/apt_hook.py): installed by install-service where apt is,
removed by --uninstall, the same text as contrib/apt/80backupctl, read by the real apt-config,
and its line never fails whatever the program does (run with the real sh, as apt runs it)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from agent.service_install import apt_hook, layout
from agent.service_install.installer import Installer, Options

from .test_installer import RecordingSystem

ROOT = Path(__file__).resolve().parents[3]
CONTRIB = ROOT / "contrib" / "apt" / "80backupctl"


@pytest.fixture()
def setup(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    config = tmp_path / "config.toml"
    config.write_text('[agent]\nstate_dir = "/var/lib/backupctl"\n[source]\npaths = ["/srv/cabinet"]\n'
                      '[repositories.main]\nurl = "file:///srv/backup/repo"\n')
    passphrase = tmp_path / "passphrase"
    passphrase.write_text("correct horse battery staple\n")
    return root, Options(config_file=str(config), passphrase_file=str(passphrase))


def test_the_install_puts_the_hook_where_apt_is_and_the_uninstall_removes_it(setup) -> None:
    root, options = setup
    (root / layout.APT_CONF_DIR.lstrip("/")).mkdir(parents=True)
    said: list[str] = []
    system = RecordingSystem()
    Installer(root, system, said.append).install(options)
    hook = root / layout.APT_HOOK.lstrip("/")
    assert hook.read_text() == apt_hook.render() == CONTRIB.read_text()
    assert hook.stat().st_mode & 0o777 == 0o644
    assert f"  wrote {layout.APT_HOOK}" in said
    # A second run leaves it as it is.
    again = Installer(root, system, said.append)
    again.install(options)
    assert again.changes == []
    # Rewritten when someone edited it.
    hook.write_text("DPkg::Pre-Invoke { \"false\"; };\n")
    Installer(root, system, said.append).install(options)
    assert hook.read_text() == apt_hook.render()
    said.clear()
    Installer(root, system, said.append).uninstall()
    assert not hook.exists() and f"  removed {layout.APT_HOOK}" in said
    assert (root / layout.APT_CONF_DIR.lstrip("/")).is_dir()  # apt's own folder stays


def test_without_apt_no_hook_is_installed(setup) -> None:
    root, options = setup
    Installer(root, RecordingSystem(), lambda _line: None).install(options)
    assert not (root / "etc" / "apt").exists()


def test_the_shipped_copy_is_what_the_install_writes() -> None:
    assert CONTRIB.read_text() == apt_hook.render()
    assert "/usr/local/bin/backupctl pre-installation" in CONTRIB.read_text()


@pytest.mark.skipif(shutil.which("apt-config") is None, reason="apt-config (Debian's apt) is not installed")
def test_apt_reads_one_pre_invoke_command_from_it(tmp_path) -> None:
    snippet = tmp_path / "80backupctl"
    snippet.write_text(apt_hook.render())
    dump = subprocess.run(["apt-config", "-c", str(snippet), "dump", "DPkg::Pre-Invoke"], capture_output=True,
                          text=True, check=True).stdout
    commands = [line for line in dump.splitlines() if line.startswith("DPkg::Pre-Invoke:: ")]
    ours = [line for line in commands if "pre-installation" in line]
    assert len(ours) == 1 and ours[0] == f'DPkg::Pre-Invoke:: "{_line()}";', dump


def _line() -> str:
    text = apt_hook.render()
    return text.split('DPkg::Pre-Invoke {\n  "', 1)[1].split('";\n};', 1)[0]


def _run_hook(program: Path) -> subprocess.CompletedProcess[str]:
    line = apt_hook.render(str(program)).split('DPkg::Pre-Invoke {\n  "', 1)[1].split('";\n};', 1)[0]
    return subprocess.run(["sh", "-c", line], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("body, said", [
    ("exit 0", ""),
    ("echo 'Failed to connect to bus' >&2; exit 1", "Failed to connect to bus\n"),  # systemd-run without systemd
    ("kill -9 $$", "Killed\n"),  # sh reports the signal
])
def test_the_hook_line_never_fails(tmp_path, body, said) -> None:
    program = tmp_path / "backupctl"
    program.write_text(f"#!/bin/sh\n{body}\n")
    program.chmod(0o755)
    done = _run_hook(program)
    assert done.returncode == 0, done
    if body == "exit 0":
        assert done.stderr == ""
    else:
        assert done.stderr == said + apt_hook.WARNING + "\n"
    program.unlink()  # the service uninstalled, the snippet left behind: nothing at all
    assert _run_hook(program).returncode == 0 and _run_hook(program).stderr == ""


def test_the_hook_reads_no_terminal(tmp_path) -> None:
    program = tmp_path / "backupctl"
    program.write_text("#!/bin/sh\nif [ -t 0 ]; then echo terminal; else echo none; fi\n")
    program.chmod(0o755)
    assert _run_hook(program).stdout == "none\n"


def test_the_hook_runs_the_command_from_the_root_folder(tmp_path) -> None:
    """apt's folder may be one the service's sandbox does not have (PrivateTmp=:
    `cd $(mktemp -d) && apt install ./x.deb`): the wrapper would fail to enter it."""
    program = tmp_path / "backupctl"
    program.write_text("#!/bin/sh\npwd\n")
    program.chmod(0o755)
    elsewhere = tmp_path / "apt-was-here"
    elsewhere.mkdir()
    line = apt_hook.render(str(program)).split('DPkg::Pre-Invoke {\n  "', 1)[1].split('";\n};', 1)[0]
    done = subprocess.run(["sh", "-c", line], capture_output=True, text=True, timeout=60, cwd=elsewhere)
    assert done.stdout == "/\n" and done.returncode == 0, done


def test_an_unquotable_program_is_refused() -> None:
    with pytest.raises(ValueError):
        apt_hook.render('/opt/back"upctl')


def test_the_times_the_documents_state_are_the_codes() -> None:
    from agent.cli import preinstall_cmd

    install = " ".join((ROOT / "docs" / "INSTALL.md").read_text().split())
    reference = (ROOT / "docs" / "REFERENCE.md").read_text()
    assert f"must answer within {preinstall_cmd.REACH_TIMEOUT_S} s" in install
    assert f"within {preinstall_cmd.DEFAULT_TIMEOUT_S // 60} minutes" in install
    assert f"(default {preinstall_cmd.DEFAULT_TIMEOUT_S} s;" in reference
    assert f"must answer within {preinstall_cmd.REACH_TIMEOUT_S} s" in reference
    # The hook's own limit only catches a hang past the command's limit and its stop.
    assert apt_hook.BACKSTOP_S > preinstall_cmd.DEFAULT_TIMEOUT_S + preinstall_cmd.STOP_GRACE_S + 30
    # systemd stops the transient unit itself, before the hook's timeout gives up on systemd-run
    assert preinstall_cmd.DEFAULT_TIMEOUT_S + preinstall_cmd.STOP_GRACE_S < apt_hook.RUNTIME_MAX_S < apt_hook.BACKSTOP_S
    assert f"past {apt_hook.RUNTIME_MAX_S} s" in install and f"gives up at {apt_hook.BACKSTOP_S} s" in install
    assert preinstall_cmd.BACKOFF.total_seconds() == 6 * 3600 and "none again for 6 hours" in install
    assert "none again for 6 hours" in reference

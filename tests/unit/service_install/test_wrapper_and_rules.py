"""The wrapper script (run here, with a systemd-run that prints what it was given), the
paths drop-in and the polkit rule, from their pure renderers."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from agent.config import parse
from agent.engine.source.hooks import HookSettings
from agent.errors import ConfigError
from agent.service_install import folders, layout, polkit, shipped, units, wrapper

FAKE_SYSTEMD_RUN = """#!/bin/sh
for a do printf '%s\\n' "$a"; done > "$ARGS_OUT"
exit 17
"""


def _wrapper(tmp_path: Path) -> Path:
    properties = units.service_properties(shipped.shipped_text(shipped.UNIT), units.paths_dropin(("/srv/backup",)),
                                          units.credentials_dropin(("passphrase", "s3-credentials")))
    script = tmp_path / "backupctl"
    script.write_text(wrapper.render(properties, media_mounts=()))
    script.chmod(0o755)
    (tmp_path / "bin").mkdir(exist_ok=True)
    fake = tmp_path / "bin" / "systemd-run"
    fake.write_text(FAKE_SYSTEMD_RUN)
    fake.chmod(0o755)
    return script


def _run(tmp_path: Path, *args: str) -> tuple[int, list[str]]:
    script = _wrapper(tmp_path)
    out = tmp_path / "args"
    env = {"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin", "ARGS_OUT": str(out)}
    done = subprocess.run([str(script), *args], env=env, stdin=subprocess.DEVNULL, capture_output=True, cwd=tmp_path)
    return done.returncode, out.read_text().splitlines()


@pytest.mark.skipif(os.geteuid() != 0, reason="the wrapper runs for root only (CI runs as root)")
def test_the_wrapper_runs_the_program_as_the_service_user_in_its_sandbox(tmp_path):
    code, argv = _run(tmp_path, "snapshots", "--json")
    assert code == 17  # systemd-run's exit status is the wrapper's
    # The caller's folder is entered once the capabilities apply (/root is 0700).
    assert argv[argv.index("--") + 1:] == ["/usr/bin/env", f"--chdir={tmp_path}", layout.PROGRAM, "--config",
                                           layout.CONFIG, "snapshots", "--json"]
    assert {"--wait", "--collect", "--quiet", "--pipe"} <= set(argv)
    properties = [argv[i + 1] for i, a in enumerate(argv) if a == "-p"]
    for wanted in ("User=backupctl", "ProtectSystem=strict", "AmbientCapabilities=CAP_DAC_READ_SEARCH",
                   "ReadWritePaths=-/srv/backup", "SystemCallFilter=~@privileged",
                   "LoadCredentialEncrypted=passphrase:/etc/credstore.encrypted/backupctl-passphrase"):
        assert wanted in properties, wanted
    unit = next(a for a in argv if a.startswith("--unit=")).removeprefix("--unit=")
    assert f"Environment=AWS_SHARED_CREDENTIALS_FILE=/run/credentials/{unit}/s3-credentials" in properties
    assert not any(p.startswith(("WatchdogSec", "Type=", "ExecStart")) for p in properties)


@pytest.mark.skipif(os.geteuid() != 0, reason="the wrapper runs for root only (CI runs as root)")
def test_restoring_commands_can_write_anywhere_with_owner_capabilities(tmp_path):
    for command in (["restore", "latest", "--target", "/srv/x"], ["export", "--tar", "x.tar"],
                    ["reports", "get", "1", "--output-dir", "d"], ["key", "export", "--paper", "f.html"]):
        _, argv = _run(tmp_path, *command)
        properties = [argv[i + 1] for i, a in enumerate(argv) if a == "-p"]
        assert "ProtectSystem=strict" not in properties and "PrivateTmp=true" not in properties, command
        assert "SystemCallFilter=~@privileged" not in properties  # chown(2) is in @privileged
        assert f"AmbientCapabilities={wrapper.WRITER_CAPABILITIES}" in properties
        assert "User=backupctl" in properties


@pytest.mark.skipif(os.geteuid() != 0, reason="the wrapper runs for root only (CI runs as root)")
def test_a_dollar_in_an_argument_reaches_the_program_unexpanded(tmp_path):
    # systemd expands $VAR in a transient command line; "$$" is its literal "$".
    _, argv = _run(tmp_path, "find", "$HOME/*.pdf")
    assert argv[-2:] == ["find", "$$HOME/*.pdf"]


def test_the_wrapper_carries_the_marker_and_is_valid_sh(tmp_path):
    text = _wrapper(tmp_path).read_text()
    assert text.splitlines()[1] == "# backupctl service wrapper"
    assert subprocess.run(["sh", "-n", str(tmp_path / "backupctl")]).returncode == 0


def test_the_paths_drop_in_follows_the_file_repositories(tmp_path):
    config = parse({"agent": {"state_dir": "/var/lib/backupctl", "report_dir": "/srv/reports"},
                    "source": {"paths": ["/srv/cabinet"]},
                    "repositories": {"main": {"url": "file:///mnt/backup/repo"},
                                     "nas": {"url": "file:///mnt/nas/backup dir"},
                                     "offsite": {"url": "s3://bucket/prefix", "endpoint": "https://s3.example"},
                                     "disques": {"url": "file:///media/backupctl", "media": ["A", "B"]}},
                    "retention": {"weekly": 4, "monthly": 12, "yearly": 20}}, "/etc/backupctl/config.toml")
    assert folders.writable_folders(config) == ("/media/backupctl", "/mnt/backup/repo", "/mnt/nas/backup dir",
                                                "/srv/reports")
    assert folders.media_mounts(config) == ("/media/backupctl",)
    text = units.paths_dropin(folders.writable_folders(config))
    assert 'ReadWritePaths="-/mnt/nas/backup dir"\n' in text and text.count("ReadWritePaths=") == 4


def test_a_folder_name_a_unit_file_cannot_carry_is_refused():
    for url in ("file:///srv/100%", "file:///srv/a\\b", 'file:///srv/"x"'):
        config = parse({"agent": {"state_dir": "/var/lib/backupctl"}, "source": {"paths": ["/home"]},
                        "repositories": {"main": {"url": url}},
                        "retention": {"weekly": 4, "monthly": 12, "yearly": 20}}, "c.toml")
        with pytest.raises(ConfigError, match="quote, backslash"):
            folders.writable_folders(config)


def test_a_repository_inside_the_sources_is_refused():
    config = parse({"agent": {"state_dir": "/var/lib/backupctl"}, "source": {"paths": ["/srv"]},
                    "repositories": {"main": {"url": "file:///srv/backup"}},
                    "retention": {"weekly": 4, "monthly": 12, "yearly": 20}}, "c.toml")
    with pytest.raises(ConfigError, match="inside the backed-up /srv"):
        folders.writable_folders(config)


def test_the_polkit_rule_allows_only_the_hooks_units_and_verbs():
    hooks = (HookSettings("logiciel", before=("/usr/bin/systemctl", "stop", "logiciel-cabinet"),
                          after=("systemctl", "--no-block", "start", "logiciel-cabinet")),
             HookSettings("agenda", before=("systemctl", "restart", "agenda.service", "mariadb")),
             HookSettings("other", before=("systemctl", "reload", "nginx"), after=("pg_dump", "x")))
    assert polkit.hook_units(hooks) == {"agenda.service": ("restart",), "logiciel-cabinet.service": ("start", "stop"),
                                        "mariadb.service": ("restart",)}
    rule = polkit.render(polkit.hook_units(hooks))
    assert rule is not None and '"logiciel-cabinet.service": [\n        "start",\n        "stop"\n    ]' in rule
    assert 'subject.user != "backupctl"' in rule and "nginx" not in rule
    assert polkit.render(polkit.hook_units(())) is None


@pytest.mark.skipif(os.geteuid() != 0, reason="the wrapper runs for root only (CI runs as root)")
def test_the_apt_hooks_command_runs_in_a_unit_systemd_stops_past_the_hooks_time(tmp_path):
    """The hook's `timeout` stops systemd-run only: the transient unit has its own limit."""
    from agent.service_install import apt_hook

    _, argv = _run(tmp_path, "pre-installation")
    properties = [argv[i + 1] for i, a in enumerate(argv) if a == "-p"]
    assert f"RuntimeMaxSec={apt_hook.RUNTIME_MAX_S}" in properties
    assert apt_hook.RUNTIME_MAX_S < apt_hook.BACKSTOP_S
    assert argv[argv.index("--") + 1:][-1] == "pre-installation"
    for other in (["snapshots"], ["backup", "pre-installation"]):
        _, argv = _run(tmp_path, *other)
        assert not any(a.startswith("RuntimeMaxSec") for a in argv), other

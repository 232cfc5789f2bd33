"""install-service applied to a temporary root with a recording System: what it writes,
that a second run changes nothing, what it refuses before writing anything, and what
--uninstall keeps. (The same, under a real systemd: tests/system/.)"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from agent.errors import ConfigError, UsageError
from agent.service_install import layout
from agent.service_install.installer import Installer, Options

CONFIG = """
[agent]
state_dir = "/var/lib/backupctl"
[source]
paths = ["/srv/cabinet"]
[repositories.main]
url = "file:///srv/backup/repo"
[repositories.disques]
url = "file:///media/backupctl"
media = ["DISQUE-A", "DISQUE-B"]
[retention]
weekly = 4
monthly = 12
yearly = 20
[[hooks]]
name = "logiciel"
before = ["systemctl", "stop", "logiciel-cabinet"]
after = ["systemctl", "start", "logiciel-cabinet"]
"""


class RecordingSystem:
    """Runs nothing: records the commands, plays systemctl's and systemd-creds' part."""

    def __init__(self) -> None:
        self.commands: list[tuple[str, ...]] = []
        self.state = {"enabled": False, "active": False}
        self.repositories: set[str] = set()

    def run(self, argv, *, input=None):
        argv = tuple(str(a) for a in argv)
        self.commands.append(argv)
        out, code = b"", 0
        if argv[:2] == ("systemd-creds", "encrypt"):
            Path(argv[-1]).write_bytes(b"sealed:" + input)
        elif argv[:2] == ("systemd-creds", "decrypt"):
            out = Path(argv[-2]).read_bytes().removeprefix(b"sealed:")
        elif argv[:2] == ("systemctl", "is-enabled"):
            out = b"enabled\n" if self.state["enabled"] else b"disabled\n"
        elif argv[:2] == ("systemctl", "is-active"):
            out = b"active\n" if self.state["active"] else b"inactive\n"
        elif argv[:2] == ("systemctl", "enable"):
            self.state["enabled"] = True
        elif argv[:2] == ("systemctl", "start"):
            self.state["active"] = True
        elif argv[0].endswith(layout.WRAPPER) and argv[1] == "init":
            code = 11 if argv[3] in self.repositories else 0
            self.repositories.add(argv[3])
        return subprocess.CompletedProcess(argv, code, out, b"")

    ids = (os.getuid(), os.getgid())

    def service_ids(self):
        return self.ids

    def named(self, *prefix: str) -> list[tuple[str, ...]]:
        return [c for c in self.commands if c[:len(prefix)] == prefix]


class Typist:
    def __init__(self, answers=None) -> None:
        self.shown: list[str] = []
        self.answers = answers

    def show(self, text: str) -> None:
        self.shown.append(text)

    def ask(self, prompt: str) -> str:
        if self.answers is not None:
            return self.answers.pop(0)
        return next(line.strip() for line in "".join(self.shown).splitlines() if line.startswith("    "))


@pytest.fixture()
def setup(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    config = tmp_path / "config.toml"
    config.write_text(CONFIG)
    passphrase = tmp_path / "passphrase"
    passphrase.write_text("correct horse battery staple\n")
    return root, config, passphrase


def _installer(root: Path, system: RecordingSystem, said: list[str], terminal=None) -> Installer:
    return Installer(root, system, said.append, terminal)


def test_first_install_writes_every_file_and_starts_the_service(setup):
    root, config, passphrase = setup
    system, said = RecordingSystem(), []
    _installer(root, system, said).install(Options(config_file=str(config), passphrase_file=str(passphrase)))
    for installed in (layout.SYSUSERS, layout.TMPFILES, layout.CONFIG, layout.UNIT, layout.PATHS_DROPIN,
                      layout.WRAPPER, layout.POLKIT_RULE, layout.CREDENTIAL_FILES["passphrase"]):
        assert (root / installed.lstrip("/")).is_file(), installed
    assert (root / "etc/sysusers.d").is_dir()  # absent on a bare Debian 12: created
    paths = (root / layout.PATHS_DROPIN.lstrip("/")).read_text()
    assert "ReadWritePaths=-/srv/backup/repo\n" in paths and "ReadWritePaths=-/media/backupctl\n" in paths
    repo = root / "srv/backup/repo"
    assert repo.is_dir() and (repo.stat().st_mode & 0o777) == 0o700
    assert (root / layout.CREDENTIAL_FILES["passphrase"].lstrip("/")).read_bytes() == \
        b"sealed:correct horse battery staple\n"
    assert os.stat(root / layout.CREDENTIAL_FILES["passphrase"].lstrip("/")).st_mode & 0o777 == 0o600
    assert system.named("systemd-creds", "encrypt")[0][2] == "--with-key=auto"
    assert system.named("systemctl", "daemon-reload") and system.named("systemctl", "enable")
    assert system.named("systemctl", "start")
    # init runs through the wrapper, in the service's sandbox; not on a set of disks.
    assert [c[1:] for c in system.commands if c[0].endswith(layout.WRAPPER)] == [("init", "--repo", "main")]
    assert any("destroy" in line and str(passphrase) in line for line in said)
    # The unit as shipped runs the program, never the wrapper.
    assert "ExecStart=/opt/backupctl/bin/backupctl --config /etc/backupctl/config.toml daemon" in \
        (root / layout.UNIT.lstrip("/")).read_text()


def test_a_second_run_changes_nothing_and_says_so(setup):
    root, config, passphrase = setup
    system, said = RecordingSystem(), []
    _installer(root, system, said).install(Options(config_file=str(config), passphrase_file=str(passphrase)))
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    system.commands.clear()
    said.clear()
    installer = _installer(root, system, said)
    installer.install(Options(config_file=str(config), passphrase_file=str(passphrase)))
    assert installer.changes == []
    assert said[-1].endswith("nothing to change; everything was already installed.")
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before
    for verb in ("daemon-reload", "restart", "reload", "start", "enable"):
        assert not system.named("systemctl", verb), verb
    assert not system.named("systemd-creds", "encrypt")


def test_a_changed_configuration_rewrites_the_drop_in_and_restarts(setup):
    root, config, passphrase = setup
    system, said = RecordingSystem(), []
    _installer(root, system, said).install(Options(config_file=str(config), passphrase_file=str(passphrase)))
    config.write_text(CONFIG.replace("file:///srv/backup/repo", "file:///srv/other/repo"))
    system.commands.clear()
    _installer(root, system, said).install(Options(config_file=str(config)))
    assert "ReadWritePaths=-/srv/other/repo\n" in (root / layout.PATHS_DROPIN.lstrip("/")).read_text()
    assert (root / "srv/other/repo").is_dir()
    assert system.named("systemctl", "daemon-reload") and system.named("systemctl", "restart")
    assert (root / (layout.CONFIG + ".previous").lstrip("/")).read_text() == CONFIG


def test_no_terminal_and_no_passphrase_file_is_refused_before_anything_is_written(setup):
    root, config, _ = setup
    system = RecordingSystem()
    with pytest.raises(UsageError) as refused:
        _installer(root, system, []).install(Options(config_file=str(config)))
    assert refused.value.exit_code == 2 and "no terminal" in str(refused.value)
    assert list(root.iterdir()) == [] and system.commands == []


def test_on_a_terminal_the_passphrase_is_shown_for_the_paper_and_typed_back(setup):
    root, config, _ = setup
    system, said, typist = RecordingSystem(), [], Typist()
    _installer(root, system, said, typist).install(Options(config_file=str(config)))
    shown = "".join(typist.shown)
    assert "paper sheet" in shown and "safe" in shown
    secret = next(line.strip() for line in shown.splitlines() if line.startswith("    "))
    assert len(secret) == 44
    stored = (root / layout.CREDENTIAL_FILES["passphrase"].lstrip("/")).read_bytes()
    assert stored == b"sealed:" + secret.encode() + b"\n"
    assert secret not in "".join(said)  # only on the terminal, never in the log of what was done


def test_a_passphrase_not_typed_back_is_not_stored(setup):
    root, config, _ = setup
    system = RecordingSystem()
    with pytest.raises(UsageError):
        _installer(root, system, [], Typist(["no", "still no", "nope"])).install(Options(config_file=str(config)))
    assert not (root / layout.CREDENTIAL_FILES["passphrase"].lstrip("/")).exists()
    assert not system.named("systemctl", "start")


def test_an_existing_passphrase_credential_is_never_replaced(setup):
    root, config, passphrase = setup
    system = RecordingSystem()
    _installer(root, system, []).install(Options(config_file=str(config), passphrase_file=str(passphrase)))
    other = passphrase.with_name("other")
    other.write_text("another passphrase entirely\n")
    _installer(root, system, []).install(Options(config_file=str(config), passphrase_file=str(other)))
    assert b"correct horse" in (root / layout.CREDENTIAL_FILES["passphrase"].lstrip("/")).read_bytes()


def test_s3_and_smtp_secrets_become_credentials_with_their_drop_in(setup, tmp_path):
    root, config, passphrase = setup
    s3 = tmp_path / "s3"
    s3.write_text("[default]\naws_access_key_id = AKIA1\naws_secret_access_key = s3cr%t\n")
    smtp = tmp_path / "smtp"
    smtp.write_text("mail-password\n")
    system = RecordingSystem()
    _installer(root, system, []).install(Options(config_file=str(config), passphrase_file=str(passphrase),
                                                 s3_credentials_file=str(s3), smtp_password_file=str(smtp)))
    dropin = (root / layout.CREDENTIALS_DROPIN.lstrip("/")).read_text()
    assert "LoadCredentialEncrypted=s3-credentials:/etc/credstore.encrypted/backupctl-s3-credentials\n" in dropin
    assert "Environment=AWS_SHARED_CREDENTIALS_FILE=%d/s3-credentials\n" in dropin
    assert "LoadCredentialEncrypted=smtp-password:/etc/credstore.encrypted/backupctl-smtp-password\n" in dropin
    assert [c[3] for c in system.named("systemd-creds", "encrypt")] == \
        ["--name=passphrase", "--name=s3-credentials", "--name=smtp-password"]
    wrapper_text = (root / layout.WRAPPER.lstrip("/")).read_text()
    assert "-p Environment=AWS_SHARED_CREDENTIALS_FILE=\"$cred_dir\"/s3-credentials" in wrapper_text
    # The same keys again: nothing re-encrypted.
    system.commands.clear()
    _installer(root, system, []).install(Options(config_file=str(config), s3_credentials_file=str(s3),
                                                 smtp_password_file=str(smtp)))
    assert not system.named("systemd-creds", "encrypt")


def test_bad_s3_credentials_are_refused_without_quoting_them(setup, tmp_path):
    root, config, passphrase = setup
    s3 = tmp_path / "s3"
    s3.write_text("aws_secret_access_key = VERYSECRET\n")
    with pytest.raises(UsageError) as refused:
        _installer(root, RecordingSystem(), []).install(Options(
            config_file=str(config), passphrase_file=str(passphrase), s3_credentials_file=str(s3)))
    assert "VERYSECRET" not in refused.value.one_line()
    assert list(root.iterdir()) == []


def test_a_repository_in_a_system_folder_is_refused(setup):
    root, config, passphrase = setup
    config.write_text(CONFIG.replace("file:///srv/backup/repo", "file:///etc"))
    with pytest.raises(ConfigError, match="system folder"):
        _installer(root, RecordingSystem(), []).install(Options(config_file=str(config),
                                                                passphrase_file=str(passphrase)))
    assert list(root.iterdir()) == []


def test_the_example_configuration_is_installed_but_not_started(setup):
    root, _, passphrase = setup
    system, said = RecordingSystem(), []
    _installer(root, system, said).install(Options(passphrase_file=str(passphrase)))
    assert (root / layout.CONFIG.lstrip("/")).read_text().startswith("# backupctl configuration")
    assert not system.named("systemctl", "start") and "edit it" in said[-1]
    assert not (root / "mnt/backup/repo").exists()  # the example's folder, not made before the edit


def test_uninstall_removes_the_service_and_keeps_the_data(setup):
    root, config, passphrase = setup
    system, said = RecordingSystem(), []
    _installer(root, system, said).install(Options(config_file=str(config), passphrase_file=str(passphrase)))
    said.clear()
    _installer(root, system, said).uninstall()
    for removed in (layout.UNIT, layout.PATHS_DROPIN, layout.WRAPPER, layout.POLKIT_RULE, layout.DROPIN_DIR):
        assert not (root / removed.lstrip("/")).exists(), removed
    for kept in (layout.CONFIG, layout.CREDENTIAL_FILES["passphrase"], "/srv/backup/repo", layout.SYSUSERS):
        assert (root / kept.lstrip("/")).exists(), kept
    assert system.named("systemctl", "disable", "--now")
    assert "Kept" in said[-1] and "/var/lib/backupctl" in said[-1]


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root (CI runs as root)")
def test_a_repository_made_by_root_is_given_to_the_service_user(setup):
    root, config, passphrase = setup
    repo = root / "srv/backup/repo"
    (repo / "data").mkdir(parents=True)
    (repo / "data" / "pack").write_bytes(b"x")
    (repo / "link").symlink_to("/etc/hostname")
    system = RecordingSystem()
    system.ids = (65534, 65534)
    _installer(root, system, []).install(Options(config_file=str(config), passphrase_file=str(passphrase)))
    for path in (repo, repo / "data", repo / "data" / "pack"):
        assert path.stat().st_uid == 65534, path
    assert repo.joinpath("link").lstat().st_uid == 65534 and os.stat("/etc/hostname").st_uid == 0

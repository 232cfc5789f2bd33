"""[metrics] textfile_dir and the unit's ReadWritePaths=: never node_exporter's folder (root's
collectors write there with `sponge`, which follows a symbolic link the service user could
plant), never a system folder, never an existing folder the service user does not own alone."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest

from agent import config as config_module
from agent.errors import InstallError
from agent.service_install import folders, layout
from agent.service_install.installer import Options

from .test_installer import CONFIG, RecordingSystem, _installer

UID = os.getuid()


def _config(textfile_dir: str):
    text = CONFIG + f'[metrics]\ntextfile_dir = "{textfile_dir}"\n'
    return config_module.parse(tomllib.loads(text), "/etc/backupctl/config.toml")


@pytest.mark.parametrize("folder", ["/var/lib/prometheus/node-exporter", "/var/lib/prometheus", "/etc",
                                    "/etc/backupctl/metrics", "/usr/local/metrics", "/root/metrics",
                                    "/boot/metrics", "/var/lib", "/tmp/metrics", "/var/lib/backupctl/metrics"])
def test_system_folders_and_node_exporters_own_are_refused(tmp_path, folder):
    with pytest.raises(InstallError) as caught:
        folders.shared_folders(_config(folder), root=str(tmp_path), service_uid=UID)
    assert "textfile_dir" in caught.value.one_line() and "\n" not in caught.value.one_line()


def test_a_folder_not_there_yet_is_accepted(tmp_path):
    assert folders.shared_folders(_config("/var/lib/backupctl-metrics"), root=str(tmp_path),
                                  service_uid=None) == ("/var/lib/backupctl-metrics",)


@pytest.mark.parametrize("mode,owner,says", [(0o775, UID, "writable by its group or others"),
                                             (0o757, UID, "writable by its group or others"),
                                             (0o755, UID + 1, "not by the service user"),
                                             (0o755, None, "not by the service user")])
def test_an_existing_folder_must_be_the_service_users_alone(tmp_path, mode, owner, says):
    folder = tmp_path / "srv" / "metrics"
    folder.mkdir(parents=True)
    folder.chmod(mode)
    with pytest.raises(InstallError, match=says):
        folders.shared_folders(_config("/srv/metrics"), root=str(tmp_path), service_uid=owner)
    folder.chmod(0o755)
    assert folders.shared_folders(_config("/srv/metrics"), root=str(tmp_path), service_uid=UID) == ("/srv/metrics",)


def test_a_symbolic_link_is_refused(tmp_path):
    (tmp_path / "srv").mkdir()
    (tmp_path / "elsewhere").mkdir(mode=0o755)
    (tmp_path / "srv" / "metrics").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(InstallError, match="symbolic link"):
        folders.shared_folders(_config("/srv/metrics"), root=str(tmp_path), service_uid=UID)
    (tmp_path / "srv2").symlink_to(tmp_path / "srv")
    with pytest.raises(InstallError, match="symbolic link"):
        folders.shared_folders(_config("/srv2/metrics/x"), root=str(tmp_path), service_uid=UID)


def _install(root: Path, config: Path, passphrase: Path) -> list[str]:
    said: list[str] = []
    _installer(root, RecordingSystem(), said).install(Options(config_file=str(config),
                                                              passphrase_file=str(passphrase)))
    return said


@pytest.fixture()
def setup(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    passphrase = tmp_path / "passphrase"
    passphrase.write_text("correct horse battery staple\n")
    return root, tmp_path / "config.toml", passphrase


def test_the_install_creates_the_folder_0755_and_lists_it(setup):
    root, config, passphrase = setup
    config.write_text(CONFIG + '[metrics]\ntextfile_dir = "/var/lib/backupctl-metrics"\n')
    _install(root, config, passphrase)
    made = root / "var/lib/backupctl-metrics"
    assert made.is_dir() and (made.stat().st_mode & 0o777) == 0o755 and made.stat().st_uid == UID
    assert "ReadWritePaths=-/var/lib/backupctl-metrics\n" in (root / layout.PATHS_DROPIN.lstrip("/")).read_text()


def test_node_exporters_folder_is_refused_before_anything_is_written(setup):
    root, config, passphrase = setup
    config.write_text(CONFIG + '[metrics]\ntextfile_dir = "/var/lib/prometheus/node-exporter"\n')
    with pytest.raises(InstallError, match="node_exporter"):
        _install(root, config, passphrase)
    assert list(root.iterdir()) == []

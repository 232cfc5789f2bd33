"""A backup the ransomware alarm could not judge (its previous snapshot unreadable) is saved,
and `backupctl backup` says so in a warning line, not only in `--json`'s `alarm.skipped`."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from agent.cli import backup_cmd
from agent.engine import backup
from agent.errors import IntegrityError
from agent.repo.repository import Repository
from agent.storage.local import LocalStorage
from tests.support.repos import FAST

PASSPHRASE = "phrase de passe du test de l'alarme"


def test_a_backup_the_alarm_could_not_judge_says_so(tmp_path: Path, monkeypatch):
    Repository.init(LocalStorage(str(tmp_path / "repo")), PASSPHRASE.encode(), cipher="xchacha20-poly1305",
                    compression_level=1, kdf_params=FAST)
    source = tmp_path / "src"
    source.mkdir()
    (source / "lettre.txt").write_text("Cher confrère " * 400)
    config = tmp_path / "config.toml"
    config.write_text(f'[agent]\nstate_dir = "{tmp_path / "state"}"\n[source]\npaths = ["{source}"]\n'
                      f'[repositories.main]\nurl = "file://{tmp_path / "repo"}"\n', encoding="utf-8")

    def backup_now():
        return CliRunner().invoke(backup_cmd.command, [], obj={"config_file": str(config)},
                                  env={"BACKUPCTL_PASSPHRASE": PASSPHRASE})

    assert backup_now().exit_code == 0

    def damaged(*_args: object) -> None:
        raise IntegrityError("tree 0a0b: damaged")

    monkeypatch.setattr(backup, "compare_trees", damaged)
    (source / "lettre.txt").write_text("Cher confrère, suite " * 400)
    result = backup_now()
    assert result.exit_code == 0, result.output
    assert "warning: the ransomware alarm did not judge this backup: the previous snapshot could not be " \
           "compared: tree 0a0b: damaged" in result.output

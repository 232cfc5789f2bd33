"""The repository's inventory for the metrics (agent/engine/inventory.py) is noted by
agent/cli/opening.with_repository after the commands of INVENTORY_AFTER: docs/REFERENCE.md,
"Metrics": after a backup (a partial or suspect one too, which ends by ctx.exit), prune,
check, repair and restore-test; never after a command that failed, nor after a listing."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from agent.cli import prune_cmd
from agent.cli.opening import INVENTORY_AFTER, Opened, with_repository
from agent.engine.backup import BackupEngine, BackupOptions
from agent.engine.inventory import INVENTORY_RECORD
from agent.repo.repository import Repository
from agent.state.records import Records
from agent.storage.local import LocalStorage
from tests.support.locked import run_locked
from tests.support.repos import FAST

PASSPHRASE = "phrase de passe du test d'inventaire"


@pytest.fixture
def world(tmp_path: Path) -> dict:
    Repository.init(LocalStorage(str(tmp_path / "repo")), PASSPHRASE.encode(), cipher="xchacha20-poly1305",
                    compression_level=1, kdf_params=FAST)
    config = tmp_path / "config.toml"
    config.write_text(
        f'[agent]\nstate_dir = "{tmp_path / "state"}"\n[source]\npaths = ["{tmp_path / "src"}"]\n'
        f'[repositories.main]\nurl = "file://{tmp_path / "repo"}"\n'
        f'[retention]\nweekly = 4\nmonthly = 12\nyearly = 1\ntimezone = "UTC"\n', encoding="utf-8")
    return {"config": str(config), "repo": tmp_path / "repo", "state": str(tmp_path / "state"),
            "src": tmp_path / "src"}


def _invoke(world: dict, command: click.Command, *args: str):
    return CliRunner().invoke(command, list(args), obj={"config_file": world["config"]},
                              env={"BACKUPCTL_PASSPHRASE": PASSPHRASE})


def _inventory(world: dict) -> dict | None:
    event = Records(world["state"], "main").last(INVENTORY_RECORD)
    return event.detail if event is not None else None


def _command(name: str, *, exit_code: int | None = None, fail: bool = False) -> click.Command:
    @click.command(name)
    @click.option("--repo", "repo_name")
    @click.pass_context
    @with_repository(lock="shared")
    def command(ctx: click.Context, repo_name, *, opened: Opened) -> None:
        if fail:
            raise click.UsageError("refused")
        if exit_code is not None:
            ctx.exit(exit_code)
    return command


def _two_snapshots(world: dict) -> None:
    repo = Repository.open(LocalStorage(str(world["repo"])), PASSPHRASE.encode())
    world["src"].mkdir(exist_ok=True)
    for day, text in ((1, b"lundi"), (2, b"mardi")):
        (world["src"] / "lettre.txt").write_bytes(text)
        run_locked(BackupEngine(repo, BackupOptions(paths=[str(world["src"])],
                                                    time=dt.datetime(2026, 11, day, 9, tzinfo=dt.timezone.utc))))


@pytest.mark.parametrize("code", [3, 5])
def test_a_backup_that_ends_by_its_exit_code_notes_the_inventory(world, code):
    result = _invoke(world, _command("backup", exit_code=code))
    assert result.exit_code == code, result.output
    assert _inventory(world) is not None


def test_a_command_that_failed_or_a_listing_notes_nothing(world):
    assert _invoke(world, _command("backup", fail=True)).exit_code == 2
    assert _invoke(world, _command("snapshots")).exit_code == 0
    assert _inventory(world) is None
    assert "snapshots" not in INVENTORY_AFTER


def test_prune_notes_what_it_left(world):
    _two_snapshots(world)
    result = _invoke(world, prune_cmd.command, "--json")
    assert result.exit_code == 0, result.output
    kept = [d for d in json.loads(result.output)["snapshots"] if d["action"] == "keep"]
    inventory = _inventory(world)
    assert inventory is not None and len(inventory["snapshots"]) == len(kept) == 1

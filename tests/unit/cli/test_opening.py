"""agent/cli/opening.py: a command opens its repository one way, holds the lock it
declares while its body runs, and gives it back however the body ends; the engines
assert the lock they need instead of taking one.

A real file:// repository (and a rotated disk: a labelled folder) opened through click,
as the commands are; the concurrent locks come from a second Repository object on the
same storage, as a second process would take them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from agent.cli import browse_cmd, prune_cmd
from agent.cli.opening import Opened, with_repository
from agent.crypto.kdf import KdfParams
from agent.engine import browse
from agent.engine.backup import BackupEngine, BackupOptions
from agent.engine.check import CheckEngine
from agent.engine.prune import PruneEngine
from agent.engine.repair import RepairEngine
from agent.engine.retention import RetentionPolicy
from agent.errors import MediumError, RepositoryLocked
from agent.repo.lock import RepositoryLock, list_locks, require_lock
from agent.repo.repository import Repository
from agent.state import media
from agent.storage.local import LocalStorage

PASSPHRASE = "phrase de passe du test d'ouverture"
FAST = KdfParams(memory_kib=8192, iterations=1)
DISKS = ["DISQUE-A", "DISQUE-B"]


def _new_repository(path: Path) -> None:
    Repository.init(LocalStorage(str(path)), PASSPHRASE.encode(), cipher="xchacha20-poly1305",
                    compression_level=3, kdf_params=FAST)


@pytest.fixture
def world(tmp_path: Path) -> dict:
    """A configuration with a file:// repository `main` and a set of disks `usb`."""
    _new_repository(tmp_path / "repo")
    mount = tmp_path / "mnt"
    mount.mkdir()
    config = tmp_path / "config.toml"
    config.write_text(
        f'[agent]\nstate_dir = "{tmp_path / "state"}"\n[source]\npaths = ["{tmp_path}"]\n'
        f'[repositories.main]\nurl = "file://{tmp_path / "repo"}"\n'
        f'[repositories.usb]\nurl = "file://{mount}"\nmedia = {json.dumps(DISKS)}\n', encoding="utf-8")
    return {"config": str(config), "repo": tmp_path / "repo", "mount": mount}


def _invoke(world: dict, command: click.Command, *args: str):
    return CliRunner().invoke(command, list(args), obj={"config_file": world["config"]},
                              env={"BACKUPCTL_PASSPHRASE": PASSPHRASE})


def _second_process(world: dict) -> Repository:
    """The same repository opened again: its locks are another holder's."""
    return Repository.open(LocalStorage(str(world["repo"])), PASSPHRASE.encode())


def _probe(seen: list, *, lock, fail: BaseException | None = None) -> click.Command:
    """A command that notes the locks in the repository while its body runs."""
    @click.command("probe")
    @click.option("--repo", "repo_name")
    @click.pass_context
    @with_repository(lock=lock)
    def probe(ctx: click.Context, repo_name, *, opened: Opened) -> None:
        seen.append([(held.operation, held.exclusive) for held in list_locks(opened.repo)])
        seen.append(opened)
        if fail is not None:
            raise fail
    return probe


@pytest.mark.parametrize("kind", ["shared", "exclusive"])
def test_the_declared_lock_is_held_while_the_command_runs_and_released_after(world, kind) -> None:
    seen: list = []
    result = _invoke(world, _probe(seen, lock=kind))
    assert result.exit_code == 0, result.output
    assert seen[0] == [("probe", kind == "exclusive")]
    assert list_locks(_second_process(world)) == []
    with pytest.raises(AssertionError):  # nor is it noted as held any longer
        require_lock(seen[1].repo, "check")


@pytest.mark.parametrize("failure", [KeyboardInterrupt(), RepositoryLocked("a failing command")])
def test_the_lock_is_released_when_the_command_fails(world, failure) -> None:
    seen: list = []
    result = _invoke(world, _probe(seen, lock="exclusive", fail=failure))
    assert result.exit_code != 0
    assert seen[0] == [("probe", True)]
    assert list_locks(_second_process(world)) == []
    RepositoryLock(_second_process(world), "prune", exclusive=True).acquire().release()  # free again


def test_no_lock_declared_none_taken(world) -> None:
    seen: list = []
    assert _invoke(world, _probe(seen, lock=None)).exit_code == 0
    assert seen[0] == []


def test_a_rotated_disk_is_opened_through_its_label(world) -> None:
    media.write_label(str(world["mount"]), "DISQUE-B", "usb")
    _new_repository(world["mount"] / media.REPOSITORY_DIR)
    seen: list = []
    result = _invoke(world, _probe(seen, lock="shared"), "--repo", "usb")
    assert result.exit_code == 0, result.output
    opened = seen[1]
    assert opened.medium == "DISQUE-B" and opened.settings.name == "usb"
    assert opened.repo.storage.describe() == LocalStorage(str(world["mount"] / media.REPOSITORY_DIR)).describe()


def test_the_wrong_disk_is_refused_before_anything_is_opened(world) -> None:
    media.write_label(str(world["mount"]), "DISQUE-Z", "usb")  # not one of the set's
    _new_repository(world["mount"] / media.REPOSITORY_DIR)
    seen: list = []
    result = _invoke(world, _probe(seen, lock="shared"), "--repo", "usb")
    assert isinstance(result.exception, MediumError), result.output
    assert result.exception.exit_code == 19 and "DISQUE-Z" in str(result.exception)
    assert seen == []


@pytest.mark.parametrize("command, args, reader", [
    (browse_cmd.ls, ["latest"], "find_snapshot"),
    (browse_cmd.dump, ["latest", "/lettre.odt"], "find_snapshot"),
    (browse_cmd.find, ["lettre*"], "browse.find"),
])
def test_ls_find_and_dump_read_under_a_shared_lock(world, monkeypatch, command, args, reader) -> None:
    """While they read, a prune (an exclusive lock) is refused; once they end, it is not."""
    refused: list = []

    def read(*_args, **_kwargs):
        with pytest.raises(RepositoryLocked, match=f"{command.name} .shared lock."):
            RepositoryLock(_second_process(world), "prune", exclusive=True).acquire()
        refused.append(True)
        raise click.exceptions.Exit(0)

    if reader == "find_snapshot":
        monkeypatch.setattr(browse_cmd, "find_snapshot", read)
    else:
        monkeypatch.setattr(browse, "find", read)
    result = _invoke(world, command, *args)
    assert result.exit_code == 0, result.output
    assert refused == [True]
    RepositoryLock(_second_process(world), "prune", exclusive=True).acquire().release()


@pytest.mark.parametrize("engine, needs", [
    (lambda repo: BackupEngine(repo, BackupOptions(paths=["/nonexistent"])), "a lock"),
    (lambda repo: CheckEngine(repo), "a lock"),
    (lambda repo: PruneEngine(repo, RetentionPolicy()), "an exclusive lock"),
    (lambda repo: PruneEngine(repo, RetentionPolicy(), dry_run=True), "a lock"),
    (lambda repo: RepairEngine(repo), "an exclusive lock"),
])
def test_an_engine_run_without_the_lock_it_needs_fails_loudly(world, engine, needs) -> None:
    repo = _second_process(world)
    with pytest.raises(AssertionError, match=f"needs {needs}"):
        engine(repo).run()
    if needs == "an exclusive lock":
        with RepositoryLock(repo, "backup"), pytest.raises(AssertionError, match="needs an exclusive lock"):
            engine(repo).run()  # a shared lock is not enough


def test_prunes_check_runs_under_prunes_exclusive_lock(world, monkeypatch) -> None:
    """`prune` takes its exclusive lock when it opens the repository, and the check that
    guards it runs under that lock, taking none of its own."""
    during_check: list = []
    run = CheckEngine.run

    def noting(self):
        during_check.append([(held.operation, held.exclusive) for held in list_locks(self.repo)])
        return run(self)

    monkeypatch.setattr(CheckEngine, "run", noting)
    result = _invoke(world, prune_cmd.command, "--json")
    assert result.exit_code == 0, result.output
    assert during_check == [[("prune", True)]]
    assert list_locks(_second_process(world)) == []


def _lock_table() -> dict[str, list[str]]:
    """docs/REFERENCE.md's table of locks: lock -> the commands named in its row."""
    text = (Path(__file__).resolve().parents[3] / "docs" / "REFERENCE.md").read_text(encoding="utf-8")
    rows = {}
    for line in text[text.index("| Lock | Commands |"):].splitlines()[2:]:
        if not line.startswith("|"):
            break
        lock, commands = line.strip("|").split("|")
        rows[lock.strip()] = re.findall(r"`([^`]+)`", commands)
    return rows


def _declared(command: click.Command, **params) -> object:
    lock = command.callback.declared_lock  # type: ignore[union-attr]
    return lock(params) if callable(lock) else lock


def test_the_locks_per_command_in_the_reference_are_the_ones_declared() -> None:
    from agent.cli import backup_cmd, check_cmd, diff_cmd, repair_cmd, reports_cmd, snapshots_cmd

    declared = {
        "prune": _declared(prune_cmd.command, dry_run=False),
        "prune --dry-run": _declared(prune_cmd.command, dry_run=True),
        "repair": _declared(repair_cmd.command),
        "backup": _declared(backup_cmd.command),
        "check": _declared(check_cmd.command),
        "ls": _declared(browse_cmd.ls), "find": _declared(browse_cmd.find), "dump": _declared(browse_cmd.dump),
        "diff": _declared(diff_cmd.command),
        "snapshots": _declared(snapshots_cmd.command),
        "reports": {_declared(sub) for sub in reports_cmd.command.commands.values()}.pop(),
    }
    table = _lock_table()
    for lock, expected in (("exclusive", {"exclusive"}), ("shared", {"shared", "shared-writer"}), ("none", {None})):
        for name in table[lock]:
            if name in declared:
                assert declared[name] in expected, f"{name}: {declared[name]} declared, {lock} in the reference"
    assert set(declared) <= {name for names in table.values() for name in names}


def test_a_backup_needs_its_lock_written_in_the_repository(world) -> None:
    """A reading may go on without a lock the storage cannot take; a backup may not: it
    writes, and its lock's id tells its packs from another backup's."""
    from agent.repo import lock as lock_module

    repo = _second_process(world)
    lock_module._note_held(repo, lock_module.UNWRITTEN)  # as shared_lock_for_reading notes it
    try:
        assert require_lock(repo, "check") is None  # enough to read
        with pytest.raises(AssertionError, match="backup writes"):
            BackupEngine(repo, BackupOptions(paths=["/nonexistent"])).run()
    finally:
        lock_module._note_released(repo, lock_module.UNWRITTEN)

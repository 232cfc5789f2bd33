"""Storing the rescue kit from the commands that write a repository (agent/repo/rescue_kit.py).

`init`, `backup`, `media init`, `copy --to` and `key export` call `store_kit` once their own
work is done: the kit is stored when this version's is missing (one existence check
otherwise), the audit trail records it, and a machine with no kit installed (a developer
checkout) is told once per run what to do. Nothing here fails the command: the backup
is saved by then, and a kit not stored is a warning, never an error.
"""

from __future__ import annotations

import click

from agent import clock
from agent.cli.common import audit
from agent.config import Config
from agent.state.records import Records
from agent.errors import IntegrityError, PermissionDenied, StateDirError, StorageError
from agent.repo import rescue_kit
from agent.repo.repository import Repository

_warned = False  # the "no kit installed" line is said once per run, however many repositories


def store_kit(config: Config, repo: Repository, repository: str, *,
              as_json: bool) -> dict[str, object]:
    """Store the kit in `repo` if missing; the outcome as JSON (for the command's --json)."""
    global _warned
    try:
        outcome = rescue_kit.ensure_kit(repo)
    except (StorageError, IntegrityError) as exc:
        if not as_json:
            click.echo(f"backupctl: warning: the rescue kit was not stored in {repository}: {exc}; "
                       f"the next backup tries again", err=True)
        return {"state": "failed", "problem": str(exc)}
    try:
        Records(config.agent.state_dir, repository).note(
            "rescue_kit", clock.now(), state=outcome.state, version=outcome.version,
            in_repository=outcome.state in (rescue_kit.STORED, rescue_kit.PRESENT))
    except (StateDirError, PermissionDenied) as exc:
        # Only `status`'s "kit missing" warning reads this note; the command's own work is
        # done, and its own state writes say what is wrong with the state directory.
        if not as_json:
            click.echo(f"backupctl: warning: the rescue kit's state was not noted: {exc}", err=True)
    if outcome.state == rescue_kit.STORED and outcome.record is not None:
        audit(config, "rescue_kit_stored", repository=repository, kit=outcome.record.file,
              sha256=outcome.record.sha256, size=outcome.record.size)
        if not as_json:
            click.echo(f"Rescue kit {outcome.record.file} stored in {repository} "
                       f"(SHA-256 {outcome.record.sha256})")
    warning = outcome.warning()
    if warning is not None and not _warned and not as_json:
        _warned = True
        click.echo(f"backupctl: warning: {warning}", err=True)
    return outcome.as_dict()

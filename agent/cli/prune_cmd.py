"""`backupctl prune`: forget snapshots per the [retention] policy and free their data."""

from __future__ import annotations


import click

from agent import timefmt
from agent.cli.common import (audit, human_bytes, json_option, ledger_of, print_json,
                              repo_option)
from agent.cli.opening import Opened, with_repository
from agent.cli.progress import for_terminal
from agent.config import Config
from agent.engine.lock_dates import LockDateCache
from agent.engine.prune import PruneEngine
from agent.state.alarm_state import acknowledged
from agent.state.records import Records
from agent.errors import IntegrityError
from agent.repo.repository import Repository
from agent.state.layout import StateLayout


@click.command("prune")
@click.option("--dry-run", is_flag=True, help="Show what would be forgotten and freed; change nothing.")
@repo_option
@json_option
@click.pass_context
# Exclusive: nothing else runs while packs are deleted. A dry run reads only: a shared lock,
# none when the storage cannot take one (it works on a read-only repository); it warns of a
# skewed server clock, where a prune refuses instead (agent/engine/prune.py).
@with_repository(lock=lambda params: "shared" if params["dry_run"] else "exclusive",
                 warn_skew=lambda params: params["dry_run"])
def command(ctx: click.Context, dry_run: bool, repo_name: str | None, as_json: bool, *, opened: Opened) -> None:
    """Apply the retention policy: keep the snapshots its calendar windows keep, forget
    the others, then delete the data no kept snapshot uses."""
    config, repo = opened.config, opened.repo
    if not dry_run:
        _refuse_on_known_damage(config, repo, repo_name)
    cache = LockDateCache(StateLayout(config.agent.state_dir).lock_dates(repo.config.repository_id))
    report = PruneEngine(repo, config.retention, dry_run=dry_run,
                         progress=for_terminal(as_json, storage=repo.storage),
                         lock_cache=cache, ledger=ledger_of(config, repo),
                         acknowledged=acknowledged(Records(config.agent.state_dir, config.repository(repo_name).name)),
                         alarm_lock_days=config.alarm.lock_days).run()
    if not dry_run:
        audit(config, "prune", repository=config.repository(repo_name).name,
              # Every decision is on a snapshot read from the repository: each has its id.
              forgotten=[d.snapshot_id.hex() for d in report.decisions if not d.keep and d.snapshot_id is not None],
              packs_deleted=report.packs_deleted, bytes_freed=report.bytes_freed)
    if as_json:
        print_json(report.as_dict())
        return
    for decision in sorted(report.decisions, key=lambda d: d.time):
        short = decision.snapshot_id.hex()[:8] if decision.snapshot_id else "?"
        action = "keep  " if decision.keep else "forget"
        zone = config.retention.zone
        until = f" (kept until at least {timefmt.day(decision.keep_until, zone)})" if decision.keep_until else ""
        click.echo(f"{action} {short} {timefmt.shown(decision.time, zone)}: {'; '.join(decision.reasons)}{until}")
    if report.alarm_hold:
        click.echo(report.alarm_hold)
    verb = "would be" if dry_run else "were"
    click.echo(f"{report.snapshots_forgotten} snapshot(s) {verb} forgotten; "
               f"{report.packs_deleted} pack(s) {verb} deleted and {report.packs_rewritten} rewritten, "
               f"freeing {human_bytes(report.bytes_freed)}")
    for _name, why in report.locked:
        click.echo(f"  not deleted yet: {why}")
    if report.object_locks is not None:
        click.echo(f"Object lock: {report.object_locks.locks_extended} lock date(s) extended "
                   f"({report.object_locks.objects_checked} object(s) checked)")


def _refuse_on_known_damage(config: Config, repo: Repository, repo_name: str | None) -> None:
    """Prune checks the structure itself, but damage inside packs shows only to a check
    that reads the data: a failed `check --read-data` blocks prune until repaired."""
    damage = Records(config.agent.state_dir, config.repository(repo_name).name).damage(repo.config.repository_id)
    if damage is None:
        return
    first = (damage.detail.get("problems") or ["?"])[0]
    raise IntegrityError(
        f"prune refused: the check of {timefmt.shown(damage.time, config.retention.zone)} found damage ({first})",
        hint="run `backupctl repair` if it named damaged packs, then `backupctl check --read-data`; "
             "prune runs again once a check passes")

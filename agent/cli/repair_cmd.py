"""`backupctl repair`: take damaged packs out of the index, salvage what still reads,
index packs no index lists; then say which files a backup must store again."""

from __future__ import annotations

import click

from agent import clock
from agent.cli.common import audit, json_option, print_json, repo_option
from agent.cli.opening import Opened, with_repository
from agent.cli.progress import for_terminal
from agent.engine.check import CheckEngine
from agent.state.records import Records
from agent.engine.repair import RepairEngine
from agent.errors import IntegrityError


@click.command("repair")
@click.option("--dry-run", is_flag=True, help="Read every pack and say what would be done; change nothing.")
@repo_option
@json_option
@click.pass_context
@with_repository(lock="exclusive")  # the check after it runs under the same lock
def command(ctx: click.Context, dry_run: bool, repo_name: str | None, as_json: bool, *, opened: Opened) -> None:
    """Repair the repository after `check --read-data` found damage: read every pack,
    salvage the readable blobs of damaged ones into new packs, rebuild the index from
    the packs themselves, then delete the damaged packs. Downloads the whole repository."""
    config, repo = opened.config, opened.repo
    report = RepairEngine(repo, dry_run=dry_run, progress=for_terminal(as_json, storage=repo.storage)).run()
    # Without the ledger: deleted or replayed snapshots are check's and prune's concern,
    # repair answers for the packs and the index only.
    after = None if dry_run else CheckEngine(repo).run()
    if after is not None:
        records = Records(config.agent.state_dir, config.repository(repo_name).name)
        if after.ok:  # repair read every pack: no damage inside them is left
            records.clear_damage(repo.config.repository_id, read_all_data=True)
        else:  # what remains is missing data, which a structure check sees
            records.note_damage(repo.config.repository_id, clock.now(), read_data=False, problems=after.errors)
    if not dry_run:
        audit(config, "repair", repository=config.repository(repo_name).name,
              damaged_packs=sorted(report.damaged_packs), missing_packs=report.missing_packs,
              blobs_salvaged=report.blobs_salvaged, blobs_lost=report.blobs_lost,
              packs_reindexed=report.packs_reindexed)
    if as_json:
        document = report.as_dict()
        document["check_after"] = after.as_dict() if after is not None else None
        print_json(document)
    else:
        verb = "would be" if dry_run else "were"
        click.echo(f"Read {report.packs_read} pack(s): {len(report.damaged_packs)} damaged, "
                   f"{len(report.missing_packs)} missing, {report.packs_reindexed} not indexed.")
        for name, why in sorted(report.damaged_packs.items()):
            click.echo(f"  damaged: {name}: {why}")
        for name in report.missing_packs:
            click.echo(f"  missing: {name}")
        if report.changed or report.blobs_lost:
            click.echo(f"{report.blobs_salvaged} blob(s) {verb} salvaged into new packs, "
                       f"{report.blobs_lost} {'are' if report.blobs_lost != 1 else 'is'} lost; "
                       f"{report.packs_reindexed} pack(s) {verb} indexed again.")
        else:
            click.echo("Nothing to repair: every pack is intact and indexed.")
        for _name, why in report.locked:
            click.echo(f"  not deleted yet: {why}")
        if after is not None:
            for snapshot, files in after.affected.items():
                click.echo(f"  snapshot {snapshot} still misses:", err=True)
                for line in files:
                    click.echo(f"    {line}", err=True)
    if after is not None and not after.ok:
        raise IntegrityError(f"repaired, but {len(after.errors)} problem(s) remain: files whose data was lost",
                             hint="run `backupctl backup` now: it stores again every lost file still on this "
                                  "computer; `backupctl check` then names those no backup can bring back")

"""`backupctl backup`: one snapshot of the configured sources."""

from __future__ import annotations


import click

from agent import clock, timefmt
from agent.cli.common import (audit, display_path, human_bytes, id_hex, json_option, ledger_of, note_medium,
                              print_json, repo_option, warn_changed_parameters, warn_ledger)
from agent.cli.opening import Opened, with_repository
from agent.cli.progress import for_terminal
from agent.cli.rescue import store_kit
from agent.engine.backup import BackupEngine, BackupOptions
from agent.engine.source.dumps import Dump
from agent.engine.source.hooks import Hooks
from agent.state.records import Records
from agent.state.files_cache import FilesCache
from agent.state.ledger import Ledger
from agent.errors import PARTIAL_BACKUP_EXIT_CODE, SUSPECT_BACKUP_EXIT_CODE, BackupctlError, UsageError
from agent.cli.alarm_notice import record_alarm
from agent.state.layout import StateLayout


def _newest_known(ledger: Ledger) -> list[str]:
    """Snapshot ids this machine knows of, newest first (for the progress estimate only)."""
    try:
        known = ledger.load().get("snapshots", {})
        return sorted(known, key=lambda i: clock.parse_iso(known[i]), reverse=True)
    except (BackupctlError, ValueError, TypeError, AttributeError):
        return []  # an unreadable ledger is check's business; the bar then has no estimate


@click.command("backup")
@repo_option
@click.option("--tag", "tags", multiple=True, metavar="TAG", help="Tag the snapshot (repeatable).")
@click.option("--time", "at", metavar="ISO8601", help="Record this time for the snapshot instead of now.")
@click.option("--one-file-system", is_flag=True, default=None, help="Do not cross mount points.")
@json_option
@click.pass_context
@with_repository(lock="shared-writer")  # other backups may run meanwhile, a prune may not
def command(ctx: click.Context, repo_name: str | None, tags: tuple[str, ...], at: str | None,
            one_file_system: bool | None, as_json: bool, *, opened: Opened) -> None:
    """Back up the configured folders into the repository.

    Exit code 3 means the snapshot was saved with warnings: some files could not be read,
    a database dump or a hook failed (listed). Exit code 5: the snapshot was saved but
    marked suspect by the ransomware alarm (see `backupctl acknowledge`). Exit code 20: a
    hook refused the backup.
    """
    config, repo, medium = opened.config, opened.repo, opened.medium
    warn_changed_parameters(config.repository(repo_name), repo)
    moment = None
    if at:
        try:
            moment = clock.parse_iso(at)
        except ValueError:
            raise UsageError(f"--time {at!r} is not an ISO 8601 time",
                             hint='use e.g. --time "2026-11-02T18:00:00+01:00"') from None
    options = BackupOptions(
        paths=list(config.source.paths),
        excludes=list(config.source.exclude),
        one_file_system=config.source.one_file_system if one_file_system is None else one_file_system,
        databases=list(config.source.databases),
        database_chunk_size=config.source.database_chunk_size,
        tags=list(tags),
        time=moment,
        host=config.agent.hostname,
        dumps=[Dump(settings, config.agent.state_dir) for settings in config.databases],
        previous_snapshots=_newest_known(ledger_of(config, repo)),
    )
    cache_path = StateLayout(config.agent.state_dir).files_cache(repo.config.repository_id)
    cache = FilesCache(cache_path)
    hooks = Hooks(config.hooks)  # after the repository opened: an unreachable one stops nothing
    try:
        with hooks:
            engine = BackupEngine(repo, options, files_cache=cache,
                                  progress=for_terminal(as_json, storage=repo.storage),
                                  alarm=config.alarm if config.alarm.enabled else None)
            engine.report.warnings.extend(("hook", w) for w in hooks.before_warnings)  # counted in the snapshot
            report = engine.run()
    finally:
        cache.close()
    report.warnings.extend(("hook", w) for w in hooks.after_warnings)
    snap = report.snapshot
    assert snap is not None  # run() returns once the snapshot is saved
    ledger = ledger_of(config, repo)
    ledger.note_saved(id_hex(snap), snap.time.isoformat())
    warn_ledger(ledger)
    audit(config, "backup", repository=config.repository(repo_name).name, snapshot=id_hex(snap),
          medium=medium, files_new=report.files_new, files_changed=report.files_changed,
          partial=report.partial)
    Records(config.agent.state_dir, config.repository(repo_name).name).note(
        "backup", snap.time, snapshot=id_hex(snap), partial=report.partial)
    alarm_lines = record_alarm(config, repo, config.repository(repo_name).name, snap, report.alarm)
    rotation = note_medium(config, repo_name, medium, last_backup=snap.time.isoformat(),
                           snapshot=id_hex(snap))
    # A damaged index file does not stop a backup (what it listed is stored again, so the new
    # snapshot is whole), but it is damage the repository carries: said, never silent.
    index_problems = list(repo.index_problems)
    # After the snapshot is saved: storing the kit never delays nor fails the backup itself.
    kit = store_kit(config, repo, config.repository(repo_name).name, as_json=as_json)
    if as_json:
        document = report.as_dict()
        document["hook_failures"] = hooks.failures
        document["rescue_kit"] = kit
        document["index_problems"] = index_problems
        if medium:
            document.update(medium=medium, rotation_warnings=rotation)
        print_json(document)
    else:
        click.echo(f"Snapshot {snap.short_id} saved ({timefmt.shown(snap.time, config.retention.zone, seconds=True)})")
        click.echo(f"  files: {report.files_new} new, {report.files_changed} changed, "
                   f"{report.files_unchanged} unchanged; {report.dirs} folders")
        click.echo(f"  {human_bytes(report.bytes_total)} in the snapshot, {human_bytes(report.bytes_read)} read, "
                   f"{human_bytes(report.bytes_added)} added to the repository in {report.duration_s:.1f} s")
        for path, problem in report.warnings:
            click.echo(f"  warning: {display_path(path)}: {problem}", err=True)
        if medium:
            click.echo(f"  on disk {medium}")
        for warning in rotation:
            click.echo(f"  warning: {warning}", err=True)
        for problem in index_problems:
            click.echo(f"  warning: the repository's index is damaged ({problem}): this snapshot is whole "
                       f"(what it listed was stored again or re-indexed from its packs); "
                       f"run `backupctl check --read-data`, then "
                       f"`backupctl repair` if it finds damage", err=True)
        skipped = (report.alarm or {}).get("skipped")
        if skipped:  # saved, but the ransomware alarm could not judge it: said, never silent
            click.echo(f"  warning: the ransomware alarm did not judge this backup: {skipped}", err=True)
    if report.suspect:
        for line in alarm_lines:
            click.echo(f"backupctl: warning: {line}", err=True)
        ctx.exit(SUSPECT_BACKUP_EXIT_CODE)  # before 3: the alarm is the more urgent news
    if report.partial:
        if not as_json:
            click.echo(f"backupctl: the backup is partial: saved with {len(report.warnings)} warning(s) (listed above)",
                       err=True)
        ctx.exit(PARTIAL_BACKUP_EXIT_CODE)

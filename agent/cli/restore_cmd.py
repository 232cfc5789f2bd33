"""`backupctl restore`: bring a snapshot back and prove it with SHA-256."""

from __future__ import annotations

import datetime as _dt
import os

import click

from agent import timefmt
from agent.cli.common import (audit, display_path, find_snapshot, human_bytes, json_option,
                              print_json, repo_option, resume_command)
from agent.cli.opening import Opened, with_repository
from agent.cli.progress import for_terminal
from agent.engine import browse
from agent.engine.restore import RestoreEngine
from agent.errors import IntegrityError, Interrupted, UsageError


@click.command("restore")
@click.argument("snapshot", default="latest", metavar="[SNAPSHOT|latest]")
@click.option("--target", required=True, metavar="DIR", help="Folder to restore into.")
@click.option("--at", "at", metavar="TIME",
              help='Restore the latest snapshot taken at or before TIME ("2026-11-02 18:00"; a date alone means '
                   "the end of that day; the retention time zone unless an offset is given).")
@click.option("--include", "includes", multiple=True, metavar="GLOB",
              help="Restore only what GLOB names, with a folder's contents: a name anywhere "
                   "('lettre-urgente Martin.odt', 'lettre*.odt'), or a path with / ('srv/cabinet/courriers/2026'); "
                   "repeatable. One that names nothing stops the restore (exit 2) with the closest names.")
@click.option("--exclude", "excludes", multiple=True, metavar="GLOB",
              help="Leave out paths matching GLOB (a name anywhere, or a path with /); repeatable.")
@click.option("--dry-run", is_flag=True, help="List what would be restored; write nothing.")
@click.option("--resume", is_flag=True,
              help="Go on with an interrupted restore: files already there with the right SHA-256 are kept.")
@click.option("--overwrite", is_flag=True,
              help="Replace what is in the way in the target (a link is removed itself, never followed).")
@click.option("--keep-special-bits", is_flag=True,
              help="Restore setuid, setgid and sticky bits (a system restore wants them; a practice's documents "
                   "never have them). Default: dropped.")
@repo_option
@json_option
@click.pass_context
# The engine takes its shared lock itself: the lock's round trips overlap its first reads
# (agent/repo/lock.py, overlapped_shared_lock).
@with_repository(lock=None)
def command(ctx: click.Context, snapshot: str, target: str, at: str | None, includes: tuple[str, ...],
            excludes: tuple[str, ...], dry_run: bool, resume: bool, overwrite: bool, keep_special_bits: bool,
            repo_name: str | None, as_json: bool, *, opened: Opened) -> None:
    """Restore SNAPSHOT (an id prefix, or latest) into --target and verify every file."""
    _config, repo = opened.config, opened.repo
    if at is not None:
        if snapshot != "latest":
            raise UsageError("give either a SNAPSHOT or --at TIME, not both")
        snap = browse.snapshot_at(repo.snapshots(), _moment(at, _config.retention.zone))
    else:
        snap = find_snapshot(repo, snapshot)
    assert snap.id is not None  # a snapshot read from the repository has its id
    engine = RestoreEngine(repo, snap, target, includes=list(includes), excludes=list(excludes),
                           overwrite=overwrite, resume=resume, dry_run=dry_run, keep_special_bits=keep_special_bits,
                           progress=for_terminal(as_json, storage=repo.storage))
    try:
        report = engine.run()
    except KeyboardInterrupt:
        audit(_config, "restore", repository=_config.repository(repo_name).name, snapshot=snap.id.hex(),
              target=os.path.abspath(target), includes=list(includes), excludes=list(excludes), interrupted=True)
        raise Interrupted("restore interrupted (Ctrl-C); the files finished are verified and kept, those being "
                          "written are incomplete", hint=f"to finish it, run: {resume_command()}") from None
    if not dry_run:  # rule T1: a restore of patient data is traced, with where it went
        audit(_config, "restore", repository=_config.repository(repo_name).name, snapshot=snap.id.hex(),
              target=os.path.abspath(target), includes=list(includes), excludes=list(excludes), files=report.files,
              sha256_verified=report.verified, failures=len(report.failures))
    for problem in repo.index_problems:
        click.echo(f"  warning: an index file could not be read: {problem}", err=True)
    document = {"snapshot_id": snap.id.hex(), "snapshot_time": snap.time.isoformat(), "target": target,
                "dry_run": dry_run, **report.as_dict()}
    if dry_run:
        document["would_restore"] = report.planned
    if as_json:
        print_json(document)
    elif dry_run:
        for path in report.planned:
            click.echo(f"would restore /{display_path(path)}")
        click.echo(f"{report.files} file(s), {report.dirs} folder(s), {human_bytes(report.bytes)} would be "
                   f"restored from snapshot {snap.short_id}")
        room = "" if report.space_needed <= report.space_available else " — not enough room: free some or choose " \
                                                                        "another --target"
        click.echo(f"They need about {human_bytes(report.space_needed)} on the target's file system "
                   f"({human_bytes(report.space_available)} available){room}")
    else:
        when = timefmt.shown(snap.time, _config.retention.zone)
        click.echo(f"Restored snapshot {snap.short_id} ({when}) into {target}: "
                   f"{report.files} file(s), {report.dirs} folder(s), {human_bytes(report.bytes)} "
                   f"in {report.duration_s:.1f} s")
        click.echo(f"SHA-256 verified for {report.verified} of {report.files} file(s)"
                   + (f" ({report.skipped} already restored before the interruption)" if report.skipped else ""))
    if report.failures:
        if not as_json:
            for path, problem in report.failures:
                click.echo(f"  FAILED {display_path(path)}: {problem}", err=True)
        raise IntegrityError(f"{len(report.failures)} file(s) could not be restored intact (listed above)")


def _moment(text: str, zone: timefmt.Zone) -> _dt.datetime:
    try:
        moment = _dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"--at {text!r} is not a date and time", hint='write it as "2026-11-02 18:00"') from None
    if len(text.strip()) == 10:  # a date alone: as it was at the end of that day
        moment = moment.replace(hour=23, minute=59, second=59)
    return moment if moment.tzinfo else moment.replace(tzinfo=zone)

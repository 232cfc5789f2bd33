"""`backupctl snapshots`: what the repository holds."""

from __future__ import annotations

import click

from agent import timefmt
from agent.cli.common import human_bytes, id_hex, json_option, print_json, repo_option
from agent.cli.opening import Opened, with_repository
from agent.errors import IntegrityError
from agent.repo.snapshot import Snapshot


@click.command("snapshots")
@repo_option
@json_option
@click.pass_context
@with_repository(lock=None)  # it reads the snapshot objects only, no pack
def command(ctx: click.Context, repo_name: str | None, as_json: bool, *, opened: Opened) -> None:
    """List the snapshots, oldest first."""
    config, repo = opened.config, opened.repo
    snapshots = repo.snapshots()
    _list(snapshots, as_json, config.retention.zone)
    problems = repo.snapshot_problems
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise IntegrityError(f"{problems[0]}{more}; the {len(snapshots)} listed are intact",
                             hint="run `backupctl check` to see what is affected")


def _list(snapshots: list[Snapshot], as_json: bool, zone: timefmt.Zone) -> None:
    if as_json:
        print_json({"snapshots": [
            {"id": id_hex(s), "time": s.time.isoformat(), "host": s.host, "tags": s.tags,
             "paths": s.paths, "files": _files(s), "bytes": s.summary.get("bytes_total", 0),
             "partial": bool(s.summary.get("partial"))}
            for s in snapshots]})
        return
    if not snapshots:
        click.echo("No snapshot yet.")
        return
    times = [timefmt.shown(s.time, zone, seconds=True) for s in snapshots]
    width = max(len(t) for t in times)  # "CET" or "-03:00": the zone's label sets the width
    click.echo(f"{'ID':8}  {'Time':{width}}  {'Host':12}  {'Files':>7}  {'Size':>10}  Tags / Paths")
    for s, when in zip(snapshots, times, strict=True):
        tags = ",".join(s.tags)
        size = human_bytes(s.summary.get("bytes_total", 0))
        partial = " (partial)" if s.summary.get("partial") else ""
        click.echo(f"{s.short_id:8}  {when:{width}}  {s.host[:12]:12}  {_files(s):>7}  {size:>10}  "
                   f"{tags + ' ' if tags else ''}{' '.join(s.paths)}{partial}")
    click.echo(f"{len(snapshots)} snapshot(s)")


def _files(snapshot: Snapshot) -> int:
    summary = snapshot.summary
    files: int = summary.get("files_new", 0) + summary.get("files_changed", 0) + summary.get("files_unchanged", 0)
    return files

"""`backupctl copy`: copy a snapshot into another repository of the configuration."""

from __future__ import annotations

import click

from agent import clock, timefmt
from agent.cli.common import (audit, find_snapshot, human_bytes, id_hex, json_option, note_medium,
                              print_json)
from agent.cli.opening import open_repository
from agent.cli.rescue import store_kit
from agent.engine.copy import CopyEngine
from agent.errors import UsageError


@click.command("copy")
@click.argument("snapshot", default="latest", metavar="[SNAPSHOT|latest]")
@click.option("--from", "source_name", metavar="NAME", help="Repository to copy from (default: the first).")
@click.option("--to", "destination_name", metavar="NAME", required=True, help="Repository to copy into.")
@json_option
@click.pass_context
def command(ctx: click.Context, snapshot: str, source_name: str | None, destination_name: str, as_json: bool) -> None:
    """Copy SNAPSHOT into the repository --to (e.g. onto this week's disk); only the data
    the destination lacks is written, and copying twice does nothing."""
    # Opened without a lock: the engine locks both (shared on the source, a written shared
    # lock on the destination; agent/engine/copy.py).
    opened_source = open_repository(ctx, source_name)
    config, source = opened_source.config, opened_source.repo
    if config.repository(source_name).name == config.repository(destination_name).name:
        raise UsageError("--from and --to name the same repository")
    opened_destination = open_repository(ctx, destination_name)
    destination = opened_destination.repo
    snap = find_snapshot(source, snapshot)
    report = CopyEngine(source, destination, snap).run()
    copied = report.snapshot_id
    assert copied is not None  # run() sets it: the copy's id, or the one of the copy already there
    audit(config, "copy", source=config.repository(source_name).name, snapshot=id_hex(snap),
          destination=config.repository(destination_name).name, copy=report.snapshot_id,
          already_there=report.already_there)
    rotation = []
    if not report.already_there:  # a copy onto a disk of a set counts as that disk's backup
        rotation = note_medium(config, destination_name, opened_destination.medium, last_backup=clock.now().isoformat(),
                               snapshot=report.snapshot_id)
    kit = store_kit(config, destination, config.repository(destination_name).name, as_json=as_json)
    if as_json:
        print_json({**report.as_dict(), "rotation_warnings": rotation, "rescue_kit": kit})
    elif report.already_there:
        click.echo(f"Snapshot {snap.short_id} is already in {destination_name} (as {copied[:8]}).")
    else:
        when = timefmt.shown(snap.time, config.retention.zone)
        click.echo(f"Copied snapshot {snap.short_id} ({when}) into {destination_name} "
                   f"as {copied[:8]}: {report.blobs_copied} blob(s), "
                   f"{human_bytes(report.bytes_added)} added")
        if not report.same_chunking and report.bytes_added:
            # Said at every such copy: otherwise the growth of the destination looks like a fault.
            click.echo(f"{human_bytes(report.bytes_added)} stored anew in {destination_name}: its key differs from "
                       f"the source's, so the same files are cut into other chunks and do not deduplicate with "
                       f"{destination_name}'s own backups (docs/REFERENCE.md, \"copy\")")
    for warning in rotation:
        click.echo(f"  warning: {warning}", err=True)

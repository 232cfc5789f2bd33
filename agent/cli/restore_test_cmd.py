"""`backupctl restore-test`: restore, prove every file by SHA-256, wipe (rules S7, C3, C5)."""

from __future__ import annotations

import os

import click

from agent import clock
from agent.cli.common import audit, find_snapshot, human_bytes, json_option, open_repository, print_json, repo_option
from agent.engine.records import Records
from agent.engine.restore_test import RestoreTestEngine
from agent.errors import IntegrityError


@click.command("restore-test")
@repo_option
@click.option("--snapshot", "snapshot_id", default="latest", metavar="ID", help="Snapshot to test (default: latest).")
@click.option("--full", "mode", flag_value="full", default=True, help="Restore every file (default).")
@click.option("--sample", type=click.IntRange(1, 1_000_000), metavar="N", help="Restore N files drawn at random.")
@click.option("--scratch-dir", metavar="DIR",
              help="Where to restore (a fresh folder inside it is wiped afterwards); default state_dir/restore-test.")
@json_option
@click.pass_context
def command(ctx: click.Context, repo_name, snapshot_id, mode, sample, scratch_dir, as_json) -> None:
    """Restore a snapshot (and a sample of the oldest one) into a scratch folder, compare
    every file's SHA-256 with the one recorded at backup, measure the time, then wipe it."""
    config, repo = open_repository(ctx, repo_name)
    snapshot = find_snapshot(repo, snapshot_id)
    snapshots = repo.snapshots()
    oldest = snapshots[0] if snapshots else None
    scratch = scratch_dir or os.path.join(config.agent.state_dir, "restore-test")
    engine = RestoreTestEngine(repo, snapshot, scratch, sources=list(config.source.paths), sample=sample,
                               oldest=oldest)
    report = engine.run()
    document = {"repository": config.repository(repo_name).name, **report.as_dict()}
    name = config.repository(repo_name).name
    Records(config.agent.state_dir, name).note("restore_test", clock.now(), ok=report.ok, snapshot=snapshot.id.hex(),
                                               files=document["files"], sha256_verified=document["sha256_verified"])
    audit(config, "restore_test", repository=name, snapshot=snapshot.id.hex(), ok=report.ok,
          files=document["files"], scratch=os.path.abspath(scratch), wiped=report.scratch_wiped)
    if as_json:
        print_json(document)
    else:
        for test in report.tests:
            click.echo(f"Snapshot {test.snapshot_id[:8]} ({test.snapshot_time[:16].replace('T', ' ')}, {test.mode}): "
                       f"{test.files} file(s), {human_bytes(test.bytes)} restored in {test.duration_s:.1f} s "
                       f"({test.throughput_mib_s:.0f} MiB/s); SHA-256 verified for {test.sha256_verified}")
        click.echo("Restored data wiped." if report.scratch_wiped else "WARNING: the scratch copy could not be wiped")
    if not report.ok:
        if not as_json:
            for failure in document["failures"]:
                click.echo(f"  FAILED /{failure['path']}: {failure['problem']}", err=True)
        raise IntegrityError(f"restore test failed: {len(document['failures'])} file(s) did not restore intact",
                             hint="run `backupctl check --read-data` to see what is damaged")

"""`backupctl check`: prove the repository is intact."""

from __future__ import annotations

import click

from agent import clock
from agent.cli.common import (audit, human_bytes, json_option, note_medium, open_repository, print_json,
                              repo_option)
from agent.cli.progress import for_terminal
from agent.engine.check import MISSING_PACK, CheckEngine
from agent.engine.records import Records
from agent.errors import IntegrityError, UsageError


@click.command("check")
@click.option("--read-data", is_flag=True, help="Also download, decrypt and verify every stored byte.")
@click.option("--read-data-subset", "subset", metavar="K/N",
              help="Read only the K-th of N slices of the packs (implies --read-data); reading slice "
                   "1..N in turn verifies everything.")
@repo_option
@json_option
@click.pass_context
def command(ctx: click.Context, read_data, subset, repo_name, as_json) -> None:
    """Check the repository's structure (and with --read-data, all of its data)."""
    config, repo = open_repository(ctx, repo_name)
    report = CheckEngine(repo, read_data=read_data, progress=for_terminal(as_json),
                         read_data_subset=_subset(subset)).run()
    read_data = report.read_data
    note_medium(ctx, config, repo_name, last_check=clock.now().isoformat(), check_read_data=read_data,
                check_ok=report.ok)
    audit(config, "check", repository=config.repository(repo_name).name, ok=report.ok, read_data=read_data,
          medium=ctx.obj.get("medium"))
    Records(config.agent.state_dir, config.repository(repo_name).name).note(
        "check", clock.now(), ok=report.ok, read_data=read_data,
        read_data_subset=report.as_dict()["read_data_subset"])
    if read_data:  # kept apart so a later structure-only check does not hide when data was last re-read
        Records(config.agent.state_dir, config.repository(repo_name).name).note(
            "read_data_check", clock.now(), ok=report.ok, read_data_subset=report.as_dict()["read_data_subset"])
    if as_json:
        print_json(report.as_dict())
    else:
        scope = "structure and all data" if read_data else "structure"
        click.echo(f"Checked {scope}: {report.snapshots} snapshot(s), {report.packs} pack(s)"
                   + (f", {report.blobs_verified} blobs verified, {human_bytes(report.bytes_read)} read"
                      if read_data else ""))
        for warning in report.warnings:
            click.echo(f"  note: {warning}")
        for error in report.errors:
            click.echo(f"  DAMAGED: {error}", err=True)
        for snapshot, files in report.affected.items():
            click.echo(f"  snapshot {snapshot} is affected:", err=True)
            for line in files:
                click.echo(f"    {line}", err=True)
        if report.ok:
            click.echo("No problem found.")
    if not report.ok:
        only_missing = all(why == MISSING_PACK for why in report.damaged_packs.values())
        hint = ("see the list above; run a new backup to store missing data again" if only_missing else
                "see the list above; a new backup stores again only data whose pack is missing, damaged packs are "
                "not repaired: restore the affected files from your other copy (another repository or disk)")
        raise IntegrityError(f"the repository is damaged: {len(report.errors)} problem(s) found", hint=hint)


def _subset(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    k, _, n = text.partition("/")
    if not (k.isdigit() and n.isdigit() and 1 <= int(k) <= int(n) <= 10_000):
        raise UsageError(f"--read-data-subset {text!r}: expected K/N with 1 <= K <= N, such as 3/13")
    return int(k), int(n)

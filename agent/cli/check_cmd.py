"""`backupctl check`: prove the repository is intact."""

from __future__ import annotations

import click

from agent import clock
from agent.cli.common import (audit, human_bytes, id_hex, json_option, ledger_of, note_medium,
                              print_json, repo_option, warn_ledger)
from agent.cli.opening import Opened, with_repository
from agent.cli.progress import for_terminal
from agent.config import Config
from agent.engine.check import MISSING_PACK, CheckEngine, CheckReport
from agent.state.records import Records
from agent.errors import IntegrityError, UsageError
from agent.repo.repository import Repository
from agent.state.ledger import Ledger


@click.command("check")
@click.option("--read-data", is_flag=True, help="Also download, decrypt and verify every stored byte.")
@click.option("--read-data-subset", "subset", metavar="K/N",
              help="Read only the K-th of N slices of the packs (implies --read-data); reading slice "
                   "1..N in turn verifies everything.")
@click.option("--accept-storage", is_flag=True,
              help="Take the snapshots the repository holds now as the reference, after a deliberate change made "
                   "from elsewhere (e.g. a prune run on another machine); the change is written in the audit trail.")
@repo_option
@json_option
@click.pass_context
@with_repository(lock="shared")  # no prune meanwhile
def command(ctx: click.Context, read_data: bool, subset: str | None, accept_storage: bool, repo_name: str | None,
            as_json: bool, *, opened: Opened) -> None:
    """Check the repository's structure (and with --read-data, all of its data)."""
    config, repo = opened.config, opened.repo
    ledger = ledger_of(config, repo)
    if accept_storage:
        _accept(config, repo, ledger, repo_name, as_json)
    report = CheckEngine(repo, read_data=read_data, progress=for_terminal(as_json, storage=repo.storage),
                         zone=config.retention.zone,
                         read_data_subset=_subset(subset), ledger=ledger).run()
    warn_ledger(ledger)
    read_data = report.read_data
    note_medium(config, repo_name, opened.medium, last_check=clock.now().isoformat(), check_read_data=read_data,
                check_ok=report.ok)
    audit(config, "check", repository=config.repository(repo_name).name, ok=report.ok, read_data=read_data,
          medium=opened.medium)
    records = Records(config.agent.state_dir, config.repository(repo_name).name)
    records.note("check", clock.now(), ok=report.ok, read_data=read_data,
                 read_data_subset=report.as_dict()["read_data_subset"])
    if read_data:  # kept apart so a later structure-only check does not hide when data was last re-read
        records.note("read_data_check", clock.now(), ok=report.ok,
                     read_data_subset=report.as_dict()["read_data_subset"])
    repository_id = repo.config.repository_id
    if report.ok:
        records.clear_damage(repository_id, read_all_data=read_data and report.read_data_subset is None)
    else:  # prune refuses until a check or a repair clears it
        first = report.ledger_problems  # the likeliest explanation of the rest
        records.note_damage(repository_id, clock.now(), read_data=read_data,
                            problems=first + [e for e in report.errors if e not in first])
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
        raise IntegrityError(f"the repository is damaged: {len(report.errors)} problem(s) found",
                             hint=_advice(report))


def _advice(report: CheckReport) -> str:
    if report.rescue_kit_problems and len(report.rescue_kit_problems) == len(report.errors):
        return ("the backups themselves are intact; the rescue kit in the repository is not the one backupctl "
                "stored: treat it as an attack on the storage (tell your IT provider), and install on a new "
                "machine only from a kit whose SHA-256 matches the recovery sheet")
    if report.ledger_problems and len(report.ledger_problems) == len(report.errors):
        return ("see the list above; if nobody changed the repository on purpose from another machine, treat it "
                "as an attack on the storage (tell your IT provider); once explained, `backupctl check "
                "--accept-storage` takes the repository as it is now")
    if report.unindexed_packs:
        return ("see the list above; run `backupctl repair`: packs that no index lists may hold the missing data "
                "(it indexes them again), then a new backup")
    if all(why == MISSING_PACK for why in report.damaged_packs.values()):
        return "see the list above; run a new backup to store missing data again"
    return ("see the list above; run `backupctl repair` (it takes the damaged packs out and keeps what still "
            "reads), then a new backup: it stores again every lost file still on this computer")


def _accept(config: Config, repo: Repository, ledger: Ledger, repo_name: str | None, as_json: bool) -> None:
    listing: dict[str, str] = {}
    for snapshot in repo.snapshots():
        listing[id_hex(snapshot)] = snapshot.time.isoformat()
    accepted = ledger.accept(listing)
    audit(config, "accept_storage", repository=config.repository(repo_name).name,
          vanished=[sid for sid, _ in accepted.vanished], replayed=[sid for sid, _ in accepted.replayed],
          snapshots=len(listing))
    if not as_json:
        for line in accepted.problems():
            click.echo(f"accepted: {line}")
        click.echo(f"The {len(listing)} snapshot(s) the repository holds are now the reference.")


def _subset(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    k, _, n = text.partition("/")
    if not (k.isdigit() and n.isdigit() and 1 <= int(k) <= int(n) <= 10_000):
        raise UsageError(f"--read-data-subset {text!r}: expected K/N with 1 <= K <= N, such as 3/13")
    return int(k), int(n)

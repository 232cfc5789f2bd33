"""`backupctl status`: are the obligations met? For the practitioner and for monitoring.

Reads only the state directory (no passphrase, no network): the records the commands
leave (agent.state.records), the disks' record, and the schedule. Exit code 0 when
nothing is at risk, 4 otherwise (errors.OBLIGATIONS_AT_RISK_EXIT_CODE).
"""

from __future__ import annotations


import click

from agent import clock, timefmt
from agent.cli.common import describe_verification, json_option, load_config, print_json
from agent.errors import OBLIGATIONS_AT_RISK_EXIT_CODE
from agent.storage.verification import Verification


@click.command("status")
@json_option
@click.pass_context
def command(ctx: click.Context, as_json: bool) -> None:
    """Last backup, check and restore test of each repository, the next scheduled runs,
    and the obligations at risk (exit code 4 when any is)."""
    from agent.daemon.status import collect  # APScheduler's triggers give the next runs

    config = load_config(ctx)
    zone = config.retention.zone
    document = collect(config, clock.now())
    if as_json:
        print_json(document)
    else:
        daemon = document["daemon"]
        running = {True: f"running (pid {daemon['pid']})", False: "not running",
                   None: "unknown (its lock file is not readable by this user)"}[daemon["running"]]
        click.echo(f"Daemon: {running}")
        for risk in document["at_risk"]:
            click.echo(f"  AT RISK: {risk}")
        for repo in document["repositories"]:
            click.echo(f"{repo['repository']}: last backup {_short(repo['last_backup'], zone)}"
                       f"{' (partial)' if repo['last_backup_partial'] else ''}, "
                       f"last check {_short(repo['last_check'], zone)}"
                       f"{' (FAILED)' if repo['last_check_ok'] is False else ''}, "
                       f"last restore test {_short(repo['last_restore_test'], zone)}")
            verification = repo.get("upload_verification")
            if verification:  # an S3 repository
                shown = Verification(verification["mode"], verification["setting"], verification["reason"])
                click.echo(f"  uploads verified by: {describe_verification(shown)}")
            for run in repo["next_runs"]:
                click.echo(f"  next: {run['job']} on {_short(run['at'], zone)}")
            for failed in repo["failed_jobs"]:
                detail = f": {failed['error_detail']}" if failed["error_detail"] else ""
                click.echo(f"  last run failed: {failed['job']}, {_short(failed['at'], zone)}, "
                           f"exit {failed['exit_code']}{detail}")
            for risk in repo["at_risk"]:
                click.echo(f"  AT RISK: {risk}")
            for warning in repo.get("warnings", []):
                click.echo(f"  warning: {warning}")
        click.echo("All obligations are met." if document["ok"] else "Some obligations are at risk (listed above).")
    if not document["ok"]:
        ctx.exit(OBLIGATIONS_AT_RISK_EXIT_CODE)


def _short(moment: str | None, zone: timefmt.Zone) -> str:
    return timefmt.shown(moment, zone)

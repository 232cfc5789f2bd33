"""`backupctl status`: are the obligations met? For the practitioner and for monitoring.

Reads only the state directory (no passphrase, no network): the records the commands
leave (agent.engine.records), the disks' record, and the schedule. Exit code 0 when
nothing is at risk, 4 otherwise (errors.OBLIGATIONS_AT_RISK_EXIT_CODE).
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import os

import click

from agent import clock
from agent.cli.common import json_option, load_config, print_json
from agent.engine import media
from agent.engine.records import Records, obligations_at_risk
from agent.errors import OBLIGATIONS_AT_RISK_EXIT_CODE


@click.command("status")
@json_option
@click.pass_context
def command(ctx: click.Context, as_json) -> None:
    """Last backup, check and restore test of each repository, the next scheduled runs,
    and the obligations at risk (exit code 4 when any is)."""
    from agent.daemon.schedule import planned_jobs  # the schedule's triggers

    config = load_config(ctx)
    now = clock.now()
    zone = config.retention.zone
    next_runs: dict[str, list[dict]] = {}
    for job in planned_jobs(config):
        when = job.trigger.get_next_fire_time(None, now)
        if when is not None:
            next_runs.setdefault(job.repository, []).append({"job": job.describe(), "at": when.isoformat()})
    repositories = []
    for settings in config.repositories:
        records = Records(config.agent.state_dir, settings.name)
        backup, check, restore_test = records.last("backup"), records.last("check"), records.last("restore_test")
        risks = obligations_at_risk(now=now, last_backup=backup, last_check=check, last_restore_test=restore_test,
                                    zone=zone)
        if settings.media:
            risks += _disk_risks(config, settings, now)
        repositories.append({
            "repository": settings.name,
            "last_backup": backup.time.isoformat() if backup else None,
            "last_backup_partial": bool(backup and backup.detail.get("partial")),
            "last_check": check.time.isoformat() if check else None,
            "last_check_ok": check.detail.get("ok") if check else None,
            "last_restore_test": restore_test.time.isoformat() if restore_test else None,
            "next_runs": next_runs.get(settings.name, []),
            "at_risk": risks,
        })
    daemon = _daemon_state(config.agent.state_dir)
    at_risk = any(r["at_risk"] for r in repositories)
    if as_json:
        print_json({"time": now.isoformat(), "ok": not at_risk, "daemon": daemon, "repositories": repositories})
    else:
        click.echo(f"Daemon: {'running (pid ' + str(daemon['pid']) + ')' if daemon['running'] else 'not running'}")
        for repo in repositories:
            click.echo(f"{repo['repository']}: last backup {_short(repo['last_backup'], zone)}"
                       f"{' (partial)' if repo['last_backup_partial'] else ''}, "
                       f"last check {_short(repo['last_check'], zone)}"
                       f"{' (FAILED)' if repo['last_check_ok'] is False else ''}, "
                       f"last restore test {_short(repo['last_restore_test'], zone)}")
            for run in repo["next_runs"]:
                click.echo(f"  next: {run['job']} on {_short(run['at'], zone)}")
            for risk in repo["at_risk"]:
                click.echo(f"  AT RISK: {risk}")
        click.echo("All obligations are met." if not at_risk else "Some obligations are at risk (listed above).")
    if at_risk:
        ctx.exit(OBLIGATIONS_AT_RISK_EXIT_CODE)


def _disk_risks(config, settings, now: _dt.datetime) -> list[str]:
    """The disk due this week has not received a backup although the weekly run is past."""
    from agent.daemon.schedule import planned_jobs, previous_fire

    local = now.astimezone(config.retention.zone)
    monday = (local - _dt.timedelta(days=local.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
    weekly = next((j for j in planned_jobs(config) if j.job_id == f"weekly:{settings.name}"), None)
    scheduled = previous_fire(weekly.trigger, now) if weekly else None
    if scheduled is None or scheduled < monday:
        return []  # this week's backup time has not come yet
    due = media.due_medium(settings.media, local.date())
    record = media.MediaState(config.agent.state_dir, settings.name).record().get("media", {}).get(due, {})
    last = record.get("last_backup")
    if last and _dt.datetime.fromisoformat(last) >= monday:
        return []
    return [f"this week's disk, {due}, has not received its backup (rule S2)"]


def _daemon_state(state_dir: str) -> dict:
    path = os.path.join(state_dir, "daemon", "daemon.lock")
    try:
        with open(path) as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return {"running": True, "pid": int(handle.read().strip() or 0)}
    except (OSError, ValueError):
        pass
    return {"running": False, "pid": None}


def _short(moment: str | None, zone) -> str:
    return _dt.datetime.fromisoformat(moment).astimezone(zone).strftime("%Y-%m-%d %H:%M") if moment else "never"

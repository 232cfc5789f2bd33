"""The state of the obligations, from the state directory only: what `status` prints and
what the daemon alerts on. No passphrase, no network."""

from __future__ import annotations

import datetime as _dt
import fcntl
import os
from typing import Any

from agent import __version__
from agent.config import Config, RepositorySettings
from agent.daemon.jobs import JobRecord
from agent.daemon.schedule import PlannedJob, planned_jobs, previous_fire
from agent.state import media
from agent.state.alarm_state import alarm_risk
from agent.state.records import PROBE_RECORD, Records, Risk, obligations_at_risk
from agent.reports.i18n import risk_text
from agent.service_install.layout import UNIT
from agent.storage.verification import choose, facts_for
from agent.state.layout import StateLayout


# Where install-service puts the unit (agent/service_install/layout.py); a module constant
# so that a test can point it at a file of its own, without systemd.
INSTALLED_UNIT = UNIT


def collect(config: Config, now: _dt.datetime) -> dict[str, Any]:
    """What `status` prints. Risks are in English (for the IT provider at the console), with
    their codes for monitoring; the daemon's alerts word them in [agent] report_language."""
    jobs = planned_jobs(config)
    names = {job.job_id: job.describe() for job in jobs}
    names_repository = {job.job_id: job.repository for job in jobs}
    # The daemon's jobs whose last run failed, with the child's error line: the alert and the
    # journal give the exit code only (they leave the server), `status` is read on it.
    failures = JobRecord(config.agent.state_dir).failures(set(names))
    repositories = []
    for settings in config.repositories:
        records = Records(config.agent.state_dir, settings.name)
        backup, check, restore_test = records.last("backup"), records.last("check"), records.last("restore_test")
        risks = repository_risks(config, settings.name, now, jobs=jobs)
        next_runs = [{"job": job.describe(), "at": when.isoformat()} for job in jobs
                     if job.repository == settings.name
                     and (when := job.trigger.get_next_fire_time(None, now)) is not None]
        failed_jobs = [{"job": names[f.job_id], "exit_code": f.exit_code, "at": f.when.isoformat(),
                        "error_detail": f.error_detail}
                       for f in failures if f.job_id in names and names_repository[f.job_id] == settings.name]
        repositories.append({
            "repository": settings.name,
            "last_backup": backup.time.isoformat() if backup else None,
            "last_backup_partial": bool(backup and backup.detail.get("partial")),
            "last_check": check.time.isoformat() if check else None,
            "last_check_ok": check.detail.get("ok") if check else None,
            "last_restore_test": restore_test.time.isoformat() if restore_test else None,
            "next_runs": next_runs,
            "failed_jobs": failed_jobs,
            "at_risk": [risk_text(r.code, r.params) for r in risks],
            "at_risk_codes": [r.code for r in risks],
            "warnings": _rescue_kit_warnings(records),
            "upload_verification": _upload_verification(settings, records),
        })
    daemon = daemon_state(config.agent.state_dir)
    service_risks = [risk_text(r.code, r.params) for r in _service_risks(daemon)]
    at_risk = bool(service_risks) or any(r["at_risk"] for r in repositories)
    return {"time": now.isoformat(), "ok": not at_risk, "daemon": daemon, "at_risk": service_risks,
            "repositories": repositories}


def repository_risks(config: Config, repository: str, now: _dt.datetime, *,
                     jobs: list[PlannedJob] | None = None) -> list[Risk]:
    """The obligations at risk for one repository, as codes (agent.state.records.Risk)."""
    settings = config.repository(repository)
    records = Records(config.agent.state_dir, repository)
    risks = obligations_at_risk(now=now, last_backup=records.last("backup"), last_check=records.last("check"),
                                last_restore_test=records.last("restore_test"), zone=config.retention.zone)
    if settings.media:
        risks += _disk_risks(config, settings, jobs if jobs is not None else planned_jobs(config), now)
    alarm = alarm_risk(records)  # first: the most urgent (issue 22)
    return [alarm, *risks] if alarm is not None else risks


def _upload_verification(settings: RepositorySettings, records: Records) -> dict[str, Any] | None:
    """For an S3 repository, how uploads are verified, from the recorded endpoint probe."""
    if settings.s3 is None:
        return None
    entry = records.last(PROBE_RECORD)
    facts = facts_for(entry.detail if entry else None, settings.s3.endpoint, settings.s3.bucket)
    return {**choose(settings.s3.verify_uploads, facts).as_dict(),
            "probed": entry.time.isoformat() if facts and entry else None}


def _service_risks(daemon: dict[str, Any]) -> list[Risk]:
    """Installed as a service, but no daemon holds the state_dir's lock: nothing scheduled runs
    (a unit stopped by hand, or one that failed and gave up restarting)."""
    if daemon["running"] is not False or not os.path.exists(INSTALLED_UNIT):
        return []
    return [Risk("daemon_stopped", {"unit": INSTALLED_UNIT})]


def _rescue_kit_warnings(records: Records) -> list[str]:
    """A repository without this version's rescue kit (as its last backup found it): a
    warning, not an obligation at risk; the backups are whole, the new machine's install is
    what would need the network (agent/repo/rescue_kit.py)."""
    kit = records.last("rescue_kit")
    if kit is None or kit.detail.get("version") != __version__ or kit.detail.get("in_repository"):
        return []
    return [f"no rescue kit in the repository (backupctl {__version__} is not installed from a kit here: "
            f"`make dist` in the checkout, or the install script, then a backup stores it)"]


def _disk_risks(config: Config, settings: RepositorySettings, jobs: list[PlannedJob], now: _dt.datetime) -> list[Risk]:
    """The disk due this week has not received a backup although the weekly run is past."""
    local = now.astimezone(config.retention.zone)
    monday = (local - _dt.timedelta(days=local.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
    weekly = next((j for j in jobs if j.job_id == f"weekly:{settings.name}"), None)
    scheduled = previous_fire(weekly.trigger, now) if weekly else None
    if scheduled is None or scheduled < monday:
        return []  # this week's backup time has not come yet
    due = media.due_medium(settings.media, local.date())
    record = media.MediaState(config.agent.state_dir, settings.name).record().get("media", {}).get(due, {})
    last = record.get("last_backup")
    if last and _dt.datetime.fromisoformat(last) >= monday:
        return []
    return [Risk("disk_due", {"disk": due}, "backup")]


def daemon_state(state_dir: str) -> dict[str, Any]:
    """running: True (the lock is held: its pid), False, or None when this user may not
    read the lock file (then nobody can tell, and no risk is claimed from it)."""
    path = StateLayout(state_dir).daemon_lock()
    try:
        with open(path) as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return {"running": True, "pid": int(handle.read().strip() or 0)}
    except PermissionError:
        return {"running": None, "pid": None}
    except (OSError, ValueError):
        pass
    return {"running": False, "pid": None}

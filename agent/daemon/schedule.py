"""What the daemon runs and when: cron triggers from [schedule], and catch-up.

Jobs (one set per scheduled repository):

    weekly:<repo>   backup, then prune and one slice of a rolling `check --read-data`
    daily:<repo>    backup only (when [schedule] daily_backup is set)
    check:<repo>    monthly structural `check`
    restore-test:<repo>  quarterly restore test (rule S7)

Catch-up does not rely only on APScheduler's misfire handling, which knows about runs
missed while the daemon was down but not about a job that was interrupted (SIGTERM at
shutdown) or failed: at start, and after every job, a job whose latest scheduled time is
later than its last success, and at most catch_up_days ago, is run at once. A fresh
install therefore backs up at the first start.
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass

from apscheduler.triggers.cron import CronTrigger

from agent.config import Config

# Looking back for a trigger's previous time: further than any schedule's period.
_LOOKBACK = _dt.timedelta(days=100)
# A restore test missed (server off, failed) is caught up within the whole quarter: a
# quarter without a restore test triggers one (rule S7), whatever catch_up_days says.
RESTORE_TEST_CATCH_UP = _dt.timedelta(days=92)


@dataclass(frozen=True)
class PlannedJob:
    job_id: str
    kind: str  # "weekly", "daily", "check"
    repository: str
    trigger: CronTrigger

    def describe(self) -> str:
        what = {"weekly": "weekly backup", "daily": "daily backup", "check": "monthly check",
                "restore-test": "quarterly restore test"}[self.kind]
        return f"{what} of {self.repository}"


def planned_jobs(config: Config) -> list[PlannedJob]:
    schedule = config.schedule
    zone = config.retention.zone
    names = schedule.repositories or tuple(r.name for r in config.repositories)
    jobs = []
    for name in names:
        day, hour, minute = schedule.backup
        jobs.append(PlannedJob(f"weekly:{name}", "weekly", name,
                               CronTrigger(day_of_week=day, hour=hour, minute=minute, timezone=zone)))
        if schedule.daily_backup is not None:
            hour, minute = schedule.daily_backup
            jobs.append(PlannedJob(f"daily:{name}", "daily", name,
                                   CronTrigger(hour=hour, minute=minute, timezone=zone)))
        month_day, hour, minute = schedule.monthly_check
        jobs.append(PlannedJob(f"check:{name}", "check", name,
                               CronTrigger(day=month_day, hour=hour, minute=minute, timezone=zone)))
        test_day, hour, minute = schedule.restore_test
        jobs.append(PlannedJob(f"restore-test:{name}", "restore-test", name,
                               CronTrigger(month="1,4,7,10", day=test_day, hour=hour, minute=minute, timezone=zone)))
    return jobs


def previous_fire(trigger: CronTrigger, now: _dt.datetime) -> _dt.datetime | None:
    """The latest time <= now at which `trigger` fired (within the look-back)."""
    moment = trigger.get_next_fire_time(None, now - _LOOKBACK)
    latest = None
    while moment is not None and moment <= now:
        latest = moment
        moment = trigger.get_next_fire_time(moment, moment + _dt.timedelta(seconds=1))
    return latest


def catch_ups(jobs: list[PlannedJob], last_success: dict[str, _dt.datetime], now: _dt.datetime,
              catch_up_days: int) -> list[PlannedJob]:
    """The jobs whose latest scheduled run has not succeeded and is recent enough."""
    due = []
    for job in jobs:
        scheduled = previous_fire(job.trigger, now)
        window = RESTORE_TEST_CATCH_UP if job.kind == "restore-test" else _dt.timedelta(days=catch_up_days)
        if scheduled is None or now - scheduled > window:
            continue
        succeeded = last_success.get(job.job_id)
        if succeeded is None or succeeded < scheduled:
            due.append(job)
    return due


def read_data_slice(period_days: int, day: _dt.date) -> tuple[int, int] | None:
    """The slice of packs the weekly job re-reads this week: (k, n) with n weeks in the
    period, so every pack is read within it. None when rolling reads are off."""
    if period_days <= 0:
        return None
    slices = max(1, math.floor(period_days / 7))
    week = (day - _dt.date(1970, 1, 5)).days // 7
    return week % slices + 1, slices

"""agent.daemon.schedule: triggers from [schedule], previous runs, catch-up, read slices."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from agent.config import parse
from agent.daemon.schedule import catch_ups, planned_jobs, previous_fire, read_data_slice
from agent.engine.check import in_subset
from agent.errors import ConfigError

PARIS = ZoneInfo("Europe/Paris")
BASE = {"source": {"paths": ["/srv"]}, "repositories": {"main": {"url": "file:///r"}, "disques": {"url": "file:///m"}}}


def config(schedule: dict | None = None):
    return parse({**BASE, "schedule": schedule or {}}, "c.toml")


def test_default_jobs_for_every_repository():
    jobs = {j.job_id: j for j in planned_jobs(config())}
    assert set(jobs) == {"weekly:main", "check:main", "restore-test:main", "weekly:disques", "check:disques",
                         "restore-test:disques"}
    monday = dt.datetime(2026, 11, 23, 9, tzinfo=PARIS)
    assert jobs["weekly:main"].trigger.get_next_fire_time(None, monday) == dt.datetime(2026, 11, 27, 20, tzinfo=PARIS)
    assert jobs["check:main"].trigger.get_next_fire_time(None, monday) == dt.datetime(2026, 12, 1, 3, tzinfo=PARIS)
    assert jobs["restore-test:main"].trigger.get_next_fire_time(None, monday) == dt.datetime(2027, 1, 2, 4,
                                                                                             tzinfo=PARIS)


def test_daily_backups_and_a_subset_of_repositories():
    jobs = planned_jobs(config({"daily_backup": "12:30", "repositories": ["disques"], "backup": "sat 09:05"}))
    assert [j.job_id for j in jobs] == ["weekly:disques", "daily:disques", "check:disques", "restore-test:disques"]
    monday = dt.datetime(2026, 11, 23, 13, tzinfo=PARIS)
    assert jobs[1].trigger.get_next_fire_time(None, monday) == dt.datetime(2026, 11, 24, 12, 30, tzinfo=PARIS)
    assert jobs[0].trigger.get_next_fire_time(None, monday) == dt.datetime(2026, 11, 28, 9, 5, tzinfo=PARIS)


def test_previous_fire_and_catch_up():
    jobs = planned_jobs(config())
    weekly = next(j for j in jobs if j.job_id == "weekly:main")
    monday = dt.datetime(2026, 11, 23, 9, tzinfo=PARIS)
    friday = dt.datetime(2026, 11, 20, 20, tzinfo=PARIS)
    assert previous_fire(weekly.trigger, monday) == friday
    assert previous_fire(weekly.trigger, friday) == friday  # at the very time, it has fired
    # Never succeeded: the weekly backup (last Friday) is due; the monthly check of
    # 1 November is older than catch_up_days.
    def due(done, now, days):
        return [j.job_id for j in catch_ups(jobs, done, now, days)
                if j.repository == "main" and j.kind != "restore-test"]

    assert due({}, monday, 7) == ["weekly:main"]
    assert due({}, monday, 30) == ["weekly:main", "check:main"]
    done = {"weekly:main": friday + dt.timedelta(minutes=5)}
    assert "weekly:main" not in [j.job_id for j in catch_ups(jobs, done, monday, 7)]
    stale = {"weekly:main": friday - dt.timedelta(days=7)}
    assert "weekly:main" in [j.job_id for j in catch_ups(jobs, stale, monday, 7)]
    # A run missed longer ago than catch_up_days is left to the next scheduled one.
    thursday = dt.datetime(2026, 11, 26, 9, tzinfo=PARIS)
    assert "weekly:main" in [j.job_id for j in catch_ups(jobs, {}, thursday, 7)]
    assert "weekly:main" not in [j.job_id for j in catch_ups(jobs, {}, thursday, 5)]


def test_weekly_slices_cover_every_pack_within_the_period():
    names = [f"data/{i:02x}/{i:02x}{'ab' * 31}" for i in range(256)]
    seen = set()
    start = dt.date(2026, 11, 23)
    slices = {read_data_slice(91, start + dt.timedelta(weeks=w)) for w in range(13)}
    assert len(slices) == 13 and all(n == 13 for _k, n in slices)
    for k, n in slices:
        seen |= {name for name in names if in_subset(name, k, n)}
    assert seen == set(names)
    assert read_data_slice(0, start) is None
    assert read_data_slice(6, start) == (1, 1)  # shorter than a week: everything, every week


@pytest.mark.parametrize("schedule, key", [
    ({"backup": "friday 20:00"}, "backup"),
    ({"backup": "fri 25:00"}, "backup"),
    ({"backup": "fri 20h"}, "backup"),
    ({"daily_backup": "12:5"}, "daily_backup"),
    ({"monthly_check": "31 03:00"}, "monthly_check"),
    ({"read_data_period_days": -1}, "read_data_period_days"),
    ({"catch_up_days": 0}, "catch_up_days"),
    ({"repositories": ["nowhere"]}, "repositories"),
    ({"prune_after_backup": "yes"}, "prune_after_backup"),
    ({"backpu": "fri 20:00"}, "backpu"),
])
def test_bad_schedules_are_config_errors(schedule, key):
    with pytest.raises(ConfigError, match=key):
        config(schedule)


def test_server_off_from_friday_to_tuesday_catches_up_the_sunday_backup_once():
    """Injected clock, no sleeping: a Sunday backup missed while the server was off is run
    once when it starts on Tuesday, and not again once it has succeeded."""
    jobs = planned_jobs(config({"backup": "sun 12:00", "daily_backup": "19:00"}))
    friday_evening = dt.datetime(2026, 11, 20, 19, 30, tzinfo=PARIS)  # the last success
    done = {"weekly:main": dt.datetime(2026, 11, 15, 12, 5, tzinfo=PARIS), "daily:main": friday_evening}
    tuesday = dt.datetime(2026, 11, 24, 8, tzinfo=PARIS)
    done["restore-test:main"] = tuesday  # (not the subject here)
    due = [j.job_id for j in catch_ups(jobs, done, tuesday, 7) if j.repository == "main"]
    # One weekly catch-up (Sunday 22) and one daily (Monday 23 19:00, coalescing Sat-Mon).
    assert due == ["weekly:main", "daily:main"]
    ran = {**done, "weekly:main": tuesday, "daily:main": tuesday}
    assert [j for j in catch_ups(jobs, ran, tuesday + dt.timedelta(minutes=5), 7) if j.repository == "main"] == []


def test_a_quarter_without_a_restore_test_triggers_one():
    jobs = [j for j in planned_jobs(config()) if j.job_id == "restore-test:main"]
    # Scheduled on 2 October; the server was off then and for weeks: caught up within the quarter.
    november = dt.datetime(2026, 11, 23, 9, tzinfo=PARIS)
    assert [j.job_id for j in catch_ups(jobs, {}, november, 7)] == ["restore-test:main"]
    tested = {"restore-test:main": dt.datetime(2026, 10, 5, 10, tzinfo=PARIS)}
    assert catch_ups(jobs, tested, november, 7) == []
    # Not before the quarter's date, whatever happened before.
    september = dt.datetime(2026, 9, 20, 9, tzinfo=PARIS)
    assert [j.job_id for j in catch_ups(jobs, {"restore-test:main": dt.datetime(2026, 7, 2, 5, tzinfo=PARIS)},
                                        september, 7)] == []

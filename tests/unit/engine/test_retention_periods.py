"""The calendar periods that reports show (agent.engine.retention.calendar_periods) and the
names of the periods a decision gives as its reasons: the same calendar as the policy's,
in the policy's time zone."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from agent.engine.retention import RetentionPolicy, apply_policy, calendar_periods

from .test_retention import snaps

# UTC+14: New Year there while it is still midday of 31 December in UTC (and on this machine).
KIRITIMATI = ZoneInfo("Pacific/Kiritimati")
NOW = dt.datetime(2026, 12, 31, 12, tzinfo=dt.timezone.utc)  # 2027-01-01 02:00 in Kiritimati


def at(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=KIRITIMATI)


def test_weeks_are_iso_weeks_named_year_w_number_from_monday_to_monday():
    assert calendar_periods("week", NOW, 3, KIRITIMATI) == [
        ("2026-W51", at(2026, 12, 14), at(2026, 12, 21)),
        ("2026-W52", at(2026, 12, 21), at(2026, 12, 28)),
        ("2026-W53", at(2026, 12, 28), at(2027, 1, 4)),  # 1 January 2027 is in 2026's last ISO week
    ]


def test_months_and_years_end_with_the_one_under_way_in_the_zone_asked():
    assert calendar_periods("month", NOW, 2, KIRITIMATI) == [
        ("2026-12", at(2026, 12, 1), at(2027, 1, 1)),
        ("2027-01", at(2027, 1, 1), at(2027, 2, 1)),
    ]
    assert calendar_periods("year", NOW, 2, KIRITIMATI) == [
        ("2026", at(2026, 1, 1), at(2027, 1, 1)),
        ("2027", at(2027, 1, 1), at(2028, 1, 1)),
    ]


def test_a_daily_tier_gives_the_day_it_keeps_a_snapshot_for():
    paris = ZoneInfo("Europe/Paris")
    times = [dt.datetime(2026, 11, 20, 23, tzinfo=paris), dt.datetime(2026, 11, 21, 9, tzinfo=paris)]
    decisions = apply_policy(snaps(*times), RetentionPolicy(daily=7, weekly=0, monthly=0, yearly=0),
                             now=dt.datetime(2026, 11, 23, 9, tzinfo=paris))
    assert [d.reasons for d in decisions] == [("newest of day 2026-11-20",),
                                              ("newest snapshot", "newest of day 2026-11-21")]


def test_a_period_is_over_from_the_first_instant_of_the_next():
    """At midnight starting Monday 23 November, week 47 is over: its newest snapshot is settled."""
    paris = ZoneInfo("Europe/Paris")
    friday = dt.datetime(2026, 11, 20, 20, tzinfo=paris)
    monday = dt.datetime(2026, 11, 23, tzinfo=paris)
    policy = RetentionPolicy(weekly=4, monthly=0, yearly=0)
    [decision] = apply_policy(snaps(friday), policy, now=monday)
    assert decision.settled_until == dt.datetime(2026, 12, 14, tzinfo=paris)
    [decision] = apply_policy(snaps(friday), policy, now=monday - dt.timedelta(microseconds=1))
    assert decision.settled_until is None  # still week 47: a later backup may yet replace it


def test_of_two_snapshots_at_the_same_time_one_without_an_id_counts_as_the_older():
    paris = ZoneInfo("Europe/Paris")
    same = dt.datetime(2026, 11, 20, 20, tzinfo=paris)
    first, second = snaps(same, same)
    first.id = None  # a snapshot being written has no id yet
    second.id = b"\x01" * 16
    decisions = apply_policy([first, second], RetentionPolicy(weekly=0, monthly=0, yearly=0),
                             now=dt.datetime(2026, 11, 23, tzinfo=paris))
    assert [d.reasons for d in decisions] == [("not the newest snapshot of any period still inside a retention "
                                               "window",), ("newest snapshot",)]


def test_now_without_a_time_zone_is_refused():
    with pytest.raises(ValueError, match="^now must be timezone-aware$"):
        apply_policy([], RetentionPolicy(), now=dt.datetime(2026, 11, 23, 9))

"""agent.engine.retention: calendar-window retention, golden cases and properties."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.engine.retention import RetentionPolicy, apply_policy

PARIS = ZoneInfo("Europe/Paris")
UTC = dt.timezone.utc


@dataclass
class Snap:
    time: dt.datetime
    id: bytes
    host: str = "cabinet"
    paths: list[str] = field(default_factory=lambda: ["/srv/cabinet"])
    tags: list[str] = field(default_factory=list)


def snaps(*times: dt.datetime, **extra) -> list[Snap]:
    return [Snap(t, i.to_bytes(16, "big"), **extra) for i, t in enumerate(times)]


def paris(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=PARIS)


def kept(decisions) -> list[dt.datetime]:
    return sorted(d.time for d in decisions if d.keep)


def by_time(decisions) -> dict[dt.datetime, object]:
    return {d.time: d for d in decisions}


MEMENTO = RetentionPolicy(weekly=4, monthly=12, yearly=3)


# ---- golden cases -------------------------------------------------------------------


def test_weekly_backups_over_two_years_keep_4_weeks_12_months_and_the_years():
    # Every Friday at 20:00 from 2024-11-01 to 2026-11-20; now is Monday 2026-11-23.
    fridays = [paris(2024, 11, 1, 20) + dt.timedelta(weeks=w) for w in range(108)]
    now = paris(2026, 11, 23, 9)
    decisions = apply_policy(snaps(*fridays), MEMENTO, now=now)
    keep = kept(decisions)
    # The last 4 ISO weeks: 2026-W48 (this week, no backup yet), W47, W46, W45.
    weekly = [paris(2026, 11, 20, 20), paris(2026, 11, 13, 20), paris(2026, 11, 6, 20)]
    # The newest of each of the last 12 months: 2025-12 .. 2026-11.
    monthly = [paris(2025, 12, 26, 20), paris(2026, 1, 30, 20), paris(2026, 2, 27, 20), paris(2026, 3, 27, 20),
               paris(2026, 4, 24, 20), paris(2026, 5, 29, 20), paris(2026, 6, 26, 20), paris(2026, 7, 31, 20),
               paris(2026, 8, 28, 20), paris(2026, 9, 25, 20), paris(2026, 10, 30, 20), paris(2026, 11, 20, 20)]
    yearly = [paris(2024, 12, 27, 20), paris(2025, 12, 26, 20), paris(2026, 11, 20, 20)]
    assert keep == sorted(set(weekly + monthly + yearly))
    newest = by_time(decisions)[paris(2026, 11, 20, 20)]
    assert newest.reasons == ("newest snapshot", "newest of ISO week 2026-W47", "newest of month 2026-11",
                              "newest of year 2026")
    # It leaves the last window (the yearly one, 3 years) on 2029-01-01.
    assert newest.keep_until == paris(2029, 1, 1)
    forgotten = by_time(decisions)[paris(2026, 10, 23, 20)]
    assert not forgotten.keep and forgotten.keep_until is None


def test_the_worked_example_of_the_readme():
    fridays = [paris(2025, 1, 3, 20) + dt.timedelta(weeks=w) for w in range(100)]
    monday = paris(2026, 11, 23, 9)
    decisions = apply_policy(snaps(*(t for t in fridays if t <= monday)), RetentionPolicy(), now=monday)
    keep = kept(decisions)
    assert len(keep) == 14
    assert keep[:2] == [paris(2025, 12, 26, 20), paris(2026, 1, 30, 20)]
    assert keep[-4:] == [paris(2026, 10, 30, 20), paris(2026, 11, 6, 20), paris(2026, 11, 13, 20),
                         paris(2026, 11, 20, 20)]
    assert not any(d.keep for d in decisions if d.time in (paris(2026, 10, 9, 20), paris(2026, 10, 16, 20),
                                                           paris(2026, 10, 23, 20)))
    tuesday = paris(2026, 12, 1, 9)
    later = by_time(apply_policy(snaps(*(t for t in fridays if t <= tuesday)), RetentionPolicy(), now=tuesday))
    assert not later[paris(2026, 11, 6, 20)].keep
    assert "newest of month 2026-11" in later[paris(2026, 11, 27, 20)].reasons
    assert later[paris(2026, 11, 20, 20)].reasons == ("newest of ISO week 2026-W47",)
    assert later[paris(2026, 11, 20, 20)].keep_until == paris(2026, 12, 14)
    assert later[paris(2025, 12, 26, 20)].reasons == ("newest of year 2025",)
    assert later[paris(2025, 12, 26, 20)].keep_until == paris(2045, 1, 1)


def test_keep_until_follows_the_tier():
    now = paris(2026, 11, 23, 9)
    policy = RetentionPolicy(weekly=4, monthly=12, yearly=0)
    decisions = by_time(apply_policy(snaps(paris(2026, 11, 13, 20), paris(2026, 11, 20, 20),
                                           paris(2026, 10, 30, 20)), policy, now=now))
    # A weekly-only keeper (not its month's newest): until its week leaves the 4-week window.
    assert decisions[paris(2026, 11, 13, 20)].reasons == ("newest of ISO week 2026-W46",)
    assert decisions[paris(2026, 11, 13, 20)].keep_until == paris(2026, 12, 7)
    # The month's keeper: until its month leaves the 12-month window.
    assert decisions[paris(2026, 10, 30, 20)].keep_until == paris(2027, 10, 1)


def test_iso_week_53_and_the_year_boundary():
    # 2026 has 53 ISO weeks: Mon 2026-12-28 .. Sun 2027-01-03 is 2026-W53.
    times = [paris(2026, 12, 29, 20), paris(2027, 1, 2, 20), paris(2027, 1, 4, 20)]
    decisions = by_time(apply_policy(snaps(*times), RetentionPolicy(weekly=4, monthly=0, yearly=0),
                                     now=paris(2027, 1, 5, 12)))
    assert not decisions[paris(2026, 12, 29, 20)].keep  # same ISO week as 2027-01-02, older
    assert decisions[paris(2027, 1, 2, 20)].reasons == ("newest of ISO week 2026-W53",)
    assert decisions[paris(2027, 1, 4, 20)].reasons == ("newest snapshot", "newest of ISO week 2027-W01")
    # With months and years, 2026-12-29 is December's and 2026's keeper.
    decisions = by_time(apply_policy(snaps(*times), RetentionPolicy(weekly=0, monthly=2, yearly=2),
                                     now=paris(2027, 1, 5, 12)))
    assert decisions[paris(2026, 12, 29, 20)].reasons == ("newest of month 2026-12", "newest of year 2026")
    assert not decisions[paris(2027, 1, 2, 20)].keep


def test_missed_weeks_do_not_stretch_the_window():
    # Backups stopped for 3 weeks: only one of the last 4 ISO weeks has a backup, and
    # older weeks are not pulled in to make up the count (restic's --keep-weekly 4 would).
    times = [paris(2026, 10, 2, 20), paris(2026, 10, 9, 20), paris(2026, 10, 16, 20), paris(2026, 11, 20, 20)]
    decisions = by_time(apply_policy(snaps(*times), RetentionPolicy(weekly=4, monthly=0, yearly=0),
                                     now=paris(2026, 11, 23, 9)))
    assert [t for t, d in decisions.items() if d.keep] == [paris(2026, 11, 20, 20)]


def test_planted_snapshots_cannot_push_real_ones_out():
    real = [paris(2026, 11, 6, 20), paris(2026, 11, 13, 20), paris(2026, 11, 20, 20)]
    # Many extra snapshots dated in the future (a wrong clock or an attacker).
    planted = [paris(2027, 1, 1) + dt.timedelta(days=d) for d in range(100)]
    decisions = by_time(apply_policy(snaps(*real, *planted), RetentionPolicy(weekly=4, monthly=0, yearly=0),
                                     now=paris(2026, 11, 23, 9)))
    assert all(decisions[t].keep for t in real)
    assert decisions[paris(2026, 11, 20, 20)].reasons[0] == "newest snapshot"
    assert all(decisions[t].keep and "dated after" in decisions[t].reasons[0] for t in planted)


def test_several_snapshots_a_day_keep_the_newest_of_the_day():
    times = [paris(2026, 11, 20, h) for h in (8, 12, 18, 23)] + [paris(2026, 11, 21, 9)]
    decisions = by_time(apply_policy(snaps(*times), RetentionPolicy(daily=7, weekly=0, monthly=0, yearly=0),
                                     now=paris(2026, 11, 23, 9)))
    assert [t for t, d in decisions.items() if d.keep] == [paris(2026, 11, 20, 23), paris(2026, 11, 21, 9)]
    assert decisions[paris(2026, 11, 20, 23)].keep_until == paris(2026, 11, 27)


def test_periods_are_in_the_policy_time_zone():
    # 00:30 on 1 December in Paris is still 30 November in UTC.
    first_of_december = paris(2026, 12, 1, 0, 30)
    late_november = paris(2026, 11, 30, 20)
    now = paris(2026, 12, 2, 9)
    paris_policy = RetentionPolicy(weekly=0, monthly=12, yearly=0)
    decisions = by_time(apply_policy(snaps(late_november, first_of_december), paris_policy, now=now))
    assert decisions[late_november].reasons == ("newest of month 2026-11",)
    utc_policy = RetentionPolicy(weekly=0, monthly=12, yearly=0, timezone="UTC")
    decisions = by_time(apply_policy(snaps(late_november, first_of_december), utc_policy, now=now))
    assert not decisions[late_november].keep  # both in November in UTC


def test_the_newest_is_kept_even_outside_every_window():
    old = [paris(2020, 1, 3), paris(2020, 1, 10)]
    decisions = by_time(apply_policy(snaps(*old), RetentionPolicy(weekly=4, monthly=12, yearly=0),
                                     now=paris(2026, 11, 23)))
    assert decisions[paris(2020, 1, 10)].reasons == ("newest snapshot",)
    assert decisions[paris(2020, 1, 10)].keep_until is None
    assert not decisions[paris(2020, 1, 3)].keep


def test_keep_tags_and_hosts():
    times = [paris(2026, 11, 18, 10), paris(2026, 11, 19, 10), paris(2026, 11, 20, 10)]
    group = snaps(*times)
    group[0].tags = ["archive-2025"]
    other_host = snaps(paris(2026, 11, 17, 10), host="secretariat")
    policy = RetentionPolicy(weekly=4, monthly=0, yearly=0, keep_tags=("archive-2025",))
    decisions = apply_policy(group + other_host, policy, now=paris(2026, 11, 23))
    by = {(d.time): d for d in decisions}
    assert by[times[0]].keep and by[times[0]].reasons == ("tagged archive-2025: always kept",)
    assert not by[times[1]].keep
    assert by[paris(2026, 11, 17, 10)].reasons[0] == "newest snapshot"  # its own host's calendar


def test_the_newest_copy_before_an_installation_is_kept_until_a_newer_one():
    """Rule S5 judges the last package change against the newest snapshot tagged
    avant-installation: prune keeps it without any keep_tags, and only it."""
    times = [paris(2026, 11, 16, 9), paris(2026, 11, 18, 9), paris(2026, 11, 18, 10), paris(2026, 11, 20, 10)]
    group = snaps(*times)
    group[0].tags = group[1].tags = ["avant-installation"]
    policy = RetentionPolicy(weekly=4, monthly=0, yearly=0)
    by = by_time(apply_policy(group, policy, now=paris(2026, 11, 23)))
    assert by[times[1]].keep and by[times[1]].reasons == ("newest snapshot tagged avant-installation (rule S5)",)
    assert by[times[1]].keep_until is None  # as long as it is the newest copy
    assert not by[times[0]].keep  # an older copy: replaced
    assert not by[times[2]].keep and by[times[3]].keep  # the week's newest is the 20th
    assert [d.time for d in by.values() if d.keep] == [times[1], times[3]]


def test_equal_times_are_broken_by_id_whatever_the_order():
    moment = paris(2026, 11, 20, 20)
    pair = snaps(moment, moment)
    policy = RetentionPolicy(weekly=1, monthly=0, yearly=0)
    first = [d.snapshot_id for d in apply_policy(pair, policy, now=paris(2026, 11, 21)) if d.keep]
    second = [d.snapshot_id for d in apply_policy(pair[::-1], policy, now=paris(2026, 11, 21)) if d.keep]
    assert first == second == [pair[1].id]


@pytest.mark.parametrize("bad", [{"weekly": -1}, {"monthly": 1.5}, {"yearly": True}, {"timezone": "Mars/Olympus"},
                                 {"timezone": "../../etc/passwd"}, {"timezone": ""}])
def test_impossible_policies_are_refused(bad):
    with pytest.raises(ValueError, match="whole number|not a known time zone"):
        RetentionPolicy(**bad)


def test_now_must_be_aware():
    with pytest.raises(ValueError):
        apply_policy([], MEMENTO, now=dt.datetime(2026, 1, 1))


# ---- properties -----------------------------------------------------------------------

START = dt.datetime(2022, 1, 1, tzinfo=UTC)
NOW = dt.datetime(2026, 11, 23, 9, tzinfo=UTC)
minutes = st.integers(min_value=0, max_value=int((NOW - START).total_seconds() // 60))
policies = st.builds(RetentionPolicy, daily=st.integers(0, 10), weekly=st.integers(0, 8),
                     monthly=st.integers(0, 24), yearly=st.integers(0, 6),
                     timezone=st.sampled_from(["Europe/Paris", "UTC", "America/New_York", "Pacific/Kiritimati"]))
histories = st.lists(minutes, min_size=1, max_size=60, unique=True).map(
    lambda offsets: snaps(*(START + dt.timedelta(minutes=m) for m in offsets)))
PROPERTY = settings(max_examples=150, deadline=None)


@PROPERTY
@given(history=histories, policy=policies)
def test_idempotent(history, policy):
    decisions = apply_policy(history, policy, now=NOW)
    survivors = [s for s, d in zip(history, decisions, strict=True) if d.keep]
    again = apply_policy(survivors, policy, now=NOW)
    assert all(d.keep for d in again)
    assert [d.reasons for d in again] == [d.reasons for d in decisions if d.keep]


@PROPERTY
@given(history=histories, policy=policies)
def test_never_forgets_the_newest(history, policy):
    decisions = apply_policy(history, policy, now=NOW)
    newest = max(history, key=lambda s: (s.time, s.id))
    assert next(d for d in decisions if d.snapshot_id == newest.id).keep


@PROPERTY
@given(history=histories, policy=policies)
def test_keeps_exactly_the_newest_of_each_period_inside_a_window(history, policy):
    zone = ZoneInfo(policy.timezone)
    local_now = NOW.astimezone(zone)
    decisions = {d.snapshot_id: d for d in apply_policy(history, policy, now=NOW)}

    def months(t):
        return t.year * 12 + t.month

    tiers = [
        (policy.daily, lambda t: t.date(), lambda t: (local_now.date() - t.date()).days),
        (policy.weekly, lambda t: t.date() - dt.timedelta(days=t.weekday()),
         lambda t: ((local_now.date() - dt.timedelta(days=local_now.weekday()))
                    - (t.date() - dt.timedelta(days=t.weekday()))).days // 7),
        (policy.monthly, lambda t: (t.year, t.month), lambda t: months(local_now) - months(t)),
        (policy.yearly, lambda t: t.year, lambda t: local_now.year - t.year),
    ]
    expected = {max(history, key=lambda s: (s.time, s.id)).id}
    for count, period, age in tiers:
        newest_of: dict = {}
        for snapshot in sorted(history, key=lambda s: (s.time, s.id)):
            local = snapshot.time.astimezone(zone)
            if age(local) < count:
                newest_of[period(local)] = snapshot
        for snapshot in newest_of.values():
            assert decisions[snapshot.id].keep
            assert decisions[snapshot.id].keep_until is not None
        expected |= {s.id for s in newest_of.values()}
    # ... and nothing else: the windows are exactly as long as the policy says.
    assert {i for i, d in decisions.items() if d.keep} == expected


@PROPERTY
@given(history=histories, policy=policies, later=st.lists(st.integers(1, 60 * 24 * 400), min_size=1, max_size=5))
def test_a_newer_snapshot_never_resurrects_a_forgotten_one(history, policy, later):
    forgotten = {d.snapshot_id for d in apply_policy(history, policy, now=NOW) if not d.keep}
    moment = NOW
    extended = list(history)
    for i, step in enumerate(later):
        moment = moment + dt.timedelta(minutes=step)
        extended.append(Snap(moment, (10**6 + i).to_bytes(16, "big")))
        decisions = apply_policy(extended, policy, now=moment)
        assert not any(d.keep for d in decisions if d.snapshot_id in forgotten)
        forgotten |= {d.snapshot_id for d in decisions if not d.keep}


@PROPERTY
@given(history=histories, policy=policies)
def test_kept_snapshots_stay_kept_until_their_keep_until(history, policy):
    """A decision's keep_until is honest: asked again just before it, with no newer
    snapshot, the policy still keeps the snapshot."""
    for decision in apply_policy(history, policy, now=NOW):
        if decision.keep and decision.keep_until is not None:
            just_before = decision.keep_until - dt.timedelta(seconds=1)
            again = {d.snapshot_id: d for d in apply_policy(history, policy, now=max(just_before, NOW))}
            assert again[decision.snapshot_id].keep


def test_settled_until_counts_only_periods_that_are_over():
    now = paris(2026, 11, 23, 9)  # a Monday: week 47 is over, November is not
    decisions = by_time(apply_policy(snaps(paris(2026, 10, 30, 20), paris(2026, 11, 20, 20)), MEMENTO, now=now))
    newest = decisions[paris(2026, 11, 20, 20)]
    assert newest.keep_until == paris(2029, 1, 1)  # provisional: the newest of 2026 so far
    assert newest.settled_until == paris(2026, 12, 14)  # settled: the newest of week 47 (16-22 Nov)
    october = decisions[paris(2026, 10, 30, 20)]
    assert october.settled_until == october.keep_until == paris(2027, 10, 1)


@PROPERTY
@given(history=histories, policy=policies, later=st.lists(st.integers(1, 60 * 24 * 800), min_size=1, max_size=6))
def test_settled_until_holds_whatever_later_backups_do(history, policy, later):
    """Kept until settled_until even if more backups come: what object locks rely on."""
    settled = {d.snapshot_id: d.settled_until for d in apply_policy(history, policy, now=NOW)
               if d.keep and d.settled_until is not None}
    for decision in apply_policy(history, policy, now=NOW):
        if decision.settled_until is not None:
            assert decision.keep_until is not None and decision.settled_until <= decision.keep_until
    extended = list(history)
    moment = NOW
    for i, step in enumerate(later):
        moment = moment + dt.timedelta(minutes=step)
        extended.append(Snap(moment, (10**7 + i).to_bytes(16, "big")))
        for decision in apply_policy(extended, policy, now=moment):
            if decision.snapshot_id in settled and moment < settled[decision.snapshot_id]:
                assert decision.keep, (decision, settled[decision.snapshot_id])

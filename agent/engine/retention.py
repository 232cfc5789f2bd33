"""Retention: which snapshots to keep, by calendar windows (rules S1, S3, S4). Pure.

The memento asks for a weekly backup, one monthly backup kept over 12 sliding months,
and yearly backups. Counting snapshots ("keep the last 12 monthly ones", as restic's
--keep-monthly does) lets missed months stretch the window back in time, and lets a
burst of extra snapshots push real ones out. Here every tier is a window of calendar
periods ending at `now`:

* daily D:   the newest snapshot of each of the last D calendar days (today included);
* weekly W:  the newest of each of the last W ISO weeks (Monday to Sunday, this week included);
* monthly M: the newest of each of the last M calendar months (this month included);
* yearly Y:  the newest of each of the last Y calendar years (this year included).

The newest snapshot is always kept, whatever its age, and so is the newest snapshot tagged
`avant-installation` (the copy before an installation that rule S5 judges the last package
change against: it stays until a newer copy replaces it). A snapshot carrying one of the
policy's `keep_tags` is always kept. A snapshot dated after `now` (a wrong clock, or a
planted object) is kept but never counts as the newest of a period, so it cannot push
a real snapshot out. Periods are computed in the policy's time zone: a backup at
00:30 on the 1st of a month in Paris belongs to that month, although it is still the
previous month in UTC.

Snapshots are grouped by host and backed-up paths (two machines backing up into one
repository each keep their own calendar). For every snapshot the result says keep or
forget with the reasons, and, for kept ones, until when the policy will go on keeping
it (`keep_until`: when its last period leaves its window; `None` means "as long as it
is the newest" or "for ever", a keep tag). `settled_until` counts only periods that are
already over: the newest snapshot of a period still under way may yet be replaced by a
later backup of the same period, so its keep_until is provisional. Object-lock dates
follow `settled_until`, so a snapshot of this week is not locked for twenty years just
because it is, for now, the newest of the year.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any, Iterable, Protocol, Sequence
from zoneinfo import ZoneInfo

from agent.engine.installation_copy import TAG as INSTALLATION_TAG


class SnapshotLike(Protocol):
    # Read-only, so that a Snapshot, whose id is the narrower SnapshotId, is one.
    @property
    def id(self) -> bytes | None: ...

    time: _dt.datetime
    host: str
    paths: list[str]
    tags: list[str]


@dataclass(frozen=True)
class RetentionPolicy:
    daily: int = 0
    weekly: int = 4
    monthly: int = 12
    yearly: int = 20  # medical records are kept 20 years (docs/COMPLIANCE.md S4, memento 1.4.1)
    timezone: str = "Europe/Paris"
    keep_tags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for tier in ("daily", "weekly", "monthly", "yearly"):
            value = getattr(self, tier)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"retention {tier} must be a whole number >= 0, not {value!r}")
        try:
            ZoneInfo(self.timezone)
        except (KeyError, ValueError, OSError) as exc:  # ZoneInfoNotFoundError is a KeyError; a path, a ValueError
            raise ValueError(f"retention timezone {self.timezone!r} is not a known time zone") from exc

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True)
class Decision:
    snapshot_id: bytes | None
    time: _dt.datetime
    keep: bool
    reasons: tuple[str, ...]
    keep_until: _dt.datetime | None = None  # kept: when the last window lets go of it
    settled_until: _dt.datetime | None = None  # kept whatever later backups do, until then

    def as_dict(self) -> dict[str, Any]:  # a JSON document (--json), read back by the commands
        return {
            "snapshot_id": self.snapshot_id.hex() if self.snapshot_id else None,
            "time": self.time.isoformat(),
            "action": "keep" if self.keep else "forget",
            "reasons": list(self.reasons),
            "keep_until": self.keep_until.isoformat() if self.keep_until else None,
            "settled_until": self.settled_until.isoformat() if self.settled_until else None,
        }


@dataclass
class _Verdict:
    reasons: list[str] = field(default_factory=list)
    until: list[_dt.datetime] = field(default_factory=list)
    settled: list[_dt.datetime] = field(default_factory=list)
    indefinite: bool = False


def apply_policy(snapshots: Sequence[SnapshotLike], policy: RetentionPolicy, *,
                 now: _dt.datetime) -> list[Decision]:
    """One Decision per snapshot, in the order given."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    zone = policy.zone
    local_now = now.astimezone(zone)
    verdicts = {id(s): _Verdict() for s in snapshots}
    for group in _groups(snapshots):
        _decide_group(group, policy, zone, local_now, verdicts)
    decisions = []
    for snapshot in snapshots:
        verdict = verdicts[id(snapshot)]
        keep = bool(verdict.reasons)
        until = None
        if keep and not verdict.indefinite and verdict.until:
            until = max(verdict.until)
        settled = max(verdict.settled) if keep and verdict.settled else None
        reasons = tuple(verdict.reasons) if keep else ("not the newest snapshot of any period still "
                                                      "inside a retention window",)
        decisions.append(Decision(snapshot.id, snapshot.time, keep, reasons, until, settled))
    return decisions


def _groups(snapshots: Iterable[SnapshotLike]) -> list[list[SnapshotLike]]:
    groups: dict[tuple[str, tuple[str, ...]], list[SnapshotLike]] = {}
    for snapshot in snapshots:
        groups.setdefault((snapshot.host, tuple(sorted(snapshot.paths))), []).append(snapshot)
    return list(groups.values())


def _order(snapshot: SnapshotLike) -> tuple[_dt.datetime, bytes]:
    # Equal times are broken by id, so the result never depends on the input order.
    return (_aware(snapshot.time), snapshot.id or b"")


def _aware(moment: _dt.datetime) -> _dt.datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=_dt.timezone.utc)


def _decide_group(group: list[SnapshotLike], policy: RetentionPolicy, zone: ZoneInfo,
                  local_now: _dt.datetime, verdicts: dict[int, _Verdict]) -> None:
    future = [s for s in group if _aware(s.time) > local_now]
    for snapshot in future:
        verdict = verdicts[id(snapshot)]
        verdict.reasons.append("dated after the current time (clock error?): kept, not counted")
        verdict.indefinite = True
    present = sorted((s for s in group if _aware(s.time) <= local_now), key=_order)
    keep_tags = set(policy.keep_tags)
    for snapshot in group:
        tagged = sorted(keep_tags.intersection(snapshot.tags))
        if tagged:
            verdicts[id(snapshot)].reasons.append(f"tagged {', '.join(tagged)}: always kept")
            verdicts[id(snapshot)].indefinite = True
    if not present:
        return
    newest = present[-1]
    verdicts[id(newest)].reasons.append("newest snapshot")
    copies = [s for s in present if INSTALLATION_TAG in s.tags]
    if copies:  # rule S5 judges the last package change against it: never pruned before it is replaced
        verdicts[id(copies[-1])].reasons.append(f"newest snapshot tagged {INSTALLATION_TAG} (rule S5)")
    tiers = [
        (policy.daily, _day, "day"),
        (policy.weekly, _week, "ISO week"),
        (policy.monthly, _month, "month"),
        (policy.yearly, _year, "year"),
    ]
    for count, period_of, label in tiers:
        if count == 0:
            continue
        current = period_of(local_now)
        oldest = current.shifted(-(count - 1))
        keepers: dict[_Period, SnapshotLike] = {}
        for snapshot in present:  # oldest first: the last one seen in a period is its newest
            period = period_of(_aware(snapshot.time).astimezone(zone))
            if oldest.start <= period.start <= current.start:
                keepers[period] = snapshot
        for period, snapshot in keepers.items():
            verdict = verdicts[id(snapshot)]
            verdict.reasons.append(f"newest of {label} {period.name}")
            verdict.until.append(period.shifted(count).start)
            if period.shifted(1).start <= local_now:  # the period is over: no later backup can replace it
                verdict.settled.append(period.shifted(count).start)
    for kept in {id(newest): newest, **({id(copies[-1]): copies[-1]} if copies else {})}.values():
        verdict = verdicts[id(kept)]
        if not verdict.until and all(r.startswith(("newest snapshot", "tagged ")) for r in verdict.reasons):
            verdict.indefinite = True  # kept only as the newest (copy): until a newer one


# ---- calendar periods in one time zone ------------------------------------------------


@dataclass(frozen=True)
class _Period:
    kind: str
    start: _dt.datetime  # local midnight at the start of the period
    name: str

    def shifted(self, periods: int) -> "_Period":
        """The period `periods` steps later (negative: earlier)."""
        zone = self.start.tzinfo
        day = self.start.date()
        if self.kind == "day":
            return _day_of(day + _dt.timedelta(days=periods), zone)
        if self.kind == "week":
            return _week_of(day + _dt.timedelta(weeks=periods), zone)
        if self.kind == "month":
            index = day.year * 12 + day.month - 1 + periods
            return _month_of(_dt.date(index // 12, index % 12 + 1, 1), zone)
        return _year_of(_dt.date(day.year + periods, 1, 1), zone)


def _midnight(day: _dt.date, zone: _dt.tzinfo | None) -> _dt.datetime:
    # A local midnight (zoneinfo resolves the rare day that starts at 01:00 itself).
    return _dt.datetime(day.year, day.month, day.day, tzinfo=zone)


def _day_of(day: _dt.date, zone: _dt.tzinfo | None) -> _Period:
    return _Period("day", _midnight(day, zone), day.isoformat())


def _week_of(day: _dt.date, zone: _dt.tzinfo | None) -> _Period:
    monday = day - _dt.timedelta(days=day.weekday())
    year, week, _weekday = monday.isocalendar()
    return _Period("week", _midnight(monday, zone), f"{year}-W{week:02d}")


def _month_of(day: _dt.date, zone: _dt.tzinfo | None) -> _Period:
    return _Period("month", _midnight(day.replace(day=1), zone), f"{day.year}-{day.month:02d}")


def _year_of(day: _dt.date, zone: _dt.tzinfo | None) -> _Period:
    return _Period("year", _midnight(_dt.date(day.year, 1, 1), zone), str(day.year))


def _day(moment: _dt.datetime) -> _Period:
    return _day_of(moment.date(), moment.tzinfo)


def _week(moment: _dt.datetime) -> _Period:
    return _week_of(moment.date(), moment.tzinfo)


def _month(moment: _dt.datetime) -> _Period:
    return _month_of(moment.date(), moment.tzinfo)


def _year(moment: _dt.datetime) -> _Period:
    return _year_of(moment.date(), moment.tzinfo)


def calendar_periods(kind: str, now: _dt.datetime, count: int,
                     zone: _dt.tzinfo) -> list[tuple[str, _dt.datetime, _dt.datetime]]:
    """The `count` calendar periods ("week", "month" or "year") ending with the one that
    contains `now`, oldest first, as (name, start, end) in `zone` ("2026-W47", "2026-11",
    "2026"). The same calendar as the policy's, for reports of what it keeps."""
    current = {"week": _week, "month": _month, "year": _year}[kind](now.astimezone(zone))
    periods = [current.shifted(-back) for back in reversed(range(count))]
    return [(p.name, p.start, p.shifted(1).start) for p in periods]


def hold_from(decisions: list[Decision], since: _dt.datetime | None, reason: str) -> list[Decision]:
    """The decisions with every snapshot taken at or after `since` kept, for `reason` (a
    ransomware alarm: the last good snapshot and everything after it stay until a person
    acknowledges). `since` None holds every snapshot. The others are unchanged."""
    held = []
    for decision in decisions:
        if not decision.keep and (since is None or _aware(decision.time) >= _aware(since)):
            decision = Decision(decision.snapshot_id, decision.time, True, (reason,), None, None)
        held.append(decision)
    return held

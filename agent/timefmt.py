"""Times shown to people: one format, in one time zone, always with the zone.

Every time printed for a person (snapshots, ls, find, status, restore messages, prune
--dry-run, reports, check, compliance, key list, audit verify...) goes through `shown()`
in the zone of `[retention] timezone` (the practice's zone, the one retention counts
days in), so a listing and `status` never disagree by an hour, and the zone is written
beside each time ("2026-12-06 18:04 CET", or "2026-12-06 15:04 -03:00" where the zone
has no letters). `recover` has no configuration: it shows the machine's own zone
(`machine_zone()`) and says so.

JSON keeps ISO 8601 with an offset (`iso()`): machines convert themselves; a time
without an offset would be ambiguous.
"""

from __future__ import annotations

import datetime as _dt
from zoneinfo import ZoneInfo

from agent import clock

Zone = _dt.tzinfo


def machine_zone() -> Zone:
    """This machine's zone as the system has it (TZ, /etc/localtime)."""
    zone = clock.now().astimezone().tzinfo  # astimezone(): the system's zone, even for a pinned clock
    return zone if zone is not None else _dt.timezone.utc


def zone_named(name: str) -> Zone:
    return ZoneInfo(name)


def _moment(value: _dt.datetime | str | int | float) -> _dt.datetime:
    """A datetime from what the repository and the records hold: a datetime, an ISO 8601
    string, or seconds since the epoch. A time without an offset is UTC (what the
    repository's formats write when they write no offset)."""
    if isinstance(value, _dt.datetime):
        moment = value
    elif isinstance(value, str):
        moment = _dt.datetime.fromisoformat(value)
    else:
        moment = _dt.datetime.fromtimestamp(value, _dt.timezone.utc)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=_dt.timezone.utc)


def zone_label(moment: _dt.datetime) -> str:
    """The zone's abbreviation (CET, CEST, UTC), else its offset (-03:00)."""
    name = moment.strftime("%Z")
    # A fixed offset (parsed from ISO 8601) is named "UTC-03:00" by Python: the offset says it.
    if name and name[0].isalpha() and not isinstance(moment.tzinfo, _dt.timezone):
        return name
    return _offset(moment)


def _offset(moment: _dt.datetime) -> str:
    offset = moment.utcoffset() or _dt.timedelta()
    sign = "-" if offset < _dt.timedelta() else "+"
    minutes = abs(int(offset.total_seconds())) // 60
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def shown(value: _dt.datetime | str | int | float | None, zone: Zone | None, *, seconds: bool = False,
          never: str = "never") -> str:
    """'2026-12-06 18:04 CET': the time in `zone` (None: in its own offset, for a time
    already converted), with the zone; `never` for None."""
    if value is None or value == "":
        return never
    try:
        moment = _moment(value)
        moment = moment.astimezone(zone) if zone is not None else moment
    except (ValueError, OverflowError, OSError):
        return str(value)  # as stored: a listing must not fail on one odd record
    return f"{moment.strftime('%Y-%m-%d %H:%M:%S' if seconds else '%Y-%m-%d %H:%M')} {zone_label(moment)}"


def day(value: _dt.datetime | _dt.date | str, zone: Zone) -> str:
    """'2026-12-06': the date in `zone` (for "kept until", week starts...)."""
    if isinstance(value, _dt.date) and not isinstance(value, _dt.datetime):
        return value.isoformat()  # already a calendar day
    return f"{_moment(value).astimezone(zone):%Y-%m-%d}"


def iso(value: _dt.datetime | str | int | float) -> str:
    """ISO 8601 with an offset, for JSON."""
    return _moment(value).isoformat()

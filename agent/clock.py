"""The only place that asks the system for the current time.

Retention, schedules and snapshot times all go through here, so tests can pin
"now" without patching the standard library.
"""

from __future__ import annotations

import datetime as _dt

_frozen: _dt.datetime | None = None


def now() -> _dt.datetime:
    """Current time, timezone-aware, in the local time zone of the host."""
    if _frozen is not None:
        return _frozen
    return _dt.datetime.now().astimezone()


def today(zone: _dt.tzinfo) -> _dt.date:
    """Today's date in `zone` (the practice's, `[retention] timezone`): the week of a disk
    rotation turns at midnight there, not at the server's or UTC's midnight."""
    return now().astimezone(zone).date()


def freeze(moment: _dt.datetime | None) -> None:
    """Pin (or, with None, release) the clock. For tests and `--time`."""
    global _frozen
    if moment is not None and moment.tzinfo is None:
        raise ValueError("frozen time must be timezone-aware")
    _frozen = moment


def parse_iso(text: str) -> _dt.datetime:
    """Parse an ISO 8601 time; a naive time is taken in the local time zone."""
    moment = _dt.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return moment

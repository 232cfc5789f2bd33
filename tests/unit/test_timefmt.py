"""The one format of times shown to people (agent/timefmt.py)."""

from __future__ import annotations

import datetime as dt

from agent import timefmt

MOMENT = dt.datetime(2026, 12, 6, 17, 4, 30, tzinfo=dt.timezone.utc)


def test_a_time_is_shown_in_the_given_zone_with_its_name_or_offset() -> None:
    assert timefmt.shown(MOMENT, timefmt.zone_named("Europe/Paris")) == "2026-12-06 18:04 CET"
    assert timefmt.shown(MOMENT, timefmt.zone_named("America/Cayenne")) == "2026-12-06 14:04 -03:00"
    assert timefmt.shown(MOMENT.isoformat(), timefmt.zone_named("Pacific/Tahiti"), seconds=True) == \
        "2026-12-06 07:04:30 -10:00"
    summer = dt.datetime(2026, 7, 1, 12, 0, tzinfo=dt.timezone.utc)
    assert timefmt.shown(summer, timefmt.zone_named("Europe/Paris")) == "2026-07-01 14:00 CEST"


def test_naive_and_epoch_values_are_utc_and_missing_ones_say_never() -> None:
    assert timefmt.shown("2026-12-06T17:04:00", timefmt.zone_named("Europe/Paris")) == "2026-12-06 18:04 CET"
    assert timefmt.shown(MOMENT.timestamp(), timefmt.zone_named("Europe/Paris")) == "2026-12-06 18:04 CET"
    assert timefmt.shown(None, timefmt.zone_named("Europe/Paris")) == "never"
    assert timefmt.shown("not a time", timefmt.zone_named("Europe/Paris")) == "not a time"


def test_an_iso_time_keeps_its_own_offset_when_no_zone_is_given() -> None:
    text = timefmt.iso(MOMENT.astimezone(timefmt.zone_named("America/Cayenne")))
    assert text == "2026-12-06T14:04:30-03:00"
    assert timefmt.shown(text, None) == "2026-12-06 14:04 -03:00"
    assert timefmt.day(MOMENT, timefmt.zone_named("Pacific/Kiritimati")) == "2026-12-07"

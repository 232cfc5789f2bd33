"""agent.engine.records: the state records and the obligations `status` reports."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from agent.engine.records import Event, Records, obligations_at_risk

PARIS = ZoneInfo("Europe/Paris")
NOW = dt.datetime(2026, 11, 23, 9, tzinfo=PARIS)


def event(days_ago: float, **detail) -> Event:
    return Event(NOW - dt.timedelta(days=days_ago), detail)


def risks(**events) -> list[str]:
    defaults = {"last_backup": event(3), "last_check": event(3, ok=True), "last_restore_test": event(30, ok=True)}
    return obligations_at_risk(now=NOW, zone=PARIS, **{**defaults, **events})


def test_nothing_at_risk_when_everything_is_recent():
    assert risks() == []


def test_each_obligation():
    assert risks(last_backup=None) == ["no backup has been made yet (rule S1: at least weekly)"]
    assert risks(last_backup=event(9))[0] == "no backup for 9 days (rule S1: at least weekly)"
    assert risks(last_backup=event(7.9)) == []
    assert risks(last_check=event(1, ok=False)) == ["the last check, on 2026-11-22, found damage"]
    assert risks(last_restore_test=None) == ["no restore test has been made (rule S7: at least quarterly)"]
    assert risks(last_restore_test=event(93, ok=True)) == ["no restore test for 93 days (rule S7: quarterly)"]
    assert risks(last_restore_test=event(10, ok=False)) == ["the last restore test failed"]


def test_the_monthly_snapshot_is_at_risk_only_after_the_first_week_of_a_month():
    november_3 = dt.datetime(2026, 11, 3, 9, tzinfo=PARIS)
    october_30 = Event(dt.datetime(2026, 10, 30, 20, tzinfo=PARIS), {})
    kwargs = {"last_check": None, "last_restore_test": Event(november_3, {"ok": True}), "zone": PARIS}
    assert obligations_at_risk(now=november_3, last_backup=october_30, **kwargs) == []
    november_9 = dt.datetime(2026, 11, 9, 9, tzinfo=PARIS)
    found = obligations_at_risk(now=november_9, last_backup=october_30, **kwargs)
    assert found == ["no backup for 9 days (rule S1: at least weekly)",
                     "no backup yet in November 2026: no monthly snapshot (rule S3)"]


def test_records_round_trip_and_survive_damage(tmp_path):
    records = Records(str(tmp_path), "main")
    assert records.last("backup") is None
    records.note("backup", NOW, snapshot="ab", partial=False)
    records.note("check", NOW, ok=True)
    assert records.last("backup").time == NOW and records.last("backup").detail["snapshot"] == "ab"
    assert records.last("check").detail["ok"] is True
    (tmp_path / "records" / "main.json").write_text("{broken")
    assert records.last("backup") is None  # reported as a risk, never a crash

"""agent.state.records: the state records and the obligations `status` reports."""

from __future__ import annotations

import datetime as dt
import multiprocessing
from typing import Any
from zoneinfo import ZoneInfo

from agent.state.records import Event, Records, obligations_at_risk
from agent.reports import i18n

PARIS = ZoneInfo("Europe/Paris")
NOW = dt.datetime(2026, 11, 23, 9, tzinfo=PARIS)


def event(days_ago: float, **detail) -> Event:
    return Event(NOW - dt.timedelta(days=days_ago), detail)


def worded(found, language: str = "en") -> list[str]:
    return [i18n.risk_text(r.code, r.params, language) for r in found]


def risks(language: str = "en", **events) -> list[str]:
    defaults = {"last_backup": event(3), "last_check": event(3, ok=True), "last_restore_test": event(30, ok=True)}
    return worded(obligations_at_risk(now=NOW, zone=PARIS, **{**defaults, **events}), language)


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
    found = worded(obligations_at_risk(now=november_9, last_backup=october_30, **kwargs))
    assert found == ["no backup for 9 days (rule S1: at least weekly)",
                     "no backup yet in November 2026: no monthly snapshot (rule S3)"]


def test_each_risk_is_worded_in_french_for_a_french_practice():
    november_9 = dt.datetime(2026, 11, 9, 9, tzinfo=PARIS)
    october_30 = Event(dt.datetime(2026, 10, 30, 20, tzinfo=PARIS), {})
    damaged = Event(november_9, {"ok": False})
    found = worded(obligations_at_risk(now=november_9, last_backup=october_30, last_check=damaged,
                                       last_restore_test=None, zone=PARIS), "fr")
    assert found == ["aucune sauvegarde depuis 9 jours (règle S1 : au moins chaque semaine)",
                     "pas encore de sauvegarde en novembre 2026 : pas de sauvegarde mensuelle (règle S3)",
                     "la dernière vérification, le 2026-11-09, a trouvé des dommages",
                     "aucun test de restauration n'a été fait (règle S7 : au moins chaque trimestre)"]
    assert risks("fr", last_restore_test=event(10, ok=False)) == ["le dernier test de restauration a échoué"]


def test_both_languages_have_the_same_words():
    for catalogue in (i18n.RISKS, i18n.RISK_ALERT, i18n.EVIDENCE, i18n.MONTH_NAMES, i18n.RULE_TITLES):
        english, french = catalogue["en"], catalogue["fr"]
        assert (set(english) == set(french)) if isinstance(english, dict) else len(english) == len(french)


def test_records_round_trip_and_survive_damage(tmp_path):
    records = Records(str(tmp_path), "main")
    assert records.last("backup") is None
    records.note("backup", NOW, snapshot="ab", partial=False)
    records.note("check", NOW, ok=True)
    assert records.last("backup").time == NOW and records.last("backup").detail["snapshot"] == "ab"
    assert records.last("check").detail["ok"] is True
    (tmp_path / "records" / "main.json").write_text("{broken")
    assert records.last("backup") is None  # reported as a risk, never a crash


def _note_many(state_dir: str, prefix: str, count: int, start: Any) -> None:
    start.wait()
    records = Records(state_dir, "main")
    for number in range(count):
        records.note(f"{prefix}{number}", dt.datetime(2026, 12, 7, tzinfo=dt.timezone.utc), n=number)


def test_writers_at_once_lose_no_update(tmp_path) -> None:
    """The inventory, the alarm, an acknowledgement and the apt hook's command note their own
    kinds, maybe at the same moment, in separate processes: each note survives the others."""
    context = multiprocessing.get_context("fork")
    start = context.Event()
    writers = [context.Process(target=_note_many, args=(str(tmp_path), prefix, 150, start)) for prefix in "abc"]
    for writer in writers:
        writer.start()
    start.set()
    for writer in writers:
        writer.join(timeout=120)
        assert writer.exitcode == 0
    doc = Records(str(tmp_path), "main").load()
    missing = [f"{p}{n}" for p in "abc" for n in range(150) if f"{p}{n}" not in doc]
    assert missing == [], f"{len(missing)} notes lost"
    Records(str(tmp_path), "main").note_damage(b"\x01" * 8, dt.datetime(2026, 12, 7, tzinfo=dt.timezone.utc),
                                               read_data=False, problems=["x"])
    assert Records(str(tmp_path), "main").damage(b"\x01" * 8) is not None and "a0" in Records(str(tmp_path),
                                                                                           "main").load()

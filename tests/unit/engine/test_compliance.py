"""agent.engine.compliance: the judgement of each assessable rule from gathered facts."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from agent.engine.compliance import FAIL, OK, WARN, RepositoryFacts, assess
from agent.state.records import Event, obligations_at_risk
from agent.reports.i18n import row_dict

PARIS = ZoneInfo("Europe/Paris")
NOW = dt.datetime(2026, 11, 23, 9, tzinfo=PARIS)


def fridays(weeks: int) -> list[tuple[str, dt.datetime]]:
    last = dt.datetime(2026, 11, 20, 20, tzinfo=PARIS)
    return [(f"{w:032x}", last - dt.timedelta(weeks=w)) for w in reversed(range(weeks))]


def table(repositories, **kwargs) -> dict[str, tuple[str, list[str]]]:
    defaults = dict(now=NOW, zone=PARIS, yearly=20, audit={"intact": True, "records": 10, "first": "2026-06-01"},
                    recovery_sheet=NOW - dt.timedelta(days=100))
    rows = [row_dict(row) for row in assess(repositories, **{**defaults, **kwargs})]  # worded in English
    return {row["rule"]: (row["status"], row["evidence"]) for row in rows}


def a_practice() -> list[RepositoryFacts]:
    main = RepositoryFacts("main", "s3", object_lock="compliance", cipher="xchacha20-poly1305",
                           snapshots=fridays(60), created=NOW - dt.timedelta(weeks=61),
                           last_restore_test=(NOW - dt.timedelta(days=40), True))
    disks = RepositoryFacts("disques", "disks", cipher="aes-256-gcm", snapshots=fridays(4),
                            created=NOW - dt.timedelta(weeks=5), disks_used_last_4_weeks=4,
                            last_restore_test=(NOW - dt.timedelta(days=20), True))
    return [main, disks]


def test_a_well_run_practice_is_ok_everywhere():
    rows = table(a_practice())
    assert {rule: status for rule, (status, _e) in rows.items()} == {
        "S1": OK, "S2": OK, "S3": OK, "S4": OK, "S6": OK, "S7": OK, "S8": OK, "C1-C4": OK, "K1": OK, "T2": OK,
        "R1": OK}
    assert "latest snapshot" in rows["S1"][1][0] and "2026-11-20" in rows["S1"][1][0]
    assert rows["S8"][1] == ["main: object lock compliance"]


def test_each_failure_and_warning():
    practice = a_practice()
    practice[0].snapshots = [s for s in practice[0].snapshots if s[1].month != 8 or s[1].year != 2026]
    practice[1].snapshots = [s for s in practice[1].snapshots if s[1].month != 8]
    practice[0].last_restore_test = (NOW - dt.timedelta(days=100), True)
    practice[0].object_lock = "none"
    practice[1].disks_used_last_4_weeks = 1
    rows = table(practice, recovery_sheet=None, audit={"intact": False, "records": "?"})
    assert rows["S3"][0] == WARN and rows["S3"][1][-1] == "months without: 2026-08"
    assert rows["S7"][0] == FAIL and rows["S8"][0] == WARN and rows["S2"][0] == WARN
    assert rows["K1"][0] == FAIL and rows["T2"][0] == FAIL
    stale = a_practice()
    for repo in stale:
        repo.snapshots = [s for s in repo.snapshots if s[1] < NOW - dt.timedelta(days=9)]
    assert table(stale)["S1"][0] == FAIL


def test_months_before_the_repository_existed_are_not_missing_and_unreadable_is_a_warning():
    young = a_practice()
    young[0].snapshots, young[0].created = fridays(3), NOW - dt.timedelta(weeks=3)
    young[1].unavailable = "no backup disk is mounted"
    rows = table(young)
    assert rows["S3"][0] == OK and rows["S3"][1] == ["months with a snapshot: 2026-11"]
    assert rows["C1-C4"][0] == WARN and any("not readable now" in e for e in rows["C1-C4"][1])
    assert table([young[0]])["S6"][0] == WARN  # one place only


def test_compliance_and_status_agree_on_restore_tests_per_repository():
    """One verdict per repository (records.restore_test_risk): S7 is met only when `status`
    finds no restore-test risk on any repository (before, one tested repository made S7 OK
    while `status` reported the other at risk)."""
    cases = {"none": None, "recent": (NOW - dt.timedelta(days=20), True),
             "failed": (NOW - dt.timedelta(days=20), False), "old": (NOW - dt.timedelta(days=100), True)}
    for name_a, test_a in cases.items():
        for name_b, test_b in cases.items():
            practice = a_practice()
            practice[0].last_restore_test, practice[1].last_restore_test = test_a, test_b
            status_risks = [obligations_at_risk(now=NOW, zone=PARIS, last_backup=Event(NOW, {}), last_check=None,
                                                last_restore_test=None if t is None else Event(t[0], {"ok": t[1]}))
                            for t in (test_a, test_b)]
            s7_status, evidence = table(practice)["S7"]
            assert (s7_status == OK) == (status_risks == [[], []]), (name_a, name_b)
    practice = a_practice()
    practice[1].last_restore_test = None
    s7_status, evidence = table(practice)["S7"]
    assert s7_status == FAIL and evidence == ["main: 2026-10-14 passed", "disques: no restore test recorded"]
    practice[1].last_restore_test = (NOW - dt.timedelta(days=100), True)
    assert table(practice)["S7"][1][1] == "disques: 2026-08-15, more than a quarter ago"


def test_an_open_ransomware_alarm_fails_r1_with_the_diff_command():
    practice = a_practice()
    practice[1].alarm = ("c" * 32, "b" * 32)
    status, evidence = table(practice)["R1"]
    assert status == FAIL
    assert evidence == ["disques: snapshot cccccccc marked SUSPECT (last good bbbbbbbb); see what changed: "
                        "backupctl diff bbbbbbbb cccccccc; then backupctl acknowledge cccccccc"]
    practice[1].alarm = ("c" * 32, None)  # no good snapshot before it
    assert "backupctl diff cccccccc cccccccc" in table(practice)["R1"][1][0]

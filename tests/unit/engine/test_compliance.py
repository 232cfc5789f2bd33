"""agent.engine.compliance: the judgement of each assessable rule from gathered facts."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from agent.engine.compliance import FAIL, OK, WARN, RepositoryFacts, assess
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
                            created=NOW - dt.timedelta(weeks=5), disks_used_last_4_weeks=4)
    return [main, disks]


def test_a_well_run_practice_is_ok_everywhere():
    rows = table(a_practice())
    assert {rule: status for rule, (status, _e) in rows.items()} == {
        "S1": OK, "S2": OK, "S3": OK, "S4": OK, "S6": OK, "S7": OK, "S8": OK, "C1-C4": OK, "K1": OK, "T2": OK}
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

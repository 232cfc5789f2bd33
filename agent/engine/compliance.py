"""The compliance table: each rule of docs/COMPLIANCE.md the agent can assess, OK / WARN / FAIL,
with its evidence (snapshot ids and dates, lock settings, restore tests). Pure: the
caller gathers the facts (`RepositoryFacts`), this module judges them.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any

from agent import timefmt
from agent.state.records import MONTH_GRACE_DAYS, WEEKLY_LIMIT, restore_test_risk
from agent.engine.retention import calendar_periods
from agent.engine.installation_copy import FRESHNESS, InstallationFacts, copy_before

OK, WARN, FAIL = "OK", "WARN", "FAIL"


@dataclass
class RepositoryFacts:
    name: str
    kind: str  # "local", "s3" or "disks"
    object_lock: str = "none"  # S3 object-lock mode
    cipher: str | None = None  # None: the repository could not be opened
    snapshots: list[tuple[str, _dt.datetime]] = field(default_factory=list)  # (id, time), oldest first
    created: _dt.datetime | None = None
    last_restore_test: tuple[_dt.datetime, bool] | None = None
    disks_used_last_4_weeks: int = 0
    unavailable: str | None = None  # why its facts could not be read
    # An open ransomware alarm (agent.engine.alarm.open_alarm): (first suspect, last good) hex ids.
    alarm: tuple[str, str | None] | None = None


@dataclass(frozen=True)
class Evidence:
    """One fact behind a verdict: a message code and its parameters (already strings).
    agent.reports.i18n words it in English or French."""

    code: str
    params: dict[str, str] = field(default_factory=dict)


@dataclass
class Row:
    rule: str
    status: str
    evidence: list[Evidence]


@dataclass(frozen=True)
class PeriodState:
    """One calendar period of the retention table: is there a snapshot in it?"""

    period: str  # "2026-W47", "2026-11", "2026"
    state: str  # PRESENT, MISSING, PENDING (current period, still time) or BEFORE (before backups began)
    snapshot: str | None = None  # the newest snapshot id of the period (hex)
    repository: str | None = None
    time: _dt.datetime | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {"period": self.period, "state": self.state, "snapshot": self.snapshot,
                "repository": self.repository, "time": self.time.isoformat() if self.time else None}


PRESENT, MISSING, PENDING, BEFORE = "present", "missing", "pending", "before"


def coverage(repositories: list[RepositoryFacts], *, kind: str, count: int, now: _dt.datetime,
             zone: _dt.tzinfo) -> list[PeriodState]:
    """Which of the last `count` weeks, months or years hold a snapshot (in any readable
    repository), oldest first. Periods that ended before backups began (the earliest of
    the repositories' creation and their first snapshot: snapshots copied from an older
    repository count) are BEFORE; the current period is PENDING until a snapshot is due:
    a week or a year until it ends, a month for its first MONTH_GRACE_DAYS days."""
    readable = [r for r in repositories if r.unavailable is None]
    starts = [r.created for r in readable if r.created] + [t for r in readable for _sid, t in r.snapshots]
    began = min(starts, default=None)
    snapshots = sorted(((t, sid, r.name) for r in readable for sid, t in r.snapshots), reverse=True)
    states = []
    for name, start, end in calendar_periods(kind, now, count, zone):
        inside = next(((t, sid, repo) for t, sid, repo in snapshots if start <= t < end), None)
        if inside is not None:
            states.append(PeriodState(name, PRESENT, inside[1], inside[2], inside[0]))
        elif began is None or end <= began:
            states.append(PeriodState(name, BEFORE))
        elif end > now and (kind != "month" or now.astimezone(zone).day <= MONTH_GRACE_DAYS):
            states.append(PeriodState(name, PENDING))
        else:
            states.append(PeriodState(name, MISSING))
    return states


def assess(repositories: list[RepositoryFacts], *, now: _dt.datetime, zone: _dt.tzinfo, yearly: int,
           audit: dict[str, Any] | None, recovery_sheet: _dt.datetime | None,
           installation: InstallationFacts | None = None) -> list[Row]:
    """`audit`: the facts of the audit trail as gathered for reports (AuditTrail.verify's
    summary and whether the trail is intact, or why it is not), None without a trail.
    `installation`: dpkg's last package change and the snapshots tagged before installations
    (rule S5), None when not gathered (no S5 row)."""
    rows = []
    readable = [r for r in repositories if r.unavailable is None]
    latest = max(((r.name, sid, t) for r in readable for sid, t in r.snapshots), key=lambda x: x[2], default=None)

    def day(moment: _dt.datetime) -> str:
        return f"{moment.astimezone(zone):%Y-%m-%d}"

    # S1: a backup at least every week.
    if latest and now - latest[2] <= WEEKLY_LIMIT:
        rows.append(Row("S1", OK, [Evidence("latest_snapshot", {"snapshot": latest[1][:8], "repository": latest[0],
                                                                 "time": timefmt.iso(latest[2].astimezone(zone))})]))
    else:
        rows.append(Row("S1", FAIL, [Evidence("latest_snapshot_old", {"date": day(latest[2])}) if latest
                                     else Evidence("no_snapshot")]))

    # S2: a different medium each week, in rotation.
    disks = [r for r in repositories if r.kind == "disks"]
    if not disks:
        rows.append(Row("S2", WARN, [Evidence("no_disks")]))
    else:
        used = max(r.disks_used_last_4_weeks for r in disks)
        rows.append(Row("S2", OK if used >= 2 else WARN,
                        [Evidence("disks_used", {"count": str(used), "set": disks[0].name})]))

    # S3: one monthly backup over 12 sliding months; S4: yearly backups.
    months = coverage(repositories, kind="month", count=12, now=now, zone=zone)
    present = [m.period for m in months if m.state == PRESENT]
    missing = [m.period for m in months if m.state == MISSING]
    rows.append(Row("S3", OK if not missing else WARN,
                    [Evidence("months_with", {"months": ", ".join(present) or "-"})]
                    + ([Evidence("months_without", {"months": ", ".join(missing)})] if missing else [])))
    years = sorted({t.astimezone(zone).year for r in readable for _sid, t in r.snapshots})
    rows.append(Row("S4", OK if yearly >= 1 and years else WARN,
                    [Evidence("yearly", {"kept": str(yearly), "years": ", ".join(map(str, years)) or "-"})]))

    # S6: two safe places, away from the practice.
    off_site = [r.name for r in repositories if r.kind in ("s3", "disks")]
    rows.append(Row("S6", OK if len(repositories) >= 2 and off_site else WARN,
                    [Evidence("places", {"count": str(len(repositories)), "off_site": ", ".join(off_site) or "-"})]))

    # S7 and C5: a restore test, comparing SHA-256, at least quarterly.
    # Per repository, with the very verdict `status` uses (records.restore_test_risk): the
    # table cannot call S7 met while `status` says a repository has no recent test.
    evidence = []
    for r in repositories:
        risk = restore_test_risk(r.last_restore_test, now)
        if r.last_restore_test is None:
            evidence.append(Evidence("no_restore_test_of", {"repository": r.name}))
            continue
        when, ok = r.last_restore_test
        code = ("restore_test_passed" if risk is None else "restore_test_failed" if risk.code == "restore_test_failed"
                else "restore_test_too_old")
        evidence.append(Evidence(code, {"repository": r.name, "date": day(when)}))
    met = bool(repositories) and all(restore_test_risk(r.last_restore_test, now) is None for r in repositories)
    rows.append(Row("S7", OK if met else FAIL, evidence or [Evidence("no_restore_test")]))

    # S8: kept disconnected: an object-locked off-site copy.
    locked = [Evidence("object_lock", {"repository": r.name, "mode": r.object_lock})
              for r in repositories if r.kind == "s3" and r.object_lock != "none"]
    rows.append(Row("S8", OK if locked else WARN, locked or [Evidence("no_object_lock")]))

    # C1-C3 (and C4): encryption everywhere, state-of-the-art algorithms, SHA-256.
    ciphers = [Evidence("cipher", {"repository": r.name, "cipher": r.cipher}) for r in readable if r.cipher]
    unknown = [Evidence("unreadable", {"repository": r.name, "problem": r.unavailable})
               for r in repositories if r.unavailable]
    rows.append(Row("C1-C4", OK if ciphers and not unknown else WARN, ciphers + unknown + [Evidence("algorithms")]))

    # K1: a recovery sheet in the safe.
    rows.append(Row("K1", OK if recovery_sheet else FAIL,
                    [Evidence("sheet", {"date": day(recovery_sheet)})] if recovery_sheet else [Evidence("no_sheet")]))

    # T2: traces kept six months at most.
    if audit is None:
        rows.append(Row("T2", WARN, [Evidence("no_audit")]))
    else:
        intact = bool(audit.get("intact"))
        first = timefmt.day(audit["first"], zone) if audit.get("first") else "-"
        rows.append(Row("T2", OK if intact else FAIL,
                        [Evidence("audit_intact" if intact else "audit_altered",
                                  {"records": str(audit.get("records")), "first": first})]))

    # R1: no open ransomware alarm (issue 22): FAIL while a suspect snapshot is not acknowledged.
    alarms = [Evidence("ransomware_alarm", {"repository": r.name, "snapshot": suspect[:8],
                                            "last_good": (good or "-")[:8],
                                            "diff": f"backupctl diff {(good or suspect)[:8]} {suspect[:8]}"})
              for r in readable if r.alarm is not None for suspect, good in [r.alarm]]
    rows.append(Row("R1", FAIL if alarms else OK, alarms or [Evidence("no_ransomware_alarm")]))

    # S5: a copy before every installation (the apt hook's snapshot tagged avant-installation).
    if installation is not None:
        rows.append(installation_copy_row(installation, zone))
    return rows


def installation_copy_row(facts: InstallationFacts, zone: _dt.tzinfo) -> Row:
    """S5: the last package change dpkg logged was preceded, by FRESHNESS at most, by a
    snapshot tagged avant-installation in a readable repository. No dpkg log (not a Debian
    system) or no change in it: nothing to judge, OK. FAIL without such a copy; WARN when
    that could not be told (the log or a repository unreadable)."""
    if facts.problem is not None:
        return Row("S5", WARN, [Evidence("dpkg_log_unreadable", {"problem": facts.problem})])
    if not facts.log_found:
        return Row("S5", OK, [Evidence("no_dpkg_log", {"log": facts.log})])
    change = facts.last_change
    if change is None:
        return Row("S5", OK, [Evidence("no_package_change", {"log": facts.log})])
    evidence = [Evidence("package_change", {"action": change.action, "package": change.package,
                                            "time": timefmt.iso(change.time.astimezone(zone))})]
    copy = copy_before(facts)
    if copy is not None and change.time - copy[2] <= FRESHNESS:
        repository, snapshot, when = copy
        return Row("S5", OK, evidence + [Evidence("copy_before_installation", {
            "snapshot": snapshot[:8], "repository": repository, "time": timefmt.iso(when.astimezone(zone))})])
    if copy is not None:
        evidence.append(Evidence("copy_before_installation_old", {
            "snapshot": copy[1][:8], "repository": copy[0], "time": timefmt.iso(copy[2].astimezone(zone))}))
    else:
        evidence.append(Evidence("no_copy_before_installation"))
    if facts.unreadable:
        evidence.append(Evidence("copies_unknown", {"repositories": ", ".join(facts.unreadable)}))
        return Row("S5", WARN, evidence)
    return Row("S5", FAIL, evidence)



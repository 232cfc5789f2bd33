"""The compliance table: each rule of RULES.md the agent can assess, OK / WARN / FAIL,
with its evidence (snapshot ids and dates, lock settings, restore tests). Pure: the
caller gathers the facts (`RepositoryFacts`), this module judges them.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field

from agent.engine.records import RESTORE_TEST_LIMIT, WEEKLY_LIMIT

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


@dataclass
class Row:
    rule: str
    title: str
    status: str
    evidence: list[str]

    def as_dict(self) -> dict:
        return {"rule": self.rule, "title": self.title, "status": self.status, "evidence": self.evidence}


def assess(repositories: list[RepositoryFacts], *, now: _dt.datetime, zone, yearly: int,
           audit: dict | None, recovery_sheet: _dt.datetime | None) -> list[Row]:
    rows = []
    local_now = now.astimezone(zone)
    readable = [r for r in repositories if r.unavailable is None]
    latest = max(((r.name, sid, t) for r in readable for sid, t in r.snapshots), key=lambda x: x[2], default=None)

    # S1: a backup at least every week.
    if latest and now - latest[2] <= WEEKLY_LIMIT:
        rows.append(Row("S1", "a backup at least every week", OK,
                        [f"latest snapshot {latest[1][:8]} of {latest[0]} on {latest[2].astimezone(zone):%Y-%m-%d %H:%M}"]))
    else:
        rows.append(Row("S1", "a backup at least every week", FAIL,
                        [f"latest snapshot on {latest[2].astimezone(zone):%Y-%m-%d}" if latest else "no snapshot"]))

    # S2: a different medium each week, in rotation.
    disks = [r for r in repositories if r.kind == "disks"]
    if not disks:
        rows.append(Row("S2", "rotated media", WARN, ["no set of rotated disks is configured"]))
    else:
        used = max(r.disks_used_last_4_weeks for r in disks)
        rows.append(Row("S2", "rotated media", OK if used >= 2 else WARN,
                        [f"{used} different disk(s) of {disks[0].name} used in the last 4 weeks"]))

    # S3: one monthly backup over 12 sliding months; S4: yearly backups.
    months_missing, months_present = [], []
    for back in range(12):
        index = local_now.year * 12 + local_now.month - 1 - back
        year, month = divmod(index, 12)
        month += 1
        start = _dt.datetime(year, month, 1, tzinfo=zone)
        if back == 0 and local_now.day <= 7:
            continue  # this month's first weekly backup may still be to come
        if readable and all(r.created is None or _month_end(start) <= r.created for r in readable):
            continue  # before the repositories existed
        found = [(r.name, sid) for r in readable for sid, t in r.snapshots
                 if (t.astimezone(zone).year, t.astimezone(zone).month) == (year, month)]
        (months_present if found else months_missing).append(f"{year}-{month:02d}")
    rows.append(Row("S3", "one monthly backup over 12 sliding months", OK if not months_missing else WARN,
                    [f"months with a snapshot: {', '.join(sorted(months_present)) or 'none'}"]
                    + ([f"months without: {', '.join(sorted(months_missing))}"] if months_missing else [])))
    years = sorted({t.astimezone(zone).year for r in readable for _sid, t in r.snapshots})
    rows.append(Row("S4", "yearly backups", OK if yearly >= 1 and years else WARN,
                    [f"retention keeps {yearly} year(s); years with snapshots: {', '.join(map(str, years)) or 'none'}"]))

    # S6: two safe places, away from the practice.
    off_site = [r.name for r in repositories if r.kind in ("s3", "disks")]
    rows.append(Row("S6", "kept off-site, in two places", OK if len(repositories) >= 2 and off_site else WARN,
                    [f"{len(repositories)} repositor{'y' if len(repositories) == 1 else 'ies'}; off-site: "
                     f"{', '.join(off_site) or 'none'}"]))

    # S7 and C5: a restore test, comparing SHA-256, at least quarterly.
    tests = [(r.name, *r.last_restore_test) for r in repositories if r.last_restore_test]
    recent = [t for t in tests if now - t[1] <= RESTORE_TEST_LIMIT]
    status = OK if recent and all(ok for _name, _time, ok in recent) else FAIL
    evidence = [f"{name}: {when.astimezone(zone):%Y-%m-%d} {'passed' if ok else 'FAILED'}" for name, when, ok in tests]
    rows.append(Row("S7", "a restore test at least every quarter (SHA-256 compared: C5)", status,
                    evidence or ["no restore test recorded"]))

    # S8: kept disconnected: an object-locked off-site copy.
    locked = [f"{r.name}: object lock {r.object_lock}" for r in repositories if r.kind == "s3" and r.object_lock != "none"]
    rows.append(Row("S8", "a copy out of reach (object lock)", OK if locked else WARN,
                    locked or ["no S3 repository with object lock"]))

    # C1-C3 (and C4): encryption everywhere, state-of-the-art algorithms, SHA-256.
    ciphers = [f"{r.name}: {r.cipher}" for r in readable if r.cipher]
    unknown = [f"{r.name}: not readable now ({r.unavailable})" for r in repositories if r.unavailable]
    rows.append(Row("C1-C4", "every backup encrypted with state-of-the-art algorithms; SHA-256 fingerprints",
                    OK if ciphers and not unknown else WARN,
                    ciphers + unknown + ["key wrapping Argon2id; chunk ids keyed BLAKE3; file fingerprints SHA-256; "
                                         "recorded in each repository's config"]))

    # K1: a recovery sheet in the safe.
    rows.append(Row("K1", "a printed recovery sheet in the safe", OK if recovery_sheet else FAIL,
                    [f"produced on {recovery_sheet.astimezone(zone):%Y-%m-%d}"] if recovery_sheet
                    else ["no recovery sheet has been produced yet (backupctl key export --paper)"]))

    # T2: traces kept six months at most.
    if audit is None:
        rows.append(Row("T2", "traces kept six months at most", WARN, ["no audit trail yet"]))
    else:
        rows.append(Row("T2", "traces kept six months at most", OK if audit.get("intact") else FAIL,
                        [f"audit trail {'intact' if audit.get('intact') else 'ALTERED'}: {audit.get('records')} "
                         f"record(s) since {audit.get('first') or '-'}; older records purged automatically"]))
    return rows


def _month_end(start: _dt.datetime) -> _dt.datetime:
    index = start.year * 12 + start.month
    return start.replace(year=index // 12, month=index % 12 + 1)

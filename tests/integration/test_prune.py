"""`backupctl prune`: the default retention policy (4 ISO weeks, 12 months, 20 years,
newest always kept, in Europe/Paris) decides exactly the snapshots a calendar says it
should; --dry-run changes no byte; a real prune forgets those, frees their data and
leaves every kept snapshot restorable; it refuses on a damaged repository (exit 13)
and while a backup holds a lock (exit 16), but clears the lock of a dead process; a
bad [retention] section is a one-line config error (exit 2).

"Now" is the real clock, so snapshot times are computed from it and the expected
decisions are recomputed here, independently of agent/engine/retention.py.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import textwrap
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from .support import PASSPHRASE, ROOT, Backupctl, assert_error, assert_same_tree, base_env, random_file, write

PARIS = ZoneInfo("Europe/Paris")
WEEKS, MONTHS, YEARS = 4, 12, 20  # the defaults of [retention]
FORGET_REASON = "not the newest snapshot of any period still inside a retention window"
BIG = 256 * 1024  # random, so neither compressible nor shared with anything else


# ---- helpers --------------------------------------------------------------------------


def midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=PARIS)


def recent_time() -> datetime:
    """A minute ago, moved back before midnight if that minute is just after it, so
    that two backups at recent_time() and one minute earlier share their day."""
    moment = datetime.now(PARIS) - timedelta(minutes=1)
    if moment.time() < time(0, 5):
        moment -= timedelta(minutes=10)
    return moment


def expected_decisions(times: dict[str, datetime], now: datetime) -> dict[str, tuple]:
    """snapshot id -> (action, reasons, keep_until) under the default policy."""
    today = now.astimezone(PARIS).date()
    this_monday = today - timedelta(days=today.weekday())
    this_month = today.year * 12 + today.month - 1

    def week(day: date):
        monday = day - timedelta(days=day.weekday())
        year, number, _ = monday.isocalendar()
        inside = this_monday - timedelta(weeks=WEEKS - 1) <= monday <= this_monday
        return inside, f"ISO week {year}-W{number:02d}", monday + timedelta(weeks=WEEKS)

    def month(day: date):
        index = day.year * 12 + day.month - 1
        end = index + MONTHS
        return this_month - MONTHS < index <= this_month, f"month {day:%Y-%m}", date(end // 12, end % 12 + 1, 1)

    def year(day: date):
        return today.year - YEARS < day.year <= today.year, f"year {day.year}", date(day.year + YEARS, 1, 1)

    oldest_first = sorted(times, key=times.get)
    reasons: dict[str, list[str]] = {sid: [] for sid in times}
    until: dict[str, list[date]] = {sid: [] for sid in times}
    reasons[oldest_first[-1]].append("newest snapshot")
    for period_of in (week, month, year):
        keepers = {}
        for sid in oldest_first:  # the last one seen in a period is its newest
            inside, name, end = period_of(times[sid].astimezone(PARIS).date())
            if inside:
                keepers[name] = (sid, end)
        for name, (sid, end) in keepers.items():
            reasons[sid].append(f"newest of {name}")
            until[sid].append(end)
    return {sid: ("keep", reasons[sid], midnight(max(until[sid])) if until[sid] else None) if reasons[sid]
            else ("forget", [FORGET_REASON], None) for sid in times}


def decisions_of(report: dict) -> dict[str, tuple]:
    return {d["snapshot_id"]: (d["action"], d["reasons"],
                               datetime.fromisoformat(d["keep_until"]) if d["keep_until"] else None)
            for d in report["snapshots"]}


def data_bytes(bk: Backupctl) -> int:
    return sum(p.stat().st_size for p in (bk.repo / "data").rglob("*") if p.is_file())


def add_retention(bk: Backupctl, body: str) -> None:
    with open(bk.config, "a", encoding="utf-8") as handle:
        handle.write(f"\n[retention]\n{body}\n")


@pytest.fixture
def same_day(bk: Backupctl) -> tuple[Backupctl, str, str]:
    """Two snapshots of the same day (the older is forgotten by any policy); a big
    random file only the older one holds."""
    write(bk.src / "ordonnance.txt", "paracétamol 1 g\n")
    random_file(bk.src / "scanner.bin", BIG)
    bk.init()
    newer_time = recent_time()
    older = bk.backup("--time", (newer_time - timedelta(minutes=1)).isoformat())["snapshot_id"]
    (bk.src / "scanner.bin").unlink()
    write(bk.src / "courrier.txt", "Cher confrère,\n")
    newer = bk.backup("--time", newer_time.isoformat())["snapshot_id"]
    return bk, older, newer


# ---- tests ------------------------------------------------------------------------------


def test_weekly_history_is_pruned_by_the_calendar_and_kept_snapshots_restore(bk: Backupctl) -> None:
    today = datetime.now(PARIS).date()
    noon = lambda day: datetime.combine(day, time(12), PARIS)  # noqa: E731
    schedule = [noon(today - timedelta(days=425)), noon(today - timedelta(days=395))]
    schedule += [noon(today - timedelta(weeks=k)) for k in range(9, 0, -1)] + [recent_time()]
    write(bk.src / "cabinet" / "charte.txt", "secret médical\n")
    bk.init()
    times: dict[str, datetime] = {}
    copies = {}
    for number, moment in enumerate(schedule):
        random_file(bk.src / "scans" / f"semaine-{number:02d}.bin", 64 * 1024)  # only in this snapshot
        write(bk.src / "comptes-rendus" / f"cr-{number:02d}.txt", f"compte rendu {number}\n")  # stays
        with open(bk.src / "journal.txt", "a", encoding="utf-8") as journal:
            journal.write(f"semaine {number}\n")
        sid = bk.backup("--time", moment.isoformat())["snapshot_id"]
        times[sid] = moment
        copies[sid] = shutil.copytree(bk.src, bk.base / "copies" / sid, symlinks=True)
        (bk.src / "scans" / f"semaine-{number:02d}.bin").unlink()
        if number % 3 == 2:
            (bk.src / "comptes-rendus" / f"cr-{number - 1:02d}.txt").unlink()

    expected = expected_decisions(times, datetime.now(PARIS))
    kept = {sid for sid, (action, _, _) in expected.items() if action == "keep"}
    forgotten = set(times) - kept
    assert len(forgotten) >= 3 and len(kept) >= 5, expected  # 9 weekly snapshots over 4 weeks and ~3 months

    before = bk.repo_digest()
    dry = bk.ok_json("prune", "--dry-run")
    assert bk.repo_digest() == before, "prune --dry-run changed the repository"
    assert dry["dry_run"] is True
    assert decisions_of(dry) == expected
    assert (dry["snapshots_kept"], dry["snapshots_forgotten"]) == (len(kept), len(forgotten))

    real = bk.ok_json("prune")
    assert real["dry_run"] is False and decisions_of(real) == expected
    assert (real["snapshots_kept"], real["snapshots_forgotten"]) == (len(kept), len(forgotten))
    for key in ("packs_deleted", "packs_rewritten", "packs_kept", "bytes_freed", "bytes_rewritten"):
        assert real[key] == dry[key], f"{key}: the dry run announced {dry[key]}, the prune did {real[key]}"
    # Each forgotten snapshot alone held a random 64 KiB file.
    assert real["packs_deleted"] >= 1 and real["bytes_freed"] >= len(forgotten) * 64 * 1024, real
    assert real["locked_objects"] == [] and real["stale_locks_removed"] == 0
    assert {s["id"] for s in bk.snapshots()} == kept
    assert len(bk.snapshot_files()) == len(kept)
    assert list((bk.repo / "locks").iterdir()) == []
    bk.ok("check", "--read-data")

    for sid in sorted(kept, key=times.get):
        target = bk.base / "restored" / sid
        assert bk.restore(target, snapshot=sid)["failures"] == []
        assert_same_tree(copies[sid], bk.restored(target))

    again = bk.ok_json("prune")  # nothing left to forget or delete
    assert (again["snapshots_forgotten"], again["packs_deleted"], again["packs_rewritten"]) == (0, 0, 0)


def test_prune_shrinks_the_data_of_forgotten_files(same_day) -> None:
    bk, older, newer = same_day
    before = data_bytes(bk)
    report = bk.ok_json("prune")
    assert [d["action"] for d in report["snapshots"] if d["snapshot_id"] == older] == ["forget"]
    assert report["snapshots_forgotten"] == 1 and report["bytes_freed"] >= BIG
    after = data_bytes(bk)
    assert before - after >= BIG, f"repo/data went from {before} to {after} bytes"
    assert [s["id"] for s in bk.snapshots()] == [newer]
    bk.ok("check", "--read-data")
    target = bk.base / "restored"
    bk.restore(target)
    assert sorted(p.name for p in bk.restored(target).iterdir()) == ["courrier.txt", "ordonnance.txt"]


def test_prune_refuses_a_repository_with_a_missing_pack(same_day) -> None:
    bk, _older, _newer = same_day
    pack = bk.packs()[-1]
    pack.unlink()
    before = bk.repo_digest()
    for args in (["prune"], ["prune", "--dry-run"], ["prune", "--json"]):
        assert_error(bk.run(*args), 13, "prune refused")
        assert bk.repo_digest() == before, f"`{' '.join(args)}` changed the damaged repository"
    assert len(bk.snapshot_files()) == 2


HOLD_LOCK = textwrap.dedent("""
    import sys, time
    from agent.repo.lock import RepositoryLock
    from agent.repo.repository import Repository
    from agent.storage.local import LocalStorage
    repo = Repository.open(LocalStorage(sys.argv[1]), sys.argv[2].encode("utf-8"))
    RepositoryLock(repo, "backup").acquire()
    print("locked", flush=True)
    time.sleep(600)
""")


def test_prune_waits_for_a_live_backup_lock_and_clears_a_dead_ones(same_day) -> None:
    bk, older, newer = same_day
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(bk.repo), PASSPHRASE], cwd=ROOT,
                              env=base_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = holder.stdout.readline()
        assert line == "locked\n", f"the lock holder did not start: {line!r} {holder.stderr.read()}"
        snapshots_before = bk.snapshot_files()
        for args in (["prune"], ["prune", "--json"]):
            assert_error(bk.run(*args), 16, "backup", "shared lock", f"pid {holder.pid}")
        assert bk.snapshot_files() == snapshots_before
        assert len(list((bk.repo / "locks").iterdir())) == 1, "prune must remove its own lock when it backs off"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)  # reaped: its pid no longer exists
        holder.stdout.close()
        holder.stderr.close()

    assert len(list((bk.repo / "locks").iterdir())) == 1, "a SIGKILLed holder leaves its lock behind"
    report = bk.ok_json("prune")
    assert report["stale_locks_removed"] == 1
    assert report["snapshots_forgotten"] == 1
    assert list((bk.repo / "locks").iterdir()) == []
    assert [s["id"] for s in bk.snapshots()] == [newer]


@pytest.mark.parametrize("body, needles", [
    ("weekly = 2", ["[retention]", "weekly = 2"]),
    ('timezone = "Mars/Olympus"', ["[retention]", "timezone", "Mars/Olympus"]),
    ("keep_last = 3", ["[retention]", "keep_last"]),
], ids=["weekly-below-4", "unknown-timezone", "unknown-key"])
def test_bad_retention_section_is_a_config_error(same_day, body: str, needles: list[str]) -> None:
    bk, _older, _newer = same_day
    config = bk.config.read_text(encoding="utf-8")
    before = bk.repo_digest()
    add_retention(bk, body)
    for args in (["prune"], ["prune", "--dry-run", "--json"]):
        assert_error(bk.run(*args), 2, str(bk.config), *needles)
    assert bk.repo_digest() == before

    bk.config.write_text(config, encoding="utf-8")  # control: a valid section is accepted
    add_retention(bk, 'weekly = 5\nmonthly = 13\nyearly = 1\ntimezone = "UTC"\nkeep_tags = ["audit"]')
    assert bk.ok_json("prune", "--dry-run")["snapshots_forgotten"] == 1


def test_human_output_lists_each_decision_and_the_count(same_day) -> None:
    bk, older, newer = same_day
    for args, verb in ((["prune", "--dry-run"], "would be"), (["prune"], "were")):
        result = bk.ok(*args)
        *decisions, summary = result.stdout.splitlines()
        assert [line.split()[:2] for line in decisions] == [["forget", older[:8]], ["keep", newer[:8]]], result
        assert decisions[0].endswith(FORGET_REASON), result
        assert "newest snapshot" in decisions[1], result
        assert summary.startswith(f"1 snapshot(s) {verb} forgotten;"), result
    assert [s["id"] for s in bk.snapshots()] == [newer]

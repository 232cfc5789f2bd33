"""agent.engine.prune: forget per policy, free data, never lose a kept byte.

Snapshots are made by the real backup engine at chosen times; after every prune the
kept snapshots are restored and compared file by file, and `check --read-data` must
pass. A crash is simulated after every possible number of storage mutations.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from zoneinfo import ZoneInfo

import pytest

from agent import clock
from agent.crypto.kdf import KdfParams
from agent.engine.backup import BackupEngine, BackupOptions
from agent.engine.check import CheckEngine
from agent.engine.prune import PruneEngine
from agent.engine.restore import RestoreEngine
from agent.engine.retention import RetentionPolicy
from agent.errors import IntegrityError, ObjectLocked, RepositoryLocked
from agent.repo import layout
from agent.repo.lock import RepositoryLock, STALE_AFTER
from agent.repo.repository import Repository
from agent.storage.memory import MemoryStorage
from tests.support.locked import run_locked

FAST = KdfParams(memory_kib=8192, iterations=1)
PARIS = ZoneInfo("Europe/Paris")
NOW = dt.datetime(2026, 11, 23, 9, tzinfo=PARIS)
POLICY = RetentionPolicy(weekly=4, monthly=12, yearly=1)


@pytest.fixture(autouse=True)
def frozen_clock():
    clock.freeze(NOW)
    yield
    clock.freeze(None)


class History:
    """A source folder backed up at chosen times, each time with some new content."""

    def __init__(self, tmp_path, storage=None) -> None:
        self.storage = storage or MemoryStorage()
        self.repo = Repository.init(self.storage, b"phrase", cipher="xchacha20-poly1305", compression_level=1,
                                    kdf_params=FAST)
        self.source = tmp_path / "src"
        self.source.mkdir()
        self.tmp = tmp_path
        self.contents: dict[bytes, dict[str, str]] = {}  # snapshot id -> {path: sha256}

    def backup(self, when: dt.datetime, *, new_files: int = 3, size: int = 200_000) -> bytes:
        for i in range(new_files):
            data = os.urandom(size)  # incompressible: each week's data is its own
            (self.source / f"{when:%Y%m%d%H%M}-{i}.bin").write_bytes(data)
        report = run_locked(BackupEngine(self.repo, BackupOptions(paths=[str(self.source)], time=when)))
        self.contents[report.snapshot.id] = {
            p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in self.source.iterdir()}
        return report.snapshot.id

    def remove_older_than(self, when: dt.datetime) -> None:
        for path in self.source.iterdir():
            if path.name < f"{when:%Y%m%d%H%M}":
                path.unlink()

    def fresh_repo(self) -> Repository:
        return Repository.open(self.storage, b"phrase")

    def assert_intact(self, expected_ids) -> None:
        repo = self.fresh_repo()
        check = run_locked(CheckEngine(repo, read_data=True))
        assert check.ok, check.errors
        snapshots = {s.id: s for s in repo.snapshots()}
        assert set(snapshots) == set(expected_ids)
        for snapshot_id in expected_ids:
            target = self.tmp / f"restore-{snapshot_id.hex()[:8]}-{len(os.listdir(self.tmp))}"
            report = RestoreEngine(repo, snapshots[snapshot_id], str(target)).run()
            assert not report.failures
            root = target / str(self.source).lstrip("/")
            found = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in root.iterdir()}
            assert found == self.contents[snapshot_id]


def fridays(n: int, *, last=dt.datetime(2026, 11, 20, 20, tzinfo=PARIS)) -> list[dt.datetime]:
    return [last - dt.timedelta(weeks=w) for w in reversed(range(n))]


def test_prune_forgets_per_policy_and_frees_their_data(tmp_path):
    history = History(tmp_path)
    times = fridays(10)
    ids = {}
    for when in times:
        history.remove_older_than(when - dt.timedelta(weeks=2))  # files live about two weeks
        ids[when] = history.backup(when)
    stored_before = sum(i.size for i in history.storage.list(layout.DATA_PREFIX))
    report = run_locked(PruneEngine(history.fresh_repo(), POLICY), exclusive=True)
    kept = {d.snapshot_id for d in report.decisions if d.keep}
    # 4 ISO weeks (3 Fridays fall in them) and the newest of September and October.
    expected = {ids[t] for t in times[-3:]} | {ids[dt.datetime(2026, 9, 25, 20, tzinfo=PARIS)],
                                               ids[dt.datetime(2026, 10, 30, 20, tzinfo=PARIS)]}
    assert kept == expected
    assert report.snapshots_forgotten == 5 and report.packs_deleted + report.packs_rewritten > 0
    stored_after = sum(i.size for i in history.storage.list(layout.DATA_PREFIX))
    assert stored_after < stored_before
    history.assert_intact(expected)
    # A second prune has nothing left to do.
    again = run_locked(PruneEngine(history.fresh_repo(), POLICY), exclusive=True)
    assert again.snapshots_forgotten == 0 and again.packs_deleted == 0 and again.packs_rewritten == 0
    history.assert_intact(expected)


def test_partly_used_packs_are_rewritten(tmp_path):
    history = History(tmp_path)
    # One backup holds many small files in one pack; most are deleted before the next.
    old = history.backup(dt.datetime(2025, 6, 6, 20, tzinfo=PARIS), new_files=40, size=50_000)
    survivors = {path.name: path.read_bytes() for path in sorted(history.source.iterdir())[:5]}
    history.remove_older_than(dt.datetime(2026, 1, 1, tzinfo=PARIS))
    for name, data in survivors.items():  # 5 of the 40 files live on under new names
        (history.source / ("2026-keep-" + name)).write_bytes(data)
    new = history.backup(dt.datetime(2026, 11, 20, 20, tzinfo=PARIS), new_files=1)
    report = run_locked(PruneEngine(history.fresh_repo(), RetentionPolicy(weekly=4, monthly=12, yearly=1)),
                        exclusive=True)
    assert [d.snapshot_id for d in report.decisions if not d.keep] == [old]
    assert report.packs_rewritten >= 1 and report.bytes_rewritten > 0
    history.assert_intact([new])


def test_dry_run_changes_nothing(tmp_path):
    history = History(tmp_path)
    for when in fridays(8):
        history.backup(when)
    before = dict(history.storage.objects)
    report = run_locked(PruneEngine(history.fresh_repo(), POLICY, dry_run=True))
    assert report.snapshots_forgotten > 0 and report.bytes_freed > 0
    assert history.storage.objects == before


def test_refuses_when_data_is_missing_and_deletes_nothing(tmp_path):
    history = History(tmp_path)
    for when in fridays(8):
        history.backup(when)
    pack = next(i.name for i in history.storage.list(layout.DATA_PREFIX))
    history.storage.delete(pack)
    before = dict(history.storage.objects)
    with pytest.raises(IntegrityError, match="prune refused"):
        run_locked(PruneEngine(history.fresh_repo(), POLICY), exclusive=True)
    assert history.storage.objects == before


def test_refuses_while_a_backup_holds_its_lock_but_not_for_a_stale_lock(tmp_path):
    history = History(tmp_path)
    for when in fridays(6):
        history.backup(when)
    with RepositoryLock(history.fresh_repo(), "backup"):
        with pytest.raises(RepositoryLocked, match="backup"):
            run_locked(PruneEngine(history.fresh_repo(), POLICY), exclusive=True)
    # A lock left by a process that died long ago (written with an old clock).
    clock.freeze(NOW - STALE_AFTER - dt.timedelta(minutes=1))
    abandoned = RepositoryLock(history.fresh_repo(), "backup")
    abandoned._write()
    clock.freeze(NOW)
    report = run_locked(PruneEngine(history.fresh_repo(), POLICY), exclusive=True)
    assert report.snapshots_forgotten == 2 and report.stale_locks_removed == 1
    assert not [n for n in history.storage.objects if n.startswith(layout.LOCKS_PREFIX)]


def test_a_backup_cannot_start_during_a_prune(tmp_path):
    history = History(tmp_path)
    history.backup(NOW - dt.timedelta(days=3))
    with RepositoryLock(history.fresh_repo(), "prune", exclusive=True):
        with pytest.raises(RepositoryLocked, match="prune"):
            RepositoryLock(history.fresh_repo(), "backup").acquire()
    assert not [n for n in history.storage.objects if n.startswith(layout.LOCKS_PREFIX)]


class CrashingStorage(MemoryStorage):
    """Dies (raises) at the n-th mutation, as a SIGKILL would stop the process there."""

    def __init__(self, objects: dict[str, bytes], crash_at: int) -> None:
        super().__init__()
        self.objects = dict(objects)
        self.crash_at = crash_at
        self.mutations = 0

    def _tick(self) -> None:
        self.mutations += 1
        if self.mutations == self.crash_at:
            raise KeyboardInterrupt("simulated crash")

    def write(self, name, data, **options):
        self._tick()
        super().write(name, data, **options)

    def delete(self, name, **options):
        self._tick()
        super().delete(name, **options)


@pytest.mark.parametrize("packs_per_index_file", [4096, 1])
def test_a_crash_at_any_point_of_a_prune_loses_nothing_and_a_rerun_finishes(tmp_path, monkeypatch,
                                                                             packs_per_index_file):
    # With one pack per index file, the complete index spans several files and a crash
    # can fall between them.
    import agent.repo.repository as repository_module

    monkeypatch.setattr(repository_module, "PACKS_PER_INDEX_FILE", packs_per_index_file)
    history = History(tmp_path)
    times = fridays(9)
    for when in times:
        history.remove_older_than(when - dt.timedelta(weeks=2))
        history.backup(when, size=120_000)
    pristine = dict(history.storage.objects)
    reference = run_locked(PruneEngine(history.fresh_repo(), POLICY, dry_run=True))
    expected = [d.snapshot_id for d in reference.decisions if d.keep]
    crash_point = 1
    while True:
        storage = CrashingStorage(pristine, crash_point)
        history.storage = storage
        try:
            run_locked(PruneEngine(history.fresh_repo(), POLICY), exclusive=True)
            finished = True
        except KeyboardInterrupt:
            finished = False
        storage.crash_at = 0  # the "next process" runs normally
        if not finished:
            # The crashed prune's lock is still there, until it goes stale: the check after
            # it and the rerun take their locks then.
            clock.freeze(NOW + STALE_AFTER + dt.timedelta(minutes=1))
            # Whatever was interrupted, every snapshot still present restores intact...
            repo = history.fresh_repo()
            assert run_locked(CheckEngine(repo, read_data=True)).ok, f"crash at {crash_point}"
            # ...and a rerun completes.
            run_locked(PruneEngine(history.fresh_repo(), POLICY), exclusive=True)
            clock.freeze(NOW)
        history.assert_intact(expected)
        if finished:
            break
        crash_point += 1
    assert crash_point > 10  # the loop really went through the prune's steps


class LockedStorage(MemoryStorage):
    """Packs under object lock refuse deletion until a date, as S3 compliance mode does."""

    def __init__(self) -> None:
        super().__init__()
        self.locked_until = NOW + dt.timedelta(days=30)

    def delete(self, name, **options):
        if name.startswith(layout.DATA_PREFIX) and clock.now() < self.locked_until:
            raise ObjectLocked(f"object {name} is locked until {self.locked_until:%Y-%m-%d}; not deleted")
        super().delete(name, **options)


def test_locked_packs_are_reported_and_deleted_by_a_later_prune(tmp_path):
    history = History(tmp_path, storage=LockedStorage())
    for when in fridays(8):
        history.remove_older_than(when - dt.timedelta(weeks=1))
        history.backup(when)
    report = run_locked(PruneEngine(history.fresh_repo(), POLICY), exclusive=True)
    assert report.locked and all("locked until" in why for _name, why in report.locked)
    locked_names = {name for name, _why in report.locked}
    assert locked_names <= set(history.storage.objects)
    expected = [d.snapshot_id for d in report.decisions if d.keep]
    history.assert_intact(expected)
    clock.freeze(history.storage.locked_until + dt.timedelta(days=1))
    later = run_locked(PruneEngine(history.fresh_repo(), POLICY), exclusive=True)
    assert not later.locked
    assert not locked_names & set(history.storage.objects)


class ObjectLockStorage(MemoryStorage):
    """Object lock as S3 compliance mode applies it: a retain-until date per object,
    only ever moved later, and deletion refused before it."""

    object_lock_enabled = True
    WRITE_LOCK = dt.timedelta(days=30)  # lock_days at write time

    def __init__(self) -> None:
        super().__init__()
        self.until: dict[str, dt.datetime] = {}
        self.extensions = 0

    def write(self, name, data, *, ephemeral=False, **options):
        super().write(name, data, ephemeral=ephemeral, **options)
        if not ephemeral:  # as S3 does: whatever the caller did not say is short-lived is locked
            self.until[name] = max(self.until.get(name, clock.now()), clock.now() + self.WRITE_LOCK)

    def delete(self, name, **options):
        if name in self.until and clock.now() < self.until[name]:
            raise ObjectLocked(f"object {name} is locked until {self.until[name]:%Y-%m-%d}; not deleted")
        super().delete(name, **options)

    def retention(self, name):
        return self.until.get(name)

    def extend_retention(self, name, until):
        self.extensions += 1
        self.until[name] = max(self.until.get(name, until), until)


def _packs_of(repo: Repository, snapshot_id: bytes) -> set[str]:
    from agent.engine.expansion import Expansion

    repo.load_index()
    snapshot = repo.load_snapshot(snapshot_id)
    names = {layout.pack_name(repo.locate(snapshot.tree).pack_id)}
    for _path, node in Expansion(repo, snapshot.tree).walk():
        for chunk_id in node.chunks or []:
            names.add(layout.pack_name(repo.locate(chunk_id).pack_id))
        if node.subtree:
            names.add(layout.pack_name(repo.locate(node.subtree).pack_id))
    return names


def test_object_lock_dates_follow_the_tiers(tmp_path):
    from agent.engine.lock_dates import LOCK_MARGIN, LockDateCache

    storage = ObjectLockStorage()
    history = History(tmp_path, storage=storage)
    october = history.backup(dt.datetime(2026, 10, 30, 20, tzinfo=PARIS))  # October's keeper
    history.remove_older_than(dt.datetime(2026, 11, 1, tzinfo=PARIS))
    weekly = history.backup(dt.datetime(2026, 11, 13, 20, tzinfo=PARIS))  # only a weekly keeper
    history.remove_older_than(dt.datetime(2026, 11, 14, tzinfo=PARIS))
    newest = history.backup(dt.datetime(2026, 11, 20, 20, tzinfo=PARIS))  # this month's keeper, for now
    cache_path = tmp_path / "state" / "lock-dates.json"
    report = run_locked(PruneEngine(history.fresh_repo(), POLICY, lock_cache=LockDateCache(str(cache_path))),
                        exclusive=True)
    assert report.object_locks is not None and report.object_locks.locks_extended > 0
    repo = history.fresh_repo()
    only_october = _packs_of(repo, october) - _packs_of(repo, weekly) - _packs_of(repo, newest)
    only_weekly = _packs_of(repo, weekly) - _packs_of(repo, october) - _packs_of(repo, newest)
    assert only_october and only_weekly
    # A monthly keeper: 12 months (October leaves the window on 1 October 2027) + margin.
    for name in only_october | {layout.snapshot_name(october)}:
        assert storage.until[name] == dt.datetime(2027, 10, 1, tzinfo=PARIS) + LOCK_MARGIN
    # A weekly-only snapshot: its week (9-15 Nov) leaves the 4-week window on 7 December;
    # its packs keep the later of that (+ margin) and the 30 days they were written with.
    written = NOW + ObjectLockStorage.WRITE_LOCK
    for name in only_weekly:
        assert storage.until[name] == max(written, dt.datetime(2026, 12, 7, tzinfo=PARIS) + LOCK_MARGIN)
        assert storage.until[name] < dt.datetime(2027, 1, 1, tzinfo=PARIS)  # not a monthly's year
    # The newest is November's keeper only provisionally: its settled date is its week's.
    newest_decision = next(d for d in report.decisions if d.snapshot_id == newest)
    assert newest_decision.settled_until == dt.datetime(2026, 12, 14, tzinfo=PARIS)
    assert storage.until[layout.snapshot_name(newest)] == dt.datetime(2026, 12, 14, tzinfo=PARIS) + LOCK_MARGIN
    # Nothing is asked again while the cached dates cover what is needed...
    before = storage.extensions
    again = run_locked(PruneEngine(history.fresh_repo(), POLICY, lock_cache=LockDateCache(str(cache_path))),
                       exclusive=True)
    assert again.object_locks.locks_extended == 0 and storage.extensions == before
    # ...and when November is over, the newest is promoted to November's keeper: extended.
    clock.freeze(dt.datetime(2026, 12, 2, 9, tzinfo=PARIS))
    promoted = run_locked(PruneEngine(history.fresh_repo(), POLICY, lock_cache=LockDateCache(str(cache_path))),
                          exclusive=True)
    assert promoted.object_locks.locks_extended > 0
    assert storage.until[layout.snapshot_name(newest)] == dt.datetime(2027, 11, 1, tzinfo=PARIS) + LOCK_MARGIN
    for name in _packs_of(history.fresh_repo(), newest):
        assert storage.until[name] >= dt.datetime(2027, 11, 1, tzinfo=PARIS) + LOCK_MARGIN


def test_a_transient_error_while_extending_a_lock_is_retried(tmp_path):
    """Prune's lock extension goes through the storage's retries like every request: one
    503 from the provider on the way does not fail the prune (the wrappers used to pass
    `extend_retention` straight to the backend)."""
    from agent.engine.lock_dates import LockDateCache
    from agent.errors import TransientStorageError
    from agent.storage.retry import RetryingStorage
    from agent.storage.throttle import ThrottledStorage

    class OneFailure(ObjectLockStorage):
        failures = 0

        def extend_retention(self, name, until):
            if not self.failures:
                self.failures += 1
                raise TransientStorageError("provider error 503 while extending the lock of " + name)
            super().extend_retention(name, until)

    backend = OneFailure()
    storage = RetryingStorage(ThrottledStorage(backend), attempts=3, sleep=lambda _s: None)
    history = History(tmp_path, storage=storage)
    history.backup(dt.datetime(2026, 11, 20, 20, tzinfo=PARIS), new_files=1, size=20_000)
    cache = LockDateCache(str(tmp_path / "lock-dates.json"))
    report = run_locked(PruneEngine(history.fresh_repo(), POLICY, lock_cache=cache), exclusive=True)
    assert backend.failures == 1 and storage.retries == 1
    assert report.object_locks is not None and report.object_locks.locks_extended == backend.extensions > 0

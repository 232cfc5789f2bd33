"""What prune says: its refusals with their hints, the bytes it frees, the snapshots an
object lock keeps; and that a folder shared inside a kept snapshot never hides the rest
of that snapshot from the walk that decides what is still used."""

from __future__ import annotations

import datetime as dt
import os

import pytest

from agent.clock_skew import CLOCK_SKEW_HINT
from agent.engine.backup import BackupEngine, BackupOptions
from agent.engine.check import CheckEngine
from agent.engine.prune import PruneEngine
from agent.engine.retention import RetentionPolicy
from agent.errors import ClockSkewError, IntegrityError, ObjectLocked
from agent.repo import layout
from agent.state.ledger import Ledger
from agent.storage.memory import MemoryStorage
from tests.support.locked import run_locked

from .test_check_lost_packs import _lost_then_backed_up_again
from .test_prune import NOW, POLICY, History, fridays, frozen_clock  # noqa: F401 (autouse: now is NOW)

ONLY_NEWEST = RetentionPolicy(daily=0, weekly=0, monthly=0, yearly=0)
A_WEEK_OF_DAYS = RetentionPolicy(daily=7, weekly=0, monthly=0, yearly=0)


def test_prune_on_a_clock_the_storage_contradicts_is_refused_with_the_clock_hint(tmp_path):
    history = History(tmp_path)
    history.backup(fridays(1)[0])
    repo = history.fresh_repo()
    repo.clock_skew = lambda: dt.timedelta(hours=3)  # the storage server's clock is 3 hours ahead
    with pytest.raises(ClockSkewError) as refused:
        run_locked(PruneEngine(repo, POLICY), exclusive=True)
    assert str(refused.value).startswith("prune refused, nothing was forgotten: ")
    assert refused.value.hint == CLOCK_SKEW_HINT


def test_prune_on_missing_data_is_refused_with_the_way_out(tmp_path):
    history = History(tmp_path)
    for when in fridays(3):
        history.backup(when)
    history.storage.delete(next(i.name for i in history.storage.list(layout.DATA_PREFIX)))
    with pytest.raises(IntegrityError) as refused:
        run_locked(PruneEngine(history.fresh_repo(), POLICY), exclusive=True)
    assert str(refused.value).startswith("prune refused: the repository has damage or missing data (")
    assert refused.value.hint == ("run `backupctl check` to see what is affected; the next backup stores missing "
                                  "data again, then prune can run")


def test_prune_after_a_snapshot_vanished_behind_its_back_is_refused_with_the_ledgers_hint(tmp_path):
    history = History(tmp_path)
    for when in fridays(3):
        history.backup(when)
    ledger = Ledger(str(tmp_path / "state"), history.repo.config.repository_id)
    run_locked(CheckEngine(history.fresh_repo(), ledger=ledger))  # this machine notes the three snapshots
    history.storage.delete(next(i.name for i in history.storage.list(layout.SNAPSHOTS_PREFIX)))
    with pytest.raises(IntegrityError) as refused:
        run_locked(PruneEngine(history.fresh_repo(), POLICY, ledger=ledger), exclusive=True)
    assert str(refused.value).startswith("prune refused: ")
    assert refused.value.hint == ("a prune now could free data that newer snapshots need; see `backupctl check`, "
                                  "and if the change was deliberate, `backupctl check --accept-storage`")


def test_a_prune_that_deletes_needs_the_exclusive_lock_a_dry_run_a_shared_one(tmp_path):
    history = History(tmp_path)
    history.backup(fridays(1)[0])
    with pytest.raises(AssertionError, match="prune needs an exclusive lock"):
        run_locked(PruneEngine(history.fresh_repo(), POLICY))
    assert run_locked(PruneEngine(history.fresh_repo(), POLICY, dry_run=True)).dry_run


def test_bytes_freed_are_the_packs_deleted_and_the_unused_share_of_those_rewritten(tmp_path):
    history = History(tmp_path)
    history.backup(fridays(2)[0], new_files=40, size=50_000)
    # 35 of the 40 files of the one data pack: the first 35 stored, so the pack holds its
    # unused blobs before the used ones.
    gone = sorted(history.source.iterdir())[:35]
    contents = [path.read_bytes() for path in gone]
    for path in gone:
        path.unlink()
    history.backup(fridays(2)[1], new_files=0)
    repo = history.fresh_repo()
    repo.load_index()
    unused = [repo.locate(repo.chunk_id(content)) for content in contents]
    rewritten = {layout.pack_name(place.pack_id) for place in unused}
    assert len(rewritten) == 1
    before = {i.name: i.size for i in history.storage.list(layout.DATA_PREFIX)}
    report = run_locked(PruneEngine(history.fresh_repo(), ONLY_NEWEST), exclusive=True)
    after = {i.name for i in history.storage.list(layout.DATA_PREFIX)}
    assert report.packs_rewritten == 1 and report.snapshots_forgotten == 1
    deleted = sum(size for name, size in before.items() if name not in after and name not in rewritten)
    assert report.bytes_freed == deleted + sum(place.length for place in unused)
    # The rewrite copied exactly the blobs in use: all there, and nothing left to free.
    history.assert_intact([d.snapshot_id for d in report.decisions if d.keep])
    again = run_locked(PruneEngine(history.fresh_repo(), ONLY_NEWEST), exclusive=True)
    assert (again.packs_rewritten, again.packs_deleted, again.bytes_freed) == (0, 0, 0)


class SnapshotsLocked(MemoryStorage):
    """Snapshot objects under object lock: not deletable before a date."""

    def delete(self, name, **options):
        if name.startswith(layout.SNAPSHOTS_PREFIX):
            raise ObjectLocked(f"object {name} is locked until 2027-01-01; not deleted")
        super().delete(name, **options)


def test_a_snapshot_an_object_lock_keeps_is_named_and_not_counted_as_forgotten(tmp_path):
    history = History(tmp_path, storage=SnapshotsLocked())
    first = history.backup(fridays(2)[0])
    history.backup(fridays(2)[1])
    report = run_locked(PruneEngine(history.fresh_repo(), ONLY_NEWEST), exclusive=True)
    name = layout.snapshot_name(layout.SnapshotId(first))
    assert report.locked == [(name, f"object {name} is locked until 2027-01-01; not deleted")]
    assert report.snapshots_forgotten == 0
    history.assert_intact(list(history.contents))  # its data stays with it


def test_a_folder_met_twice_in_a_kept_snapshot_does_not_stop_the_walk_of_the_rest(tmp_path):
    """Two identical folders (one listing, stored once) and a third one: the walk meets
    the shared listing a second time before the third folder; all of it must stay."""
    history = History(tmp_path)
    src = history.source
    for folder in ("a", "x", "y"):
        (src / folder).mkdir()
    (src / "a" / "only-here.bin").write_bytes(os.urandom(300_000))
    for folder in ("x", "y"):
        (src / folder / "same.txt").write_bytes(b"same letter\n" * 100)
        os.utime(src / folder / "same.txt", ns=(10**18, 10**18))
        os.utime(src / folder, ns=(10**18, 10**18))
    run_locked(BackupEngine(history.repo, BackupOptions(paths=[str(src)], time=NOW - dt.timedelta(days=1))))
    run_locked(PruneEngine(history.fresh_repo(), ONLY_NEWEST), exclusive=True)
    check = run_locked(CheckEngine(history.fresh_repo(), read_data=True))
    assert check.ok, check.errors


def test_a_rewrite_does_not_copy_a_blob_the_index_finds_in_another_pack(tmp_path):
    """A pack lost, its data partly stored again by a later backup, then found again: its
    blobs stored again live on in the newer pack; the rewrite copies only the others."""
    history, lost, _ = _lost_then_backed_up_again(tmp_path, keep_b=False)
    for name, data in lost.items():
        history.storage.write(name, data)
    opened = history.fresh_repo()
    opened.load_index()
    packs = sorted(opened.index.packs().items(), key=lambda item: layout.pack_name(item[0]) in lost)
    opened.write_index_files(dict(packs), supersede=sorted(opened.list_index_ids()))  # the newer copies first
    report = run_locked(PruneEngine(history.fresh_repo(), A_WEEK_OF_DAYS), exclusive=True)
    assert report.snapshots_forgotten == 0 and report.packs_rewritten == 1
    assert run_locked(CheckEngine(history.fresh_repo(), read_data=True)).ok
    again = run_locked(PruneEngine(history.fresh_repo(), A_WEEK_OF_DAYS), exclusive=True)
    assert (again.packs_rewritten, again.packs_deleted, again.bytes_freed) == (0, 0, 0)

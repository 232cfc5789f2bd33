"""agent.repo.lock: shared and exclusive repository locks, staleness, refresh."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess

import pytest

import agent.repo.lock as lock_module
from agent import clock
from agent.crypto.kdf import KdfParams
from agent.errors import RepositoryLocked, StorageError
from agent.repo import layout
from agent.repo.lock import (STALE_AFTER, RepositoryLock, list_locks, remove_stale_locks,
                             shared_lock_for_reading)
from agent.repo.repository import Repository
from agent.repo.snapshot import Snapshot
from agent.storage.memory import MemoryStorage
from tests.support.waits import wait_until
from tests.support.repos import memory_repository

FAST = KdfParams(memory_kib=8192, iterations=1)
NOW = dt.datetime(2026, 11, 23, 9, tzinfo=dt.timezone.utc)


@pytest.fixture(autouse=True)
def frozen_clock():
    clock.freeze(NOW)
    yield
    clock.freeze(None)


@pytest.fixture
def repo() -> Repository:
    return memory_repository()


def lock_names(repo) -> list[str]:
    return [i.name for i in repo.storage.list(layout.LOCKS_PREFIX)]


def foreign_lock(repo, *, exclusive: bool, host: str = "autre-serveur", pid: int = 4242,
                 when: dt.datetime = NOW) -> bytes:
    lock_id = bytes(range(16))
    document = {"time": when.isoformat(), "host": host, "pid": pid, "user": "x", "exclusive": exclusive,
                "operation": "prune" if exclusive else "backup"}
    repo.write_lock_object(lock_id, json.dumps(document).encode())
    return lock_id


def test_shared_locks_coexist_and_are_removed_on_release(repo):
    with RepositoryLock(repo, "backup"), RepositoryLock(repo, "check"):
        assert len(lock_names(repo)) == 2
        assert {lock.operation for lock in list_locks(repo)} == {"backup", "check"}
    assert lock_names(repo) == []


def test_exclusive_refused_while_shared_held_and_leaves_no_lock(repo):
    with RepositoryLock(repo, "backup"):
        with pytest.raises(RepositoryLocked, match="backup"):
            RepositoryLock(repo, "prune", exclusive=True).acquire()
        assert len(lock_names(repo)) == 1


def test_shared_refused_while_exclusive_held(repo):
    foreign_lock(repo, exclusive=True)
    with pytest.raises(RepositoryLocked, match="prune .exclusive lock. by x@autre-serveur"):
        RepositoryLock(repo, "backup").acquire()
    assert len(lock_names(repo)) == 1  # only the foreign one



@pytest.mark.parametrize("exclusive, held", [(False, "backup (shared lock)"), (True, "prune (exclusive lock)")])
def test_a_refusal_names_the_holder_its_kind_of_lock_and_since_when(repo, exclusive, held):
    # Taken 5 minutes ago on a machine at UTC+1: shown at that machine's time, its offset named.
    paris = dt.timezone(dt.timedelta(hours=1))
    foreign_lock(repo, exclusive=exclusive, when=(NOW - dt.timedelta(minutes=5)).astimezone(paris))
    with pytest.raises(RepositoryLocked) as raised:
        RepositoryLock(repo, "prune", exclusive=True).acquire()
    assert str(raised.value) == (f"the repository is in use: {held} by x@autre-serveur pid 4242 "
                                 f"since 2026-11-23 09:55 +01:00")
    # ...and what to do, with when a crashed holder's lock stops counting.
    assert raised.value.hint == "wait for it to finish; a lock left by a crashed process is ignored after 30 minutes"

def test_two_exclusive_racers_both_back_off(repo):
    """Both wrote their lock before listing: each sees the other and withdraws."""
    foreign_lock(repo, exclusive=True)
    with pytest.raises(RepositoryLocked):
        RepositoryLock(repo, "prune", exclusive=True).acquire()


def test_a_lock_not_refreshed_for_the_stale_period_is_ignored_and_removable(repo):
    foreign_lock(repo, exclusive=True, when=NOW - STALE_AFTER - dt.timedelta(seconds=1))
    with RepositoryLock(repo, "backup"):
        pass
    assert [lock.host for lock in remove_stale_locks(repo)] == ["autre-serveur"]
    assert lock_names(repo) == []


def test_a_recent_lock_of_a_dead_process_on_this_host_is_stale(repo):
    import socket

    dead = subprocess.Popen(["true"])
    dead.wait()
    foreign_lock(repo, exclusive=True, host=socket.gethostname(), pid=dead.pid)
    with RepositoryLock(repo, "backup"):  # not refused by the dead process's exclusive lock
        assert {(lock.pid, lock.exclusive) for lock in list_locks(repo)} == {(dead.pid, True), (os.getpid(), False)}
    assert [lock.pid for lock in remove_stale_locks(repo)] == [dead.pid]
    assert lock_names(repo) == []


def test_a_recent_lock_from_another_host_is_respected_whatever_its_pid(repo):
    foreign_lock(repo, exclusive=True, host="autre-serveur", pid=999_999_999)
    with pytest.raises(RepositoryLocked):
        RepositoryLock(repo, "backup").acquire()


def test_an_unreadable_lock_blocks_like_an_exclusive_one(repo):
    repo.storage.write(layout.lock_name(bytes(16)), b"garbage")
    with pytest.raises(RepositoryLocked, match="unreadable lock"):
        RepositoryLock(repo, "backup").acquire()
    assert remove_stale_locks(repo) == []  # never removed automatically


def test_a_held_lock_is_refreshed(repo, monkeypatch):
    monkeypatch.setattr(lock_module, "REFRESH_EVERY", dt.timedelta(seconds=0.05))
    with RepositoryLock(repo, "backup"):
        clock.freeze(NOW + dt.timedelta(minutes=20))
        wait_until(lambda: list_locks(repo)[0].time == NOW + dt.timedelta(minutes=20), timeout=5, interval=0.02,
                   what=f"the lock's time refreshed to {NOW + dt.timedelta(minutes=20)}")


class ReadOnlyStorage(MemoryStorage):
    def write(self, name, data, **options):
        raise StorageError(f"{name}: read-only file system")


def test_reading_goes_on_unlocked_when_the_lock_cannot_be_written(repo):
    read_only = Repository(ReadOnlyStorage(), repo.master, repo.config)
    read_only.storage.objects = dict(repo.storage.objects)
    with shared_lock_for_reading(read_only, "restore") as held:
        assert held is None


def test_reading_still_refuses_during_a_prune(repo):
    foreign_lock(repo, exclusive=True)
    with pytest.raises(RepositoryLocked):
        with shared_lock_for_reading(repo, "restore"):
            pass


def test_an_overlapped_lock_is_confirmed_before_writing_and_refuses_during_a_prune(repo, tmp_path):
    """overlapped_shared_lock: the body may read while the lock is being taken, but
    confirmed() (called before anything is written) raises the conflict, and a body that
    failed meanwhile (a prune deleting what it read) is reported as the conflict."""
    foreign_lock(repo, exclusive=True)
    written = []
    with pytest.raises(RepositoryLocked):
        with lock_module.overlapped_shared_lock(repo, "restore") as pending:
            pending.confirmed()
            written.append("target")
    assert written == []
    with pytest.raises(RepositoryLocked) as raised:
        with lock_module.overlapped_shared_lock(repo, "restore"):
            raise StorageError("pack deleted meanwhile")
    assert isinstance(raised.value.__cause__, StorageError)
    with pytest.raises(RepositoryLocked):  # a body that writes nothing (a dry run) still hears of it
        with lock_module.overlapped_shared_lock(repo, "restore"):
            pass
    assert lock_names(repo) == [layout.lock_name(bytes(range(16)))]  # ours removed each time


def test_an_overlapped_lock_is_held_then_removed(repo):
    with lock_module.overlapped_shared_lock(repo, "restore") as pending:
        held = pending.confirmed()
        assert held is not None and [lock.operation for lock in list_locks(repo)] == ["restore"]
    assert lock_names(repo) == []



def test_the_index_listed_alongside_an_overlapped_lock_is_the_one_load_index_reads(repo):
    """index/ is listed as soon as the lock is written, and load_index uses that listing:
    one round trip, not two, even when the listing ends after the lock is confirmed."""
    import threading

    listing_may_end = threading.Event()
    listed = []
    original = repo.storage.list

    def slow_list(prefix):
        listed.append(prefix)
        if prefix == layout.INDEX_PREFIX:
            listing_may_end.wait(5)
        return original(prefix)

    repo.storage.list = slow_list
    with lock_module.overlapped_shared_lock(repo, "restore") as pending:
        assert pending.confirmed() is not None
        listing_may_end.set()
        repo.load_index()
    assert listed.count(layout.INDEX_PREFIX) == 1

def test_an_overlapped_lock_that_cannot_be_written_lets_reading_go_on(repo):
    read_only = Repository(ReadOnlyStorage(), repo.master, repo.config)
    read_only.storage.objects = dict(repo.storage.objects)
    with lock_module.overlapped_shared_lock(read_only, "restore") as pending:
        assert pending.confirmed() is None


def test_taking_a_lock_does_not_read_it_back(repo):
    """The lock just written is not read again among the others (a round trip over a WAN)."""
    reads = []
    original = repo.storage.read
    repo.storage.read = lambda name, **kw: reads.append(name) or original(name, **kw)
    foreign_lock(repo, exclusive=False)
    with RepositoryLock(repo, "backup") as held:
        assert reads == [layout.lock_name(bytes(range(16)))]
        assert layout.lock_name(held.lock_id) not in reads


class OptionsStorage(MemoryStorage):
    """Remembers what the repository said of each object it wrote or deleted."""

    def __init__(self) -> None:
        super().__init__()
        self.said: list[tuple[str, str, dict]] = []

    def write(self, name, data, **options):
        self.said.append(("write", name, {k: v for k, v in options.items() if v}))
        super().write(name, data, **options)

    def delete(self, name, **options):
        self.said.append(("delete", name, {k: v for k, v in options.items() if v}))
        super().delete(name, **options)


def test_the_repository_says_per_object_what_a_backend_cannot_guess_from_its_name():
    """A lock is ephemeral (no object lock, no upload verification, deleted without asking
    for a lock date); an exclusive write names a random name as such, and the config, whose
    name another `init` may claim, is never taken for a random one."""
    storage = OptionsStorage()
    repo = Repository.init(storage, b"phrase", cipher="xchacha20-poly1305", compression_level=1, kdf_params=FAST)
    with RepositoryLock(repo, "backup"):
        pass
    repo.add_key(b"another phrase", params=FAST)
    repo.save_snapshot(Snapshot(time=NOW, host="cabinet", user="root", paths=["/srv"], tree=bytes(32)))
    repo.save_report(bytes(16), b"{}")
    said = {(what, name.split("/")[0]): options for what, name, options in storage.said}
    assert said == {("write", "keys"): {"exclusive": True, "random_name": True},
                    ("write", "config"): {"exclusive": True},
                    ("write", "snapshots"): {"exclusive": True, "random_name": True},
                    ("write", "reports"): {"exclusive": True, "random_name": True},
                    ("write", "locks"): {"ephemeral": True},
                    ("delete", "locks"): {"ephemeral": True}}


def test_a_lock_released_twice_is_released_once_quietly(repo):
    lock = RepositoryLock(repo, "backup").acquire()
    lock.release()
    lock.release()
    assert lock_names(repo) == []


def test_a_lock_never_taken_can_be_released(repo):
    # A caller's cleanup releases whatever it holds, taken or not.
    lock = RepositoryLock(repo, "backup")
    lock.release()
    assert lock_names(repo) == []


def test_an_unreadable_lock_is_described_as_held_by_nobody_known(repo):
    repo.storage.write(layout.lock_name(bytes(16)), b"garbage")
    with pytest.raises(RepositoryLocked) as raised:
        RepositoryLock(repo, "backup").acquire()
    assert str(raised.value).startswith("the repository is in use: unreadable lock (")
    assert ") (exclusive lock) by ?@? pid 0 since 2026-11-23 09:00 " in str(raised.value)


def test_a_held_lock_never_keeps_the_program_from_exiting(repo):
    # Its refresh runs until release; a command that ends without releasing must still end.
    with RepositoryLock(repo, "backup") as held:
        assert held._refresher is not None and held._refresher.daemon

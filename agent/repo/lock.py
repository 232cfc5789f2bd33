"""Repository locks: a prune never runs while a backup, check or restore does.

A lock is an encrypted object `locks/<16-byte id hex>` whose plaintext is JSON:
`{"time", "host", "pid", "user", "exclusive", "operation"}` (docs/FORMAT.md "Locks").
Backups, checks and restores take shared locks; prune takes an exclusive one. Both
sides write their own lock first and only then list the others, so two processes
racing each see the other and at least one backs off: a shared lock gives way to an
exclusive one, and an exclusive one to any other. Nothing is ever lost by backing
off; the daemon retries at its next run.

A process that dies leaves its lock behind. A lock is stale, and ignored, when it was
not refreshed for STALE_AFTER, or when it was written on this host by a process that
no longer exists. Holders refresh their lock every REFRESH_EVERY from a background
thread, well inside STALE_AFTER, so a long backup is never taken for a dead one.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import getpass
import json
import os
import socket
import threading
import weakref
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Callable, Iterator

from agent import clock, timefmt
from agent.errors import IntegrityError, ObjectNotFound, PermissionDenied, RepositoryLocked, StorageError
from agent.processes import process_exists
from agent.repo import layout
from agent.repo.repository import Repository
from agent.storage.base import ObjectInfo

# A holder rewrites its lock this often...
REFRESH_EVERY = _dt.timedelta(minutes=5)
# ...and a lock older than this is a dead process's. Six missed refreshes: a slow or
# briefly unreachable storage does not make a live backup look dead, and a clock
# skew of the ±20 minutes seen on badly synchronised servers is absorbed.
STALE_AFTER = _dt.timedelta(minutes=30)


# The locks this process holds, by repository: what require_lock() asks. A repository
# read without a lock because its storage cannot take one (shared_lock_for_reading) is
# noted as UNWRITTEN: the reader tried, and reading goes on.
UNWRITTEN = "unwritten"
_held: "weakref.WeakKeyDictionary[Repository, list[object]]" = weakref.WeakKeyDictionary()


def _note_held(repo: Repository, holder: object) -> None:
    _held.setdefault(repo, []).append(holder)


def _note_released(repo: Repository, holder: object) -> None:
    holders = _held.get(repo, [])
    if holder in holders:
        holders.remove(holder)


def require_lock(repo: Repository, operation: str, *, exclusive: bool = False,
                 written: bool = False) -> "RepositoryLock | None":
    """For an engine's run: the lock it needs must be held by this process already (the
    command took it when it opened the repository, agent/cli/opening.py). Missing, it is a
    programming error, said loudly: an engine never runs unlocked by accident. A writer
    (`written`) needs a lock written in the repository, not a reading noted without one.
    Returns the strongest lock held (None when only a reading without a lock is noted)."""
    holders = _held.get(repo, [])
    locks = [h for h in holders if isinstance(h, RepositoryLock)]
    if exclusive:
        locks = [lock for lock in locks if lock.exclusive]
        if not locks:
            raise AssertionError(f"{operation} needs an exclusive lock on the repository, and none is held")
    elif not holders:
        raise AssertionError(f"{operation} needs a lock on the repository (shared or exclusive), and none is held")
    elif written and not locks:
        raise AssertionError(f"{operation} writes: it needs a lock written in the repository, and none is held")
    return max(locks, key=lambda lock: lock.exclusive, default=None)


@dataclass(frozen=True)
class LockInfo:
    lock_id: bytes
    time: _dt.datetime
    host: str
    pid: int
    user: str
    exclusive: bool
    operation: str

    def describe(self) -> str:
        kind = "exclusive" if self.exclusive else "shared"
        return (f"{self.operation} ({kind} lock) by {self.user}@{self.host} pid {self.pid} "
                f"since {timefmt.shown(self.time, None)}")  # in the locking machine's zone, named

    def is_stale(self, now: _dt.datetime) -> bool:
        if now - self.time > STALE_AFTER:
            return True
        if self.host == socket.gethostname() and self.pid != os.getpid():
            return not process_exists(self.pid)
        return False


class RepositoryLock:
    """Context manager: `with RepositoryLock(repo, "backup"):` (shared) or exclusive=True."""

    def __init__(self, repo: Repository, operation: str, *, exclusive: bool = False,
                 on_written: Callable[[], None] | None = None) -> None:
        self.repo = repo
        self._on_written = on_written  # called once the lock is written, before the others are listed
        # Listings made before the lock (while opening) are not what the holder reads:
        # a prune must see every snapshot saved before its lock, a backup every index.
        repo.forget_listings()
        self.operation = operation
        self.exclusive = exclusive
        self.lock_id = os.urandom(16)
        self._stop = threading.Event()
        self._refresher: threading.Thread | None = None
        self.refresh_error: Exception | None = None

    # ---- taking and releasing ------------------------------------------------------

    def acquire(self) -> "RepositoryLock":
        self._write()
        if self._on_written is not None:
            self._on_written()
        try:
            conflicts = [other for other in list_locks(self.repo, but=self.lock_id)
                         if not other.is_stale(clock.now())
                         and (self.exclusive or other.exclusive)]
        except BaseException:
            self._remove()
            raise
        if conflicts:
            self._remove()
            raise RepositoryLocked(
                f"the repository is in use: {conflicts[0].describe()}",
                hint="wait for it to finish; a lock left by a crashed process is ignored after "
                     f"{int(STALE_AFTER.total_seconds() // 60)} minutes")
        self._refresher = threading.Thread(target=self._refresh_loop, name="lock-refresh", daemon=True)
        self._refresher.start()
        _note_held(self.repo, self)
        return self

    def release(self) -> None:
        _note_released(self.repo, self)
        self._stop.set()
        if self._refresher is not None:
            self._refresher.join()
            self._refresher = None
        self._remove()

    def __enter__(self) -> "RepositoryLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    # ---- the lock object ------------------------------------------------------------

    def _write(self) -> None:
        document = {
            "time": clock.now().isoformat(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "user": _user(),
            "exclusive": self.exclusive,
            "operation": self.operation,
        }
        self.repo.write_lock_object(self.lock_id, json.dumps(document).encode("utf-8"))

    def _remove(self) -> None:
        try:
            self.repo.delete_lock_object(self.lock_id)
        except (ObjectNotFound, StorageError, PermissionDenied):
            pass  # already gone, or unreachable: it goes stale by itself

    def _refresh_loop(self) -> None:
        while not self._stop.wait(REFRESH_EVERY.total_seconds()):
            try:
                self._write()
            except (StorageError, PermissionDenied) as exc:  # retried at the next period; stale only after several
                self.refresh_error = exc


@contextlib.contextmanager
def shared_lock_for_reading(repo: Repository, operation: str) -> Iterator[RepositoryLock | None]:
    """A shared lock for an operation that only reads (restore, check). If the lock
    cannot even be written (a read-only medium, read-only credentials during a
    recovery), the operation goes on unlocked: it reads only, and every file it
    restores is verified anyway. Yields the lock, or None when it could not be taken."""
    lock = RepositoryLock(repo, operation)
    try:
        lock.acquire()
    except RepositoryLocked:
        raise
    except (StorageError, PermissionDenied):  # the lock cannot be written: reading may go on
        _note_held(repo, UNWRITTEN)
        try:
            yield None
        finally:
            _note_released(repo, UNWRITTEN)
        return
    try:
        yield lock
    finally:
        lock.release()


class PendingLock:
    """A shared lock being taken in the background (overlapped_shared_lock). As soon as the
    lock is written, index/ is listed alongside the other locks, for the holder's
    load_index: the index is then read as of the lock, exactly as when the lock was taken
    first (a prune that ended before it is seen; one that starts after it waits for us)."""

    def __init__(self, repo: Repository, operation: str) -> None:
        self.lock = RepositoryLock(repo, operation, on_written=self._list_index)
        self._index_listing: Future[list[ObjectInfo]] = Future()
        self._listing_started = False  # both set and read by the acquiring thread
        repo.expect_listing(layout.INDEX_PREFIX, self._index_listing)
        self._repo = repo
        self.error: BaseException | None = None
        self._acquired = False
        self._thread = threading.Thread(target=self._acquire, name="lock-acquire", daemon=True)
        self._thread.start()

    def _list_index(self) -> None:
        self._listing_started = True
        threading.Thread(target=self._fill_index_listing, name="lock-index-listing", daemon=True).start()

    def _fill_index_listing(self) -> None:
        try:
            self._index_listing.set_result(list(self._repo.storage.list(layout.INDEX_PREFIX)))
        except BaseException as exc:  # load_index lists again and says it
            self._index_listing.set_exception(exc)

    def _acquire(self) -> None:
        try:
            self.lock.acquire()
            self._acquired = True
        except BaseException as exc:  # said by confirmed(), in the caller's thread
            self.error = exc
        finally:
            if not self._listing_started:  # never written: load_index lists by itself
                self._index_listing.set_exception(StorageError("the lock was not written"))

    def confirmed(self) -> RepositoryLock | None:
        """Wait until the lock is taken: call it before anything is written. Raises
        RepositoryLocked on a conflict; None when the lock cannot even be written (the
        reading goes on unlocked, as shared_lock_for_reading says why)."""
        self._thread.join()
        if self.error is None:
            return self.lock
        if isinstance(self.error, (StorageError, PermissionDenied)) and not isinstance(self.error, RepositoryLocked):
            return None
        raise self.error

    def release(self) -> None:
        self._thread.join()
        if self._acquired:
            self.lock.release()
            self._acquired = False


@contextlib.contextmanager
def overlapped_shared_lock(repo: Repository, operation: str) -> Iterator[PendingLock]:
    """shared_lock_for_reading, its round trips (the lock written, its upload checked, the
    others listed and read) overlapped with the reading: over a WAN a restore reads the index
    and the folder listings meanwhile, instead of waiting three or four round trips first.
    Reading before the lock is confirmed is harmless (nothing is written, and everything
    read is verified); the body calls `confirmed()` on the PendingLock it is given before it
    writes anything, and a conflict is said at the end even when the body wrote nothing
    (a dry run). If the body fails while a prune holds the repository (its reads may meet
    packs being deleted), the conflict is what is said, as if the lock had come first."""
    pending = PendingLock(repo, operation)
    try:
        yield pending
        pending.confirmed()
    except BaseException as exc:
        pending.release()
        if isinstance(pending.error, RepositoryLocked) and exc is not pending.error:
            raise pending.error from exc
        raise
    finally:
        pending.release()


def list_locks(repo: Repository, *, but: bytes | None = None) -> list[LockInfo]:
    """Every readable lock (but the one whose id is `but`: our own, which a lock being
    taken need not read back, a round trip over a WAN). A lock that cannot be decrypted or
    parsed counts as a foreign exclusive lock: better to stop than to prune under an
    unknown writer."""
    locks = []
    for lock_id in repo.list_lock_ids():
        if lock_id == but:
            continue
        try:
            document = json.loads(repo.read_lock_object(lock_id))
            locks.append(LockInfo(lock_id, _dt.datetime.fromisoformat(document["time"]),
                                  str(document["host"]), int(document["pid"]), str(document["user"]),
                                  bool(document["exclusive"]), str(document["operation"])))
        except ObjectNotFound:
            continue  # released meanwhile
        except (IntegrityError, ValueError, KeyError, TypeError) as exc:
            locks.append(LockInfo(lock_id, clock.now(), "?", 0, "?", True, f"unreadable lock ({exc})"))
    return locks


def remove_stale_locks(repo: Repository) -> list[LockInfo]:
    """Delete the locks left by dead processes; returns them."""
    removed = []
    now = clock.now()
    for lock in list_locks(repo):
        if lock.host != "?" and lock.is_stale(now):
            try:
                repo.delete_lock_object(lock.lock_id)
                removed.append(lock)
            except (ObjectNotFound, StorageError):
                pass
    return removed


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())

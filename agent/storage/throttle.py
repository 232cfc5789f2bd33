"""Bounded concurrency and an optional bandwidth cap, around any Storage.

The practice's uplink is shared with teleconsultation: `bandwidth_limit_kib` caps the
bytes per second moved by all threads together (a token bucket), and
`max_concurrency` bounds simultaneous requests.

The optional capabilities of the storage wrapped (agent/storage/base.py) are wrapped too,
each only where the inner storage has it (`wrapper_class`): their requests take a slot like
any other, and nothing reaches the backend around the limits.
"""

from __future__ import annotations

import datetime as _dt
import threading
import time
from typing import Any, Callable, Iterator, cast

from agent.storage.base import (ForwardNetworkStorage, ForwardProbeFacts, ForwardServerClock, NetworkStorage,
                                ObjectInfo, ObjectLocking, Probing, ServerClock, Storage, VersionCleanup, wrapper_class)


class _TokenBucket:
    def __init__(self, rate_bytes: float, *, monotonic: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.rate = rate_bytes
        self.capacity = max(rate_bytes, 64 * 1024)  # at most one second of burst
        self.tokens = self.capacity
        self._monotonic = monotonic
        self._sleep = sleep
        self.updated = monotonic()
        self._lock = threading.Lock()

    def take(self, amount: int) -> None:
        """Account for `amount` bytes, sleeping off any debt beyond the burst allowance.

        Tokens may go negative: each caller sleeps exactly the time its own transfer
        needs at the configured rate, so threads together never exceed it on average.
        """
        with self._lock:
            now = self._monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
            self.tokens -= amount
            debt = -self.tokens if self.tokens < 0 else 0.0
        if debt:
            self._sleep(debt / self.rate)


class ThrottledStorage:
    def __new__(cls, inner: Storage, **_settings: Any) -> "ThrottledStorage":
        if cls is ThrottledStorage:  # the subclass exposing exactly inner's capabilities
            cls = wrapper_class(ThrottledStorage, inner, _IMPLEMENTATIONS)
        return super().__new__(cls)

    def __init__(self, inner: Storage, *, max_concurrency: int = 4, bandwidth_limit_kib: int = 0,
                 monotonic: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.inner = inner
        self._slots = threading.BoundedSemaphore(max(1, max_concurrency))
        self._bucket = (_TokenBucket(bandwidth_limit_kib * 1024, monotonic=monotonic, sleep=sleep)
                        if bandwidth_limit_kib > 0 else None)

    def _transfer(self, size: int) -> None:
        if self._bucket is not None:
            self._bucket.take(size)

    def describe(self) -> str:
        return self.inner.describe()

    def exists(self, name: str) -> bool:
        with self._slots:
            return self.inner.exists(name)

    def read(self, name: str, *, max_size: int | None = None) -> bytes:
        with self._slots:
            data = self.inner.read(name, max_size=max_size)
        self._transfer(len(data))
        return data

    def read_range(self, name: str, offset: int, length: int) -> bytes:
        self._transfer(length)
        with self._slots:
            return self.inner.read_range(name, offset, length)

    def write(self, name: str, data: bytes, *, exclusive: bool = False, random_name: bool = False,
              ephemeral: bool = False) -> None:
        self._transfer(len(data))
        with self._slots:
            self.inner.write(name, data, exclusive=exclusive, random_name=random_name, ephemeral=ephemeral)

    def delete(self, name: str, *, ephemeral: bool = False) -> None:
        with self._slots:
            self.inner.delete(name, ephemeral=ephemeral)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        with self._slots:
            return iter(list(self.inner.list(prefix)))

    def stat(self, name: str) -> ObjectInfo:
        with self._slots:
            return self.inner.stat(name)


# ---- the optional capabilities, each only where the inner storage has it ------------------
# (`wrapper_class` picks each of these only for an inner storage that has the capability,
# hence the casts). None of them moves object bodies worth counting against the bandwidth
# cap: a lock date, a probe of 24 bytes, listings and deletions of old versions.

class _ObjectLocking(ThrottledStorage):
    @property
    def object_lock_enabled(self) -> bool:
        return cast(ObjectLocking, self.inner).object_lock_enabled

    def retention(self, name: str) -> _dt.datetime | None:
        with self._slots:
            return cast(ObjectLocking, self.inner).retention(name)

    def extend_retention(self, name: str, until: _dt.datetime) -> None:
        with self._slots:
            cast(ObjectLocking, self.inner).extend_retention(name, until)


class _Probing(ForwardProbeFacts, ThrottledStorage):
    def probe(self) -> dict[str, Any]:
        with self._slots:
            return cast(Probing, self.inner).probe()


class _VersionCleanup(ThrottledStorage):
    def cleanup(self, *, dry_run: bool, older_than: _dt.timedelta = _dt.timedelta(days=1)) -> dict[str, Any]:
        with self._slots:  # one slot: the cleanup makes its requests one after the other
            return cast(VersionCleanup, self.inner).cleanup(dry_run=dry_run, older_than=older_than)


class _ServerClock(ForwardServerClock, ThrottledStorage):
    pass


class _NetworkStorage(ForwardNetworkStorage, ThrottledStorage):
    pass


_IMPLEMENTATIONS: list[tuple[type, type[ThrottledStorage]]] = [
    (ObjectLocking, _ObjectLocking), (Probing, _Probing), (VersionCleanup, _VersionCleanup),
    (ServerClock, _ServerClock), (NetworkStorage, _NetworkStorage)]

"""Bounded concurrency and an optional bandwidth cap, around any Storage.

The practice's uplink is shared with teleconsultation: `bandwidth_limit_kib` caps the
bytes per second moved by all threads together (a token bucket), and
`max_concurrency` bounds simultaneous requests.
"""

from __future__ import annotations

import threading
import time
from typing import Iterator

from agent.storage.base import ObjectInfo, Storage


class _TokenBucket:
    def __init__(self, rate_bytes: float, *, monotonic=time.monotonic, sleep=time.sleep) -> None:
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
    def __init__(self, inner: Storage, *, max_concurrency: int = 4, bandwidth_limit_kib: int = 0,
                 monotonic=time.monotonic, sleep=time.sleep) -> None:
        self.inner = inner
        self._slots = threading.BoundedSemaphore(max(1, max_concurrency))
        self._bucket = (_TokenBucket(bandwidth_limit_kib * 1024, monotonic=monotonic, sleep=sleep)
                        if bandwidth_limit_kib > 0 else None)

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

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

    def write(self, name: str, data: bytes, *, exclusive: bool = False, **extra) -> None:
        self._transfer(len(data))
        with self._slots:
            self.inner.write(name, data, exclusive=exclusive, **extra)

    def delete(self, name: str) -> None:
        with self._slots:
            self.inner.delete(name)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        with self._slots:
            return iter(list(self.inner.list(prefix)))

    def stat(self, name: str) -> ObjectInfo:
        with self._slots:
            return self.inner.stat(name)

"""Retries above the backend's own: exponential backoff with full jitter.

Every Storage operation of ours is idempotent (objects are immutable and written
whole), so any operation that failed with `TransientStorageError` can be repeated.
botocore retries a few times on its own; this loop covers longer outages (a provider
answering 503 for a minute) without failing a weekly backup.

One subtlety: an exclusive write whose response was lost may have succeeded; the
retry then finds the object existing. It is a success if the stored bytes are ours.
"""

from __future__ import annotations

import random
import time
from typing import Callable, Iterator, TypeVar

from agent.errors import StorageError, TransientStorageError
from agent.storage.base import ObjectInfo, Storage

T = TypeVar("T")

DEFAULT_ATTEMPTS = 6
BASE_DELAY_S = 0.5
MAX_DELAY_S = 30.0


class RetryingStorage:
    def __init__(self, inner: Storage, *, attempts: int = DEFAULT_ATTEMPTS,
                 base_delay: float = BASE_DELAY_S, max_delay: float = MAX_DELAY_S,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.inner = inner
        self.attempts = max(1, attempts)
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._sleep = sleep
        self.retries = 0  # how many operations were repeated (for reports and tests)

    def __getattr__(self, name: str):
        return getattr(self.inner, name)  # backend-specific extras (probe, retention, ...)

    def _call(self, operation: Callable[[], T]) -> T:
        for attempt in range(1, self.attempts + 1):
            try:
                return operation()
            except TransientStorageError:
                if attempt == self.attempts:
                    raise
                self.retries += 1
                delay = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
                self._sleep(random.uniform(0, delay))
        raise AssertionError("unreachable")

    def describe(self) -> str:
        return self.inner.describe()

    def exists(self, name: str) -> bool:
        return self._call(lambda: self.inner.exists(name))

    def read(self, name: str, *, max_size: int | None = None) -> bytes:
        return self._call(lambda: self.inner.read(name, max_size=max_size))

    def read_range(self, name: str, offset: int, length: int) -> bytes:
        return self._call(lambda: self.inner.read_range(name, offset, length))

    def write(self, name: str, data: bytes, *, exclusive: bool = False, **extra) -> None:
        failed_once = False

        def attempt() -> None:
            nonlocal failed_once
            try:
                self.inner.write(name, data, exclusive=exclusive, **extra)
            except TransientStorageError:
                failed_once = True
                raise
            except StorageError:
                if exclusive and failed_once and self.inner.read(name) == data:
                    return  # our earlier attempt landed; only its answer was lost
                raise

        self._call(attempt)

    def delete(self, name: str) -> None:
        self._call(lambda: self.inner.delete(name))

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        # Listing is retried as a whole: a partial listing must never be taken for all.
        return iter(self._call(lambda: list(self.inner.list(prefix))))

    def stat(self, name: str) -> ObjectInfo:
        return self._call(lambda: self.inner.stat(name))

"""Retries above the backend's own: exponential backoff with full jitter.

Every Storage operation of ours is idempotent (objects are immutable and written
whole), so any operation that failed with `TransientStorageError` can be repeated.
botocore retries a few times on its own; this loop covers longer outages (a provider
answering 503 for a minute) without failing a weekly backup.

Whoever shows progress can watch the loop (`watch(observer)`): each wait before a retry
and the first success after one are told as a `RetryNotice`, so a progress bar says
"S3 server not answering, retry 3 in 8 s" instead of a rate frozen for minutes. The
observer is a plain callable: this layer knows nothing of who draws what.

Only `TransientStorageError` is repeated: a permanent failure (access denied, an object
that exists where `exclusive=True` wanted none, a missing object) would fail the same
way again, and is raised at once.

One subtlety: an exclusive write whose response was lost may have succeeded; the
retry then finds the object existing (ObjectExists). It is a success if the stored bytes
are ours.

The optional capabilities of the storage wrapped (agent/storage/base.py: object lock,
probing, version cleanup, the server's clock) are retried the same way: a wrapper around
a backend that has one is an instance of a subclass implementing it (`wrapper_class`), and
one around a backend without it does not have it either. Nothing is forwarded unseen.
"""

from __future__ import annotations

import datetime as _dt
import random
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, TypeVar, cast

from agent.errors import ObjectExists, TransientStorageError
from agent.storage.base import (ForwardNetworkStorage, ForwardProbeFacts, ForwardServerClock, NetworkStorage,
                                ObjectInfo, ObjectLocking, Probing, ServerClock, Storage, VersionCleanup, wrapper_class)

T = TypeVar("T")

DEFAULT_ATTEMPTS = 6
BASE_DELAY_S = 0.5
MAX_DELAY_S = 30.0


@dataclass(frozen=True)
class RetryNotice:
    """One event of the retry loop. `retry` is the number of the retry about to be made
    (1 for the second attempt) and `delay_s` the wait before it; `answered` says the
    storage answered again after at least one retry (retry and delay_s are then 0)."""
    label: str  # who stopped answering, for people: "S3 server"
    retry: int = 0
    delay_s: float = 0.0
    answered: bool = False
    problem: str = ""  # the last failure's message (never credentials: see storage/s3.py)


RetryObserver = Callable[[RetryNotice], None]


class RetryingStorage:
    def __new__(cls, inner: Storage, **_settings: Any) -> "RetryingStorage":
        if cls is RetryingStorage:  # the subclass exposing exactly inner's capabilities
            cls = wrapper_class(RetryingStorage, inner, _IMPLEMENTATIONS)
        return super().__new__(cls)

    def __init__(self, inner: Storage, *, attempts: int = DEFAULT_ATTEMPTS,
                 base_delay: float = BASE_DELAY_S, max_delay: float = MAX_DELAY_S,
                 sleep: Callable[[float], None] = time.sleep, label: str = "storage") -> None:
        self.inner = inner
        self.label = label
        self._observers: list[RetryObserver] = []
        self.attempts = max(1, attempts)
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._sleep = sleep
        self.retries = 0  # how many operations were repeated (for reports and tests)

    def watch(self, observer: RetryObserver) -> Callable[[], None]:
        """Tell `observer` of every wait before a retry and of the first answer after one
        (from whichever thread made the call); returns what stops the watching."""
        self._observers.append(observer)
        return lambda: self._observers.remove(observer) if observer in self._observers else None

    def _tell(self, notice: RetryNotice) -> None:
        for observer in list(self._observers):
            observer(notice)

    def _call(self, operation: Callable[[], T]) -> T:
        for attempt in range(1, self.attempts + 1):
            try:
                result = operation()
            except TransientStorageError as exc:
                if attempt == self.attempts:
                    raise
                self.retries += 1
                delay = random.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))
                self._tell(RetryNotice(self.label, retry=attempt, delay_s=delay, problem=str(exc)))
                self._sleep(delay)
            else:
                if attempt > 1:
                    self._tell(RetryNotice(self.label, answered=True))
                return result
        raise AssertionError("unreachable")

    def describe(self) -> str:
        return self.inner.describe()

    def exists(self, name: str) -> bool:
        return self._call(lambda: self.inner.exists(name))

    def read(self, name: str, *, max_size: int | None = None) -> bytes:
        return self._call(lambda: self.inner.read(name, max_size=max_size))

    def read_range(self, name: str, offset: int, length: int) -> bytes:
        return self._call(lambda: self.inner.read_range(name, offset, length))

    def write(self, name: str, data: bytes, *, exclusive: bool = False, random_name: bool = False,
              ephemeral: bool = False) -> None:
        failed_once = False

        def attempt() -> None:
            nonlocal failed_once
            try:
                self.inner.write(name, data, exclusive=exclusive, random_name=random_name, ephemeral=ephemeral)
            except TransientStorageError:
                failed_once = True
                raise
            except ObjectExists:
                if failed_once and self.inner.read(name) == data:
                    return  # our earlier attempt landed; only its answer was lost
                raise

        self._call(attempt)

    def delete(self, name: str, *, ephemeral: bool = False) -> None:
        self._call(lambda: self.inner.delete(name, ephemeral=ephemeral))

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        # Listing is retried as a whole: a partial listing must never be taken for all.
        return iter(self._call(lambda: list(self.inner.list(prefix))))

    def stat(self, name: str) -> ObjectInfo:
        return self._call(lambda: self.inner.stat(name))


# ---- the optional capabilities, each only where the inner storage has it ------------------


# `wrapper_class` picks each of these only for an inner storage that has the capability,
# hence the casts.

class _ObjectLocking(RetryingStorage):
    @property
    def object_lock_enabled(self) -> bool:
        return cast(ObjectLocking, self.inner).object_lock_enabled

    def retention(self, name: str) -> _dt.datetime | None:
        return self._call(lambda: cast(ObjectLocking, self.inner).retention(name))

    def extend_retention(self, name: str, until: _dt.datetime) -> None:
        # Idempotent: the date only ever moves later, so a repeated request is harmless.
        self._call(lambda: cast(ObjectLocking, self.inner).extend_retention(name, until))


class _Probing(ForwardProbeFacts, RetryingStorage):
    def probe(self) -> dict[str, Any]:
        # A repeated probe writes its test object under a new random name: nothing collides.
        return self._call(lambda: cast(Probing, self.inner).probe())


class _VersionCleanup(RetryingStorage):
    def cleanup(self, *, dry_run: bool, older_than: _dt.timedelta = _dt.timedelta(days=1)) -> dict[str, Any]:
        # Repeated as a whole: a new attempt lists again and finds only what is left, so the
        # counts are of what the last attempt did (what a failed one deleted is gone already).
        return self._call(lambda: cast(VersionCleanup, self.inner).cleanup(dry_run=dry_run, older_than=older_than))


class _ServerClock(ForwardServerClock, RetryingStorage):
    pass


class _NetworkStorage(ForwardNetworkStorage, RetryingStorage):
    pass


_IMPLEMENTATIONS: list[tuple[type, type[RetryingStorage]]] = [
    (ObjectLocking, _ObjectLocking), (Probing, _Probing), (VersionCleanup, _VersionCleanup),
    (ServerClock, _ServerClock), (NetworkStorage, _NetworkStorage)]

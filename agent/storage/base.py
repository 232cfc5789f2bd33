"""The Storage contract every backend honours (modelled on kopia's repo/blob).

Names are relative, '/'-separated ASCII keys built only by `agent.repo.layout`
(e.g. "data/3f/3f9a...", "snapshots/ab12..."). A backend stores opaque bytes.

Contract, checked for every backend by tests/unit/storage/test_conformance.py:

* `write(name, data)` is atomic and durable: when it returns, a later `read` (from
  this or another process) returns exactly `data`; a crash at any point leaves either
  no object or the complete object, never a truncated one. With `exclusive=True` it
  raises `ObjectExists` if the object exists (used by `init` to never overwrite), and
  leaves that object as it was. Overwriting an existing object with the same bytes must
  succeed (content-addressed packs may be written twice after an interrupted run).
* What a backend cannot tell from a name, the caller says with each write (a backend
  knows no repository names; `agent.repo` decides): `random_name=True` says the name was
  drawn at random for this very write, so an object found there after one of this write's
  own attempts failed is that attempt's (S3 may then delete one stored altered, and write
  again); `ephemeral=True` marks a coordination object that lives minutes and is
  rewritten (a repository lock): never kept under an object lock, and a backend may skip
  verifying its upload. `delete(name, ephemeral=True)` removes such an object without
  first asking for a lock it cannot have (and may then not notice a missing one). Backends
  without such powers accept these options and ignore them.
* `read(name, max_size=None)` returns the full object, `read_range(name, offset, length)`
  exactly `length` bytes; both raise `ObjectNotFound` for a missing object. With
  `max_size`, an object larger than that raises `ForeignObject` naming it, and no more than
  `max_size + 1` bytes are ever held (the size is checked before the body is read).
* Something at a name that is not a stored object (on a disk: a FIFO, a device, a symbolic
  link) raises `ForeignObject` on `read`, `read_range` and `stat`; it is never opened in a
  way that can block, nor followed.
* `list(prefix)` yields every complete object whose name starts with `prefix`, in no
  particular order, with its size; it never yields partial or temporary objects. A
  non-object entry (see above) is yielded too, so that reading it reports it instead of it
  hiding silently.
* `delete(name)` removes an object; deleting a missing object raises ObjectNotFound.
* All failures are `StorageError` (or subclasses); no backend-specific exception
  escapes. Only `TransientStorageError` is worth repeating (storage/retry.py repeats
  nothing else).

Optional capabilities (like kopia's optional blob interfaces next to blob.Storage): a
backend that has one of the powers below implements its protocol, and a caller asks
`isinstance(storage, ObjectLocking)` before using it, never `getattr`. The wrappers
(retry.py, throttle.py) implement each capability their inner storage has, explicitly
and through their retries and limits, and none that it lacks (`wrapper_class`).
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Protocol, Sequence, TypeVar, cast, runtime_checkable

from agent.storage.verification import Verification


@dataclass(frozen=True)
class ObjectInfo:
    name: str
    size: int


class Storage(Protocol):
    def describe(self) -> str:
        """A human description of where the data lives (no secrets)."""

    def exists(self, name: str) -> bool: ...

    def read(self, name: str, *, max_size: int | None = None) -> bytes: ...

    def read_range(self, name: str, offset: int, length: int) -> bytes: ...

    def write(self, name: str, data: bytes, *, exclusive: bool = False, random_name: bool = False,
              ephemeral: bool = False) -> None: ...

    def delete(self, name: str, *, ephemeral: bool = False) -> None: ...

    def list(self, prefix: str) -> Iterator[ObjectInfo]: ...

    def stat(self, name: str) -> ObjectInfo: ...


# ---- optional capabilities ------------------------------------------------------------------


@runtime_checkable
class ObjectLocking(Protocol):
    """Objects written under a retain-until date (S3 object lock, rule S8): no one can delete
    or overwrite them before it, this program included."""

    @property
    def object_lock_enabled(self) -> bool:
        """Whether this repository's objects are written under a lock (configured so)."""

    def retention(self, name: str) -> _dt.datetime | None:
        """The object's retain-until date, None when it is not locked."""

    def extend_retention(self, name: str, until: _dt.datetime) -> None:
        """Keep `name` locked until at least `until` (never moves a date earlier)."""


@runtime_checkable
class Probing(Protocol):
    """An endpoint that `init` probes for what it supports, and whose uploads are verified
    in the way the probe's facts allow (agent/storage/verification.py)."""

    def probe(self) -> dict[str, Any]:
        """Facts about the endpoint and bucket (writes and deletes one small object)."""

    def require_object_lock(self, facts: dict[str, Any]) -> None:
        """Refuse (StorageError) a bucket whose probed facts cannot enforce the configured lock."""

    def verification(self) -> Verification:
        """How uploads are verified now."""

    def use_probe_facts(self, facts: dict[str, Any] | None) -> None:
        """Facts of an earlier probe of this endpoint (recorded in the state directory)."""

    def record_probes_with(self, record: Callable[[dict[str, Any]], None]) -> None:
        """`record(facts)` is told of a probe the storage makes by itself."""


@runtime_checkable
class VersionCleanup(Protocol):
    """A versioned store whose old versions and stale uploads can be cleaned on request."""

    def cleanup(self, *, dry_run: bool, older_than: _dt.timedelta = _dt.timedelta(days=1)) -> dict[str, Any]:
        """Delete expired old versions and abort stale uploads; returns the counts."""


@runtime_checkable
class ServerClock(Protocol):
    """A server that stamps its answers with its clock."""

    def clock_skew(self) -> _dt.timedelta | None:
        """The server's clock minus ours at the last answer (None before any answer)."""


@runtime_checkable
class NetworkStorage(Protocol):
    """A store reached over a network: each request waits a round trip, so several are
    worth running at once, and its client is not to be used in a forked process."""

    @property
    def max_concurrency(self) -> int:
        """How many requests may run at once (S3's `max_concurrency`)."""


# ---- what a wrapper passes through as it is ---------------------------------------------
# The calls of a capability that make no request: a wrapper has nothing to retry or to
# throttle there, so retry and throttle share these forwards (each wrapper keeps `inner`).


class ForwardProbeFacts:
    """Probing's calls that judge or record facts without a request."""

    inner: Storage

    def require_object_lock(self, facts: dict[str, Any]) -> None:
        cast(Probing, self.inner).require_object_lock(facts)

    def verification(self) -> Verification:
        return cast(Probing, self.inner).verification()

    def use_probe_facts(self, facts: dict[str, Any] | None) -> None:
        cast(Probing, self.inner).use_probe_facts(facts)

    def record_probes_with(self, record: Callable[[dict[str, Any]], None]) -> None:
        cast(Probing, self.inner).record_probes_with(record)


class ForwardServerClock:
    """ServerClock: what the last answer said, no request of its own."""

    inner: Storage

    def clock_skew(self) -> _dt.timedelta | None:
        return cast(ServerClock, self.inner).clock_skew()


class ForwardNetworkStorage:
    """NetworkStorage: a setting of the backend."""

    inner: Storage

    @property
    def max_concurrency(self) -> int:
        return cast(NetworkStorage, self.inner).max_concurrency


CAPABILITIES: tuple[type, ...] = (ObjectLocking, Probing, VersionCleanup, ServerClock, NetworkStorage)

W = TypeVar("W")
_composed: dict[tuple[type, ...], type] = {}


def wrapper_class(wrapper: type[W], inner: object, implementations: Sequence[tuple[type, type[W]]]) -> type[W]:
    """The class of a `wrapper` around `inner`: for each (capability, subclass of `wrapper`
    implementing it by wrapping) of `implementations` that `inner` has, that subclass. A
    wrapper so exposes exactly the capabilities of what it wraps: an `isinstance` check on it
    answers as it would on the backend, and each call of a capability reaches the backend
    through the wrapper's own retries and limits. Each combination's class is made once."""
    chosen = tuple(impl for capability, impl in implementations if isinstance(inner, capability))
    if not chosen:
        return wrapper
    composed = _composed.get(chosen)
    if composed is None:  # setdefault: two threads racing here still agree on one class
        name = wrapper.__name__ + "".join("+" + c.__name__.lstrip("_") for c in chosen)
        composed = _composed.setdefault(chosen, type(name, chosen, {"__module__": wrapper.__module__}))
    return cast("type[W]", composed)

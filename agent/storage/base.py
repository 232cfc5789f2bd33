"""The Storage contract every backend honours (modelled on kopia's repo/blob).

Names are relative, '/'-separated ASCII keys built only by `agent.repo.layout`
(e.g. "data/3f/3f9a...", "snapshots/ab12..."). A backend stores opaque bytes.

Contract, checked for every backend by tests/unit/storage/test_conformance.py:

* `write(name, data)` is atomic and durable: when it returns, a later `read` (from
  this or another process) returns exactly `data`; a crash at any point leaves either
  no object or the complete object, never a truncated one. With `exclusive=True` it
  raises `StorageError` if the object exists (used by `init` to never overwrite).
  Overwriting an existing object with the same bytes must succeed (content-addressed
  packs may be written twice after an interrupted run).
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
  escapes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Protocol


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

    def write(self, name: str, data: bytes, *, exclusive: bool = False) -> None: ...

    def delete(self, name: str) -> None: ...

    def list(self, prefix: str) -> Iterator[ObjectInfo]: ...

    def stat(self, name: str) -> ObjectInfo: ...

"""An in-memory Storage for tests: the reference implementation of the contract."""

from __future__ import annotations

import threading
from typing import Iterator

from agent.errors import ForeignObject, ObjectExists, ObjectNotFound, StorageError
from agent.storage.base import ObjectInfo


class MemoryStorage:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def describe(self) -> str:
        return "memory"

    def exists(self, name: str) -> bool:
        return name in self.objects

    def read(self, name: str, *, max_size: int | None = None) -> bytes:
        try:
            data = self.objects[name]
        except KeyError:
            raise ObjectNotFound(f"object {name} is missing") from None
        if max_size is not None and len(data) > max_size:
            raise ForeignObject(f"object {name} is {len(data)} bytes, more than any such object "
                                f"({max_size}): not read")
        return data

    def read_range(self, name: str, offset: int, length: int) -> bytes:
        data = self.read(name)[offset : offset + length]
        if len(data) != length:
            raise StorageError(f"object {name} is shorter than expected (truncated?)")
        return data

    def write(self, name: str, data: bytes, *, exclusive: bool = False, random_name: bool = False,
              ephemeral: bool = False) -> None:
        # random_name and ephemeral ask for nothing a dictionary could do otherwise.
        with self._lock:
            if exclusive and name in self.objects:
                raise ObjectExists(f"object {name} already exists")
            self.objects[name] = bytes(data)

    def delete(self, name: str, *, ephemeral: bool = False) -> None:
        with self._lock:
            if self.objects.pop(name, None) is None:
                raise ObjectNotFound(f"object {name} is missing")

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        with self._lock:
            items = [(n, len(d)) for n, d in self.objects.items() if n.startswith(prefix)]
        for name, size in items:
            yield ObjectInfo(name, size)

    def stat(self, name: str) -> ObjectInfo:
        return ObjectInfo(name, len(self.read(name)))

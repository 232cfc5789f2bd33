"""Reading a sparse file without reading its holes.

A virtual disk image or a preallocated database is mostly holes: reading them makes the
kernel produce zeros page by page (15 s of system time for a 5 GiB image here). The
chunker and the fingerprint still need those zeros, so this reader serves them from
memory and asks the file system only for its data, found with SEEK_DATA / SEEK_HOLE.
The bytes produced are exactly the file's: the backup is the same, only cheaper.
"""

from __future__ import annotations

import errno
import os
from typing import Protocol

_ZEROS = bytes(1 << 20)


def is_sparse(st: os.stat_result) -> bool:
    """Fewer blocks allocated than the size needs: the file has holes."""
    return st.st_blocks * 512 < st.st_size


class HasFileno(Protocol):
    """An open file: the reader uses only its descriptor."""

    def fileno(self) -> int: ...


class HoleSkippingReader:
    """A read-only binary stream over an open file (`readinto` and `read`), from the start."""

    def __init__(self, handle: HasFileno) -> None:
        self._handle = handle
        self._fd = handle.fileno()
        self._pos = 0
        self._hole_end = 0  # [pos, hole_end) is a hole
        self._data_end = 0  # [hole_end, data_end) is data

    def fileno(self) -> int:
        return self._fd

    def readinto(self, buffer: bytearray | memoryview) -> int:
        view = memoryview(buffer).cast("B")
        if not view:
            return 0
        if self._pos >= self._data_end:
            self._locate()
        if self._pos < self._hole_end:
            count = min(len(view), self._hole_end - self._pos)
            for start in range(0, count, len(_ZEROS)):
                end = min(count, start + len(_ZEROS))
                view[start:end] = _ZEROS[: end - start]
        else:
            count = os.preadv(self._fd, [view[: min(len(view), self._data_end - self._pos)]], self._pos)
        self._pos += count
        return count

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = max(0, os.fstat(self._fd).st_size - self._pos)
        buffer = bytearray(size)
        filled = 0
        while filled < size:
            count = self.readinto(memoryview(buffer)[filled:])
            if not count:
                break
            filled += count
        return bytes(buffer[:filled])

    def _locate(self) -> None:
        """Find the hole (possibly empty) and the data run that start at the position."""
        try:
            data = os.lseek(self._fd, self._pos, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno != errno.ENXIO:
                raise
            # No data after the position: a hole up to the end of the file (or the end).
            end = max(self._pos, os.fstat(self._fd).st_size)
            self._hole_end = self._data_end = end
            return
        self._hole_end = data
        self._data_end = os.lseek(self._fd, data, os.SEEK_HOLE)

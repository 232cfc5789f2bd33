"""Reading small files in worker processes, outside the backup's GIL (issue 19).

On 100,000 letters of 0.4-8 KiB the C work per file (read, SHA-256, keyed BLAKE3,
zstd, XChaCha20-Poly1305) is a few microseconds; the Python around it (open, read,
fstat, three calls, the result) is most of a file's cost, and with worker threads it
all ran under one GIL, beside the walk. A batch of paths goes to a worker process
instead, which returns, per file, everything the backup records and the blob already
sealed for its pack (agent.repo.sealing: the same code the repository seals with).

A file is opened with O_NOFOLLOW (the walk saw a regular file: a symbolic link put in
its place meanwhile is refused, not followed) and O_NOATIME when allowed. A file that
cannot be read gives its OSError in place of a result (the backup warns and goes on);
one that grew past `limit` since the walk gives GREW, and the backup reads it the
general way (the chunker decides where it is cut).

This module imports only what a worker needs, so a worker process starts quickly.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import signal
from typing import Final, Literal, NamedTuple

from agent.repo.pack import BLOB_DATA
from agent.repo.sealing import BlobSealer

GREW: Final = "grew"  # the file is larger than the batch limit now: read it the general way

# What `seal_small_files` returns for one file: (sha256 hex, size, then size, mtime_ns and
# ctime_ns after reading, chunk id or None for an empty file), its OSError, or GREW.
SmallFileRead = tuple[str, int, int, int, int, bytes | None]
SmallFileResult = SmallFileRead | OSError | Literal["grew"]
# A sealed part: (chunk id, start, length, plaintext length) in the spool's shared mapping,
# or (chunk id, sealed bytes, plaintext length) when the batch's slot was full.
SealedInSpool = tuple[bytes, int, int, int]
SealedApart = tuple[bytes, bytes, int]
SealedPart = SealedInSpool | SealedApart


class Stamp(NamedTuple):
    """What the backup compares after reading a file (the fields of os.stat_result it uses)."""

    st_size: int
    st_mtime_ns: int
    st_ctime_ns: int
_NOATIME = getattr(os, "O_NOATIME", 0)
_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC


def open_nofollow(path: bytes) -> int:
    """An fd on the regular file the walk saw, without updating its access time when
    allowed (O_NOATIME needs ownership), never through a symbolic link."""
    try:
        return os.open(path, _FLAGS | _NOATIME)
    except PermissionError:
        return os.open(path, _FLAGS)


def read_small(fd: int, size_hint: int, limit: int) -> bytes | None:
    """The whole content of an open file of at most `limit` bytes, or None if it has
    more. One read of the walked size plus one byte usually suffices (a read of
    `limit` bytes allocated 256 KiB for every 4 KiB letter)."""
    parts = []
    got = 0
    want = min(size_hint, limit) + 1
    while got <= limit:
        part = os.read(fd, want)
        if not part:
            break
        parts.append(part)
        got += len(part)
        want = limit + 1 - got
    if got > limit:
        return None
    return parts[0] if len(parts) == 1 else b"".join(parts)


def worker_init() -> None:
    """In each worker process, first: Ctrl-C on the terminal reaches the whole process
    group; the backup process handles it (it stops the pool), the workers ignore it
    instead of each printing a traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def interrupts_ignored() -> bool:
    return signal.getsignal(signal.SIGINT) == signal.SIG_IGN


# The spool each worker process maps, by path (one per backup).
_spools: dict[str, mmap.mmap] = {}


def _spool(path: str) -> mmap.mmap:
    mapped = _spools.get(path)
    if mapped is None:
        _spools.clear()  # a previous backup's spool is gone
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            mapped = _spools[path] = mmap.mmap(fd, 0)
        finally:
            os.close(fd)
    return mapped


def seal_small_files(sealer: BlobSealer, paths: list[bytes], sizes: list[int], limit: int,
                     spool: str, offset: int, room: int) -> tuple[list[SmallFileResult], list[SealedPart]]:
    """In a worker process: read, fingerprint and seal each file of a batch.

    Returns (results, parts): per path, (sha256 hex, size, size after reading, mtime_ns
    and ctime_ns after reading, chunk id or None for an empty file), or its OSError, or
    GREW; and per file that has a chunk, in order, (chunk id, start, length, plaintext
    length) of its sealed part, written into the slot [offset, offset + room) of the
    spool file, or (chunk id, part, plaintext length) when the slot is full. The sealed
    bytes (ciphertext only) travel through the shared mapping: through the result pipe,
    a megabyte per batch waited on the backup process's GIL at every 64 KiB read."""
    results: list[SmallFileResult] = []
    parts: list[SealedPart] = []
    mapped = _spool(spool)
    position = offset
    end = offset + room
    for path, size in zip(paths, sizes, strict=True):  # appended together to the batch
        try:
            fd = open_nofollow(path)
            try:
                data = read_small(fd, size, limit)
                after = os.fstat(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            results.append(exc)
            continue
        if data is None:
            results.append(GREW)
            continue
        chunk_id = None
        if data:
            chunk_id = sealer.chunk_id(data)
            plaintext = sealer.blob_plaintext(data)
            length = sealer.part_length(len(plaintext))
            if position + length <= end:  # sealed in place, in the shared mapping
                with memoryview(mapped) as view:
                    sealer.seal_blob_into(BLOB_DATA, chunk_id, plaintext, view[position : position + length])
                parts.append((chunk_id, position, length, len(data)))
                position += length
            else:
                parts.append((chunk_id, bytes(sealer.seal_blob(BLOB_DATA, chunk_id, data)), len(data)))
        results.append((hashlib.sha256(data).hexdigest(), len(data), after.st_size, after.st_mtime_ns,
                        after.st_ctime_ns, chunk_id))
    return results, parts

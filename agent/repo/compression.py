"""Compression of blob and metadata plaintext (the only user of zstandard).

Every plaintext starts with one byte: 0 = stored as is, 1 = zstd frame follows.
Data that does not shrink by at least 1/16 is stored as is, so already-compressed
images and scans cost no CPU at restore and no bytes in the repository.
"""

from __future__ import annotations

import threading

import zstandard

from agent.errors import IntegrityError

NONE = 0
ZSTD = 1
DEFAULT_LEVEL = 3
# Blob frames must declare exactly the size recorded in the index; metadata frames
# (no size known beforehand) at most this, which bounds what a frame can make us allocate.
MAX_METADATA_SIZE = 1 << 30

_local = threading.local()


def _compressor(level: int) -> zstandard.ZstdCompressor:
    cache = getattr(_local, "compressors", None)
    if cache is None:
        cache = _local.compressors = {}
    if level not in cache:
        cache[level] = zstandard.ZstdCompressor(level=level)
    compressor: zstandard.ZstdCompressor = cache[level]  # a thread's own: zstd objects are not shared
    return compressor


def _decompressor() -> zstandard.ZstdDecompressor:
    existing = getattr(_local, "decompressor", None)
    if existing is None:
        existing = _local.decompressor = zstandard.ZstdDecompressor()
    return existing


def compress(data: bytes | memoryview, level: int | None) -> bytes:
    """Prefix byte + payload. `level=None` disables compression."""
    method, body = compress_parts(data, level)
    return bytes((method,)) + body  # one copy (bytes + buffer), not two


def compress_parts(data: bytes | memoryview, level: int | None) -> tuple[int, bytes | memoryview]:
    """(method byte, body) of `compress`, without joining them: a caller that builds the
    plaintext in its own buffer copies the body once (agent.repo.sealing)."""
    if level is not None and len(data) >= 64:
        packed = _compressor(level).compress(data)
        if len(packed) < len(data) - len(data) // 16:
            return ZSTD, packed
    return NONE, data


def decompress(payload: bytes, *, expected_size: int | None, what: str) -> bytes:
    if not payload:
        raise IntegrityError(f"{what}: empty plaintext")
    method = payload[0]
    if method == NONE:
        data = payload[1:]
    elif method == ZSTD:
        # python-zstandard allocates whatever size the frame header declares, so the
        # declared size is checked first (our writer always records it).
        limit = expected_size if expected_size is not None else MAX_METADATA_SIZE
        try:
            declared = zstandard.frame_content_size(payload[1:])
        except zstandard.ZstdError as exc:
            raise IntegrityError(f"{what}: zstd frame is invalid ({exc})") from None
        if declared > limit or (declared >= 0 and expected_size is not None and declared != expected_size):
            raise IntegrityError(f"{what}: zstd frame declares {declared} bytes, expected "
                                 f"{expected_size if expected_size is not None else f'at most {limit}'}")
        # A frame without a declared size (not ours, but valid zstd) is bounded by the limit.
        bound = declared if declared >= 0 else limit
        try:
            data = _decompressor().decompress(payload[1:], max_output_size=max(bound, 1))
        except (zstandard.ZstdError, MemoryError) as exc:
            raise IntegrityError(f"{what}: zstd frame is invalid ({exc})") from None
    else:
        raise IntegrityError(f"{what}: unknown compression method {method}")
    if expected_size is not None and len(data) != expected_size:
        raise IntegrityError(f"{what}: decompressed to {len(data)} bytes, expected {expected_size}")
    return data

"""agent.repo.compression: method byte, incompressible data, size checks, hostile frames."""

from __future__ import annotations

import os
import random
import struct
import threading
import tracemalloc

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.errors import IntegrityError
from agent.repo import compression

SETTINGS = settings(max_examples=100, deadline=None, derandomize=True, database=None)
TEXT = ("Compte rendu de consultation du 12/03/2026. Patient vu pour suivi. " * 200).encode()
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def _frame_declaring(size: int) -> bytes:
    """A zstd frame header announcing `size` bytes of content, then a bogus block."""
    return ZSTD_MAGIC + b"\xe0" + struct.pack("<Q", size) + b"\x01\x00\x00"


def test_compressible_data_gets_method_byte_1():
    payload = compression.compress(TEXT, 3)
    assert payload[0] == compression.ZSTD == 1
    assert len(payload) < len(TEXT) // 4
    assert compression.decompress(payload, expected_size=len(TEXT), what="blob") == TEXT


def test_random_data_is_stored_as_is_with_method_byte_0():
    data = os.urandom(100_000)
    payload = compression.compress(data, 3)
    assert payload[0] == compression.NONE == 0
    assert payload[1:] == data
    assert compression.decompress(payload, expected_size=len(data), what="blob") == data


def test_barely_compressible_data_is_stored_as_is():
    """Less than 1/16 saved: not worth the CPU at restore."""
    data = os.urandom(10_000) + b"\x00" * 400
    payload = compression.compress(data, 3)
    assert payload[0] == compression.NONE


def test_small_data_is_not_compressed():
    payload = compression.compress(b"a" * 63, 19)
    assert payload == b"\x00" + b"a" * 63


def test_level_none_disables_compression():
    assert compression.compress(TEXT, None) == b"\x00" + TEXT


def test_empty_data_round_trip():
    payload = compression.compress(b"", 3)
    assert payload == b"\x00"
    assert compression.decompress(payload, expected_size=0, what="blob") == b""


def test_memoryview_input():
    assert compression.compress(memoryview(TEXT), 3) == compression.compress(TEXT, 3)


@pytest.mark.parametrize("level", [1, 3, 19])
def test_levels_round_trip(level):
    payload = compression.compress(TEXT, level)
    assert compression.decompress(payload, expected_size=None, what="metadata") == TEXT


@SETTINGS
@given(data=st.binary(max_size=3000), level=st.sampled_from([None, 1, 3]))
def test_round_trip(data, level):
    payload = compression.compress(data, level)
    assert payload[0] in (0, 1)
    assert compression.decompress(payload, expected_size=len(data), what="blob") == data
    assert compression.decompress(payload, expected_size=None, what="blob") == data


@pytest.mark.parametrize("method", ["zstd", "none"])
@pytest.mark.parametrize("delta", [-1, 1, 1000, -len(TEXT)])
def test_wrong_expected_size_raises_integrity_error(method, delta):
    payload = compression.compress(TEXT, 3 if method == "zstd" else None)
    assert payload[0] == (1 if method == "zstd" else 0)
    with pytest.raises(IntegrityError):
        compression.decompress(payload, expected_size=len(TEXT) + delta, what="blob")


def test_empty_payload_raises_integrity_error():
    with pytest.raises(IntegrityError):
        compression.decompress(b"", expected_size=None, what="blob")


@pytest.mark.parametrize("method", [2, 3, 0x28, 255])
def test_unknown_method_raises_integrity_error(method):
    with pytest.raises(IntegrityError, match="method"):
        compression.decompress(bytes((method,)) + b"data", expected_size=None, what="blob")


@pytest.mark.parametrize("expected_size", [None, len(TEXT)])
def test_truncated_zstd_frame_raises_integrity_error(expected_size):
    # (zstd frames carry no checksum: a flipped byte may decode to other bytes of the
    # right size; the AEAD tag and the chunk id catch that, not the compression layer)
    payload = compression.compress(TEXT, 3)
    for cut in (1, 5, len(payload) // 2, len(payload) - 2):
        with pytest.raises(IntegrityError):
            compression.decompress(payload[:-cut], expected_size=expected_size, what="blob")


def test_garbage_after_zstd_magic_raises_integrity_error():
    with pytest.raises(IntegrityError):
        compression.decompress(b"\x01" + ZSTD_MAGIC + b"\x00" * 20, expected_size=None, what="blob")


def test_frame_without_content_size_is_bounded_by_expected_size():
    stream = zstandard.ZstdCompressor(write_content_size=False).compressobj()
    frame = stream.compress(TEXT) + stream.flush()
    assert zstandard.frame_content_size(frame) == -1
    assert compression.decompress(b"\x01" + frame, expected_size=len(TEXT), what="blob") == TEXT
    with pytest.raises(IntegrityError):
        compression.decompress(b"\x01" + frame, expected_size=100, what="blob")


@pytest.mark.parametrize("declared", [2**40, 2**62, 2**64 - 2])
@pytest.mark.parametrize("expected_size", [None, 64])
def test_frame_declaring_an_absurd_size_raises_integrity_error(declared, expected_size):
    """A hostile frame header must not surface as MemoryError (or anything but IntegrityError)."""
    with pytest.raises(IntegrityError):
        compression.decompress(b"\x01" + _frame_declaring(declared), expected_size=expected_size, what="blob")


def test_frame_declaring_more_than_expected_is_refused_without_allocating_it():
    """The size recorded in the index bounds what a frame can make us allocate (module docstring)."""
    declared = 256 * 1024 * 1024
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        with pytest.raises(IntegrityError):
            compression.decompress(b"\x01" + _frame_declaring(declared), expected_size=64, what="blob")
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024 * 1024, f"allocated {peak} bytes for a 64-byte blob"


def _frame_header_declaring(size: int) -> bytes:
    # A zstd frame header alone: magic, a single-segment descriptor with an 8-byte content size.
    return struct.pack("<I", 0xFD2FB528) + bytes((0xE0,)) + struct.pack("<Q", size)


@pytest.mark.parametrize("payload, expected_size, message", [
    (b"", 5, "blob: empty plaintext"),
    (b"\x00abc", 5, "blob: decompressed to 3 bytes, expected 5"),
    (b"\x01" + zstandard.ZstdCompressor().compress(b"x" * 100), 50, "blob: zstd frame declares 100 bytes, expected 50"),
    (b"\x01" + zstandard.ZstdCompressor().compress(b"x" * 10), 50, "blob: zstd frame declares 10 bytes, expected 50"),
    (b"\x01" + zstandard.ZstdCompressor().compress(b""), 5, "blob: zstd frame declares 0 bytes, expected 5"),
    (b"\x01" + _frame_header_declaring(compression.MAX_METADATA_SIZE + 1), None,
     f"blob: zstd frame declares {compression.MAX_METADATA_SIZE + 1} bytes, expected at most "
     f"{compression.MAX_METADATA_SIZE}"),
    (b"\x07abc", 3, "blob: unknown compression method 7"),
], ids=["empty", "stored-short", "declares-more", "declares-less", "declares-none", "metadata-over-1-GiB",
        "unknown-method"])
def test_a_plaintext_that_does_not_decompress_to_what_is_expected_is_refused_saying_why(payload, expected_size,
                                                                                        message):
    with pytest.raises(IntegrityError) as raised:
        compression.decompress(payload, expected_size=expected_size, what="blob")
    assert str(raised.value) == message


@pytest.mark.parametrize("payload", [
    b"\x01garbage",
    # No declared size, 100,000 bytes inside: stopped at the expected 1,000, never inflated whole.
    b"\x01" + zstandard.ZstdCompressor(write_content_size=False).compress(bytes(100_000)),
], ids=["garbage", "undeclared-bomb"])
def test_a_frame_that_is_not_zstd_or_inflates_past_the_expected_size_is_refused_as_invalid(payload):
    with pytest.raises(IntegrityError) as raised:
        compression.decompress(payload, expected_size=1000, what="blob")
    assert str(raised.value).startswith("blob: zstd frame is invalid (")


@pytest.mark.parametrize("size, method", [(63, compression.NONE), (64, compression.ZSTD)])
def test_data_from_64_bytes_on_is_compressed(size, method):
    assert compression.compress_parts(b"a" * size, 3)[0] == method


def test_data_that_shrinks_by_less_than_a_sixteenth_is_stored_as_is():
    # Random bytes followed by zeros, the share of zeros chosen so that zstd saves between a
    # seventeenth and a sixteenth: not worth a decompression at every restore.
    for keep in range(3700, 4096):
        data = random.Random(keep).randbytes(keep) + bytes(4096 - keep)
        packed = len(zstandard.ZstdCompressor(level=3).compress(data))
        if len(data) - len(data) // 16 <= packed < len(data) - len(data) // 17:
            break
    else:
        raise AssertionError("no data in the window")
    assert compression.compress_parts(data, 3) == (compression.NONE, data)


def test_each_thread_keeps_its_own_compressor_and_decompressor():
    # zstd objects are not shared between threads, and made once per thread (not per blob).
    mine = (compression._compressor(3), compression._decompressor())
    assert mine == (compression._compressor(3), compression._decompressor())
    other = []
    thread = threading.Thread(target=lambda: other.extend((compression._compressor(3), compression._decompressor())))
    thread.start()
    thread.join()
    assert other[0] is not mine[0] and other[1] is not mine[1]

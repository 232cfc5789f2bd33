"""Blobs sealed in place (issue 19 point 4): into a pack's buffer, the same format.

`aead.seal_into` writes the envelope `seal` would build; the sealer builds a blob's
plaintext in one buffer, byte for byte the plaintext of `pad(compress(data))`; the
pack builder hands out places that threads seal into at once, and the pack it finishes
is the concatenation of its parts, as before.
"""

from __future__ import annotations

import os
import threading

import pytest

from agent.crypto import aead
from agent.crypto.kdf import KdfParams
from agent.repo import compression
from agent.errors import IntegrityError
from agent.repo.pack import BLOB_DATA, BLOB_TREE, TRAILER, PackBuilder, pad, pad_parts, split_pack
from agent.repo.repository import Repository
from agent.storage.memory import MemoryStorage

CIPHERS = ("xchacha20-poly1305", "aes-256-gcm")
FAST = KdfParams(memory_kib=8192, iterations=1)


@pytest.mark.parametrize("cipher", CIPHERS)
@pytest.mark.parametrize("size", [0, 1, 100, aead.SODIUM_MAX, aead.SODIUM_MAX + 1, 300_000])
@pytest.mark.parametrize("clear_header", [True, False])
def test_seal_into_writes_an_envelope_that_opens(cipher, size, clear_header):
    key, aad = os.urandom(32), b"binding"
    plaintext = os.urandom(size)
    out = bytearray(aead.sealed_length(size, clear_header=clear_header) + 6)
    aead.seal_into(key, plaintext, aad, cipher=cipher, out=memoryview(out)[3:-3], clear_header=clear_header)
    assert out[:3] == out[-3:] == bytes(3)  # nothing written outside its place
    envelope = bytes(out[3:-3])
    if not clear_header:
        envelope = bytes((aead.ENVELOPE_VERSION, aead.CIPHER_IDS[cipher])) + envelope
    assert aead.open_envelope(key, envelope, aad, what="blob") == plaintext
    assert len(envelope) == len(aead.seal(key, plaintext, aad, cipher=cipher))
    with pytest.raises(ValueError):
        aead.seal_into(key, plaintext, aad, cipher=cipher, out=memoryview(bytearray(len(envelope) + 1)))


@pytest.mark.parametrize("body", [b"", b"x", b"lettre " * 500, os.urandom(70_000)])
def test_pad_parts_is_pad_of_the_joined_payload(body):
    for method in (compression.NONE, compression.ZSTD):
        assert bytes(pad_parts(method, body)) == pad(bytes((method,)) + body)


@pytest.mark.parametrize("format_version", [3, 4])
@pytest.mark.parametrize("level", [None, 1, 3])
def test_a_blob_plaintext_is_the_one_sealed_before(format_version, level):
    repo = Repository.init(MemoryStorage(), b"phrase", cipher="xchacha20-poly1305", compression_level=level,
                           kdf_params=FAST, format_version=format_version)
    for data in (b"", b"a" * 10, b"Bonjour " * 2000, os.urandom(5000)):
        payload = compression.compress(data, level)
        expected = pad(payload) if format_version >= 4 else payload
        assert bytes(repo.sealer.blob_plaintext(data)) == expected


def test_threads_seal_into_one_pack_buffer_and_the_pack_is_their_concatenation():
    builder = PackBuilder(capacity=64 * 1024)
    places = [(bytes([i]) * (100 + i), builder.reserve(BLOB_DATA, bytes([i]) * 32, 100 + i, 7)) for i in range(50)]
    threads = [threading.Thread(target=lambda part=part, place=place: place.__setitem__(slice(None), part))
               for part, place in reversed(places)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with pytest.raises(RuntimeError):  # parts not yet declared written
        builder.finish(b"H")
    for _ in places:
        builder.done_writing()
    pack_id, data = builder.finish(b"H" * 10)
    assert bytes(data) == b"".join(part for part, _place in places) + b"H" * 10 + TRAILER.pack(10)
    assert [(e.offset, e.length) for e in builder.entries] == [
        (sum(100 + j for j in range(i)), 100 + i) for i in range(50)]
    assert split_pack(bytes(data), what="pack")[1] == sum(100 + i for i in range(50))


def test_a_part_larger_than_the_buffer_starts_another_one():
    builder = PackBuilder(capacity=1000)
    builder.add(BLOB_DATA, b"\x01" * 32, b"A" * 600, 600)
    builder.add(BLOB_DATA, b"\x02" * 32, b"B" * 5000, 5000)  # a large tree, say
    builder.add(BLOB_DATA, b"\x03" * 32, b"C" * 10, 10)
    _pack_id, data = builder.finish(b"H")
    assert bytes(data) == b"A" * 600 + b"B" * 5000 + b"C" * 10 + b"H" + TRAILER.pack(1)


@pytest.mark.parametrize("format_version", [3, 4])
@pytest.mark.parametrize("cipher", CIPHERS)
def test_blobs_sealed_in_place_read_back(format_version, cipher):
    storage = MemoryStorage()
    repo = Repository.init(storage, b"phrase", cipher=cipher, compression_level=3, kdf_params=FAST,
                           format_version=format_version)
    blobs = [os.urandom(n) for n in (1, 5000, 40_000, 300_000)] + [b"lettre " * n for n in (10, 3000, 90_000)]
    ids = [repo.store_blob(BLOB_DATA, b)[0] for b in blobs]
    repo.flush()
    again = Repository.open(storage, b"phrase")
    again.load_index()
    assert [again.load_blob(i) for i in ids] == blobs


def test_a_blob_that_fails_to_seal_leaves_its_pack_unwritten(monkeypatch):
    storage = MemoryStorage()
    repo = Repository.init(storage, b"phrase", cipher="xchacha20-poly1305", compression_level=3, kdf_params=FAST)
    first = repo.store_blob(BLOB_DATA, b"first blob " * 100)[0]

    def broken(*args, **kwargs):
        raise MemoryError("no memory left")

    monkeypatch.setattr(repo.sealer.__class__, "seal_blob_into", broken)
    with pytest.raises(MemoryError):
        repo.store_blob(BLOB_DATA, b"second blob " * 100)
    monkeypatch.undo()
    # The pack that held a place for the failed blob is never written; the first blob is
    # no longer pending, so storing it again stores it in a new pack.
    assert not repo.has_blob(first)
    repo.store_blob(BLOB_DATA, b"first blob " * 100)
    repo.flush()
    again = Repository.open(storage, b"phrase")
    again.load_index()
    assert again.load_blob(first) == b"first blob " * 100


@pytest.mark.parametrize("format_version", [3, 4])
@pytest.mark.parametrize("blob_type, kind, other_kind", [
    (BLOB_DATA, "data", "tree"),
    (BLOB_TREE, "tree", "data"),
], ids=["data", "tree"])
def test_a_sealed_blob_opens_only_as_its_own_kind(format_version, blob_type, kind, other_kind):
    # The associated data names the blob's kind: a tree cannot be handed out as a file's data.
    repo = Repository.init(MemoryStorage(), b"phrase", cipher="xchacha20-poly1305", compression_level=3,
                           kdf_params=FAST, format_version=format_version)
    sealer = repo.sealer
    chunk_id = sealer.chunk_id(b"contents")
    part = bytes(sealer.seal_blob(blob_type, chunk_id, b"contents"))
    envelope = part if not sealer.padded else bytes((aead.ENVELOPE_VERSION, aead.CIPHER_IDS[sealer.cipher])) + part
    kinds = {"data": sealer.blob_kind(BLOB_DATA), "tree": sealer.blob_kind(BLOB_TREE)}
    assert bytes(aead.open_envelope(sealer.enc_key, envelope, sealer.aad(kinds[kind], chunk_id), what="blob")) == \
        bytes(sealer.blob_plaintext(b"contents"))
    with pytest.raises(IntegrityError):
        aead.open_envelope(sealer.enc_key, envelope, sealer.aad(kinds[other_kind], chunk_id), what="blob")


def test_a_part_of_a_format_3_repository_is_a_whole_envelope_of_its_payload():
    repo = Repository.init(MemoryStorage(), b"phrase", cipher="aes-256-gcm", compression_level=3, kdf_params=FAST,
                           format_version=3)
    sealer = repo.sealer
    part = bytes(sealer.seal_part(7, b"id", b"payload"))
    assert aead.open_envelope(sealer.enc_key, part, sealer.aad(7, b"id"), what="part") == b"payload"

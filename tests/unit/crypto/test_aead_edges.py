"""aead.envelope_cipher at the shortest envelopes, the messages of a refused envelope and of a failed
self-test, the sealed length. Written for the mutants mutation testing found
alive (docs/RELIABILITY.md)."""

from __future__ import annotations

import pytest

from agent.crypto import aead
from agent.errors import CryptoSelfTestError, IntegrityError


def test_the_cipher_of_an_envelope_is_read_from_its_second_byte_even_when_nothing_follows():
    assert aead.envelope_cipher(bytes([aead.ENVELOPE_VERSION, 2])) == "aes-256-gcm"
    assert aead.envelope_cipher(bytes([aead.ENVELOPE_VERSION, 1])) == "xchacha20-poly1305"


def test_an_envelope_too_short_to_name_a_cipher_names_none():
    assert aead.envelope_cipher(b"") is None
    assert aead.envelope_cipher(bytes([aead.ENVELOPE_VERSION])) is None
    assert aead.envelope_cipher(bytes([aead.ENVELOPE_VERSION, 9])) is None


KEY = bytes(range(32))


@pytest.mark.parametrize("envelope, message", [
    (b"\x01\x01" + bytes(39), "pack data/3f/ab: not a valid encrypted object (bad header or too short)"),
    (b"\x02\x01" + bytes(60), "pack data/3f/ab: not a valid encrypted object (bad header or too short)"),
    (b"\x01\x07" + bytes(60), "pack data/3f/ab: unknown cipher id 7"),
    (b"\x01\x02" + bytes(60), "pack data/3f/ab: authentication failed (the data was altered, moved or belongs "
                              "elsewhere)"),
], ids=["too-short", "other-version", "unknown-cipher", "altered"])
def test_an_envelope_that_does_not_open_is_refused_naming_the_object_and_why(envelope, message):
    with pytest.raises(IntegrityError) as raised:
        aead.open_envelope(KEY, envelope, b"aad", what="pack data/3f/ab")
    assert str(raised.value) == message


def test_a_non_standard_backend_is_refused_in_words_a_person_can_act_on(monkeypatch):
    monkeypatch.setattr(aead, "_self_tested", False)
    monkeypatch.setattr(aead, "_aes_object_key", lambda key, nonce: bytes(32))
    with pytest.raises(CryptoSelfTestError) as raised:
        aead.self_test()
    assert str(raised.value) == ("the cryptographic library on this machine gives non-standard results "
                                 "(XChaCha20-Poly1305 / AES-256-GCM known-answer self-test); nothing was written")


@pytest.mark.parametrize("cipher", sorted(aead.CIPHER_IDS))
def test_the_sealed_length_is_by_default_that_of_the_whole_envelope(cipher):
    assert aead.sealed_length(100) == len(aead.seal(KEY, bytes(100), b"", cipher=cipher)) == 100 + aead.OVERHEAD
    assert aead.sealed_length(100, clear_header=False) == 100 + aead.OVERHEAD - 2


@pytest.mark.parametrize("cipher", sorted(aead.CIPHER_IDS))
def test_sealing_in_place_writes_the_whole_envelope_by_default(cipher):
    out = bytearray(aead.sealed_length(100))
    aead.seal_into(KEY, bytes(100), b"aad", cipher=cipher, out=memoryview(out))
    assert out[:2] == bytes((aead.ENVELOPE_VERSION, aead.CIPHER_IDS[cipher]))
    assert aead.open_envelope(KEY, bytes(out), b"aad", what="blob") == bytes(100)


def test_sealing_in_place_into_a_place_of_another_size_is_refused_before_writing():
    out = bytearray(aead.sealed_length(100) + 1)
    with pytest.raises(ValueError) as raised:
        aead.seal_into(KEY, bytes(100), b"aad", cipher="aes-256-gcm", out=memoryview(out))
    assert str(raised.value) == "seal_into: the output does not have the sealed length"
    assert out == bytes(len(out))

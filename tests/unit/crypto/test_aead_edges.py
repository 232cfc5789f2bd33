"""aead.envelope_cipher at the shortest envelopes. Written for the mutants mutation testing found
alive (docs/RELIABILITY.md)."""

from __future__ import annotations

from agent.crypto import aead


def test_the_cipher_of_an_envelope_is_read_from_its_second_byte_even_when_nothing_follows():
    assert aead.envelope_cipher(bytes([aead.ENVELOPE_VERSION, 2])) == "aes-256-gcm"
    assert aead.envelope_cipher(bytes([aead.ENVELOPE_VERSION, 1])) == "xchacha20-poly1305"


def test_an_envelope_too_short_to_name_a_cipher_names_none():
    assert aead.envelope_cipher(b"") is None
    assert aead.envelope_cipher(bytes([aead.ENVELOPE_VERSION])) is None
    assert aead.envelope_cipher(bytes([aead.ENVELOPE_VERSION, 9])) is None

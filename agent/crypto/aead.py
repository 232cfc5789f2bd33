"""Authenticated encryption of every stored object.

Envelope (docs/FORMAT.md, "Encrypted envelope"):

    offset size
    0      1    envelope version (1)
    1      1    cipher id: 1 = XChaCha20-Poly1305, 2 = AES-256-GCM
    2      24   random nonce
    26     n    ciphertext
    26+n   16   authentication tag

The first two bytes are part of the associated data, with the caller's binding of
repository id, object kind and object id, so an object cannot be moved, retyped or
have its cipher byte changed without the tag failing.

XChaCha20-Poly1305 is the standard construction (draft-irtf-cfrg-xchacha):
HChaCha20 over the first 16 nonce bytes gives a subkey, then ChaCha20-Poly1305 with
the 12-byte nonce 0x00000000 || nonce[16:24]. libsodium has it, but PyNaCl's binding
measured about 700 MiB/s against about 1,100 MiB/s for OpenSSL's ChaCha20-Poly1305 on
this machine (bench/primitives.py), so the bulk cipher is OpenSSL's (through
`cryptography`) and the test suite proves byte-for-byte equality with libsodium's.

Because the XChaCha20-Poly1305 composition is ours (HChaCha20 computed from OpenSSL's
ChaCha20 block function), a change of the crypto backend (another OpenSSL, a patched
`cryptography`) could silently make it write a format no other implementation reads.
So before the first object is sealed or opened, `self_test` encrypts and decrypts the
draft-irtf-cfrg-xchacha-03 appendix A.3.1 vector (libsodium's
crypto_aead_xchacha20poly1305_ietf gives exactly these bytes; tests/unit/crypto/test_aead.py
checks it) and the AES-256-GCM envelope vector of docs/FORMAT.md 15.3, and refuses to go on
when a byte differs: nothing is written with a backend that gives non-standard results.

AES-256-GCM must never see a (key, nonce) pair twice. Rather than trust 96 random bits
per object under one key, every object gets its own AES key, derived with BLAKE3 from
the encryption key and the object's 192-bit random nonce; GCM's 12-byte nonce is then
nonce[0:12]. A repeat would need two identical 192-bit random nonces.

Small objects (at most SODIUM_MAX bytes: letters, trees) are sealed and opened by
libsodium's crypto_aead_xchacha20poly1305_ietf (PyNaCl), the same standard construction
in one call: sealing 4 KiB took 15.9 us with the OpenSSL composition (of which about
8 us for HChaCha20 alone: a cipher context for one ChaCha20 block, then a new AEAD
context) against 9.3 us with libsodium; at 16 KiB 20.3 against 22.1 us, at 64 KiB 33
against 54 (timeit, this 2-core machine, issue 19). The subkey derivation per nonce is
inherent to XChaCha20; libsodium just does it without the two contexts. The bytes are
the same either way; the self-test checks both paths against the known answers. Opening
calls libsodium through PyNaCl's compiled binding, not its Python wrapper (whose argument
checks cost more than the decryption of a letter itself: _xchacha_open_sodium).
"""

from __future__ import annotations

import os
import struct

import blake3
import nacl.bindings
import nacl.exceptions
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from agent.crypto.ids import CONTEXT_AES_OBJECT_KEY
from agent.errors import CryptoSelfTestError, IntegrityError

try:  # PyNaCl's compiled binding of libsodium, called without its per-call wrapper (_xchacha_open_sodium)
    from nacl._sodium import ffi as _sodium_ffi, lib as _sodium_lib
except ImportError:  # another PyNaCl layout: its public wrapper, a few microseconds slower per object
    _sodium_ffi = _sodium_lib = None

ENVELOPE_VERSION = 1
NONCE_SIZE = 24
TAG_SIZE = 16
HEADER_SIZE = 2 + NONCE_SIZE
OVERHEAD = HEADER_SIZE + TAG_SIZE

CIPHER_IDS = {"xchacha20-poly1305": 1, "aes-256-gcm": 2}
CIPHER_NAMES = {v: k for k, v in CIPHER_IDS.items()}

_SIGMA = struct.unpack("<4I", b"expand 32-byte k")
# Up to this many plaintext bytes, libsodium's one-call XChaCha20-Poly1305 is faster than
# the OpenSSL composition (measured crossover about 16 KiB, module docstring); above,
# OpenSSL's bulk speed wins (831 against 559 MiB/s on 1 MiB, same measurement).
SODIUM_MAX = 16 * 1024


def hchacha20(key: bytes, nonce16: bytes) -> bytes:
    """HChaCha20(key, nonce16), computed from one ChaCha20 keystream block.

    A ChaCha20 block is rounds(state) + state, word by word; HChaCha20 is words 0-3
    and 12-15 of rounds(state) without the final addition. With OpenSSL's 16-byte
    ChaCha20 IV (counter || nonce) the input state words 12-15 are exactly `nonce16`,
    so subtracting the known words back out gives HChaCha20.
    """
    block = Cipher(algorithms.ChaCha20(key, nonce16), mode=None).encryptor().update(bytes(64))
    words = struct.unpack("<16I", block)
    nonce_words = struct.unpack("<4I", nonce16)
    out = [(words[i] - _SIGMA[i]) & 0xFFFFFFFF for i in range(4)]
    out += [(words[12 + i] - nonce_words[i]) & 0xFFFFFFFF for i in range(4)]
    return struct.pack("<8I", *out)


def _aes_object_key(key: bytes, nonce: bytes) -> bytes:
    return blake3.blake3(key + nonce, derive_key_context=CONTEXT_AES_OBJECT_KEY).digest()


def _xchacha_seal_openssl(key: bytes, nonce: bytes, plaintext: bytes | memoryview, full_aad: bytes) -> bytes:
    return ChaCha20Poly1305(hchacha20(key, nonce[:16])).encrypt(b"\x00\x00\x00\x00" + nonce[16:], plaintext, full_aad)


def _xchacha_open_openssl(key: bytes, nonce: bytes, body: bytes, full_aad: bytes) -> bytes:
    return ChaCha20Poly1305(hchacha20(key, nonce[:16])).decrypt(b"\x00\x00\x00\x00" + nonce[16:], body, full_aad)


def _xchacha_seal_sodium(key: bytes, nonce: bytes, plaintext: bytes | bytearray | memoryview, full_aad: bytes) -> bytes:
    return nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(bytes(plaintext), full_aad, nonce, key)


def _xchacha_open_sodium(key: bytes, nonce: bytes, body: bytes, full_aad: bytes) -> bytes:
    """libsodium's crypto_aead_xchacha20poly1305_ietf_decrypt. Called directly: PyNaCl's
    wrapper checks its arguments with six calls and formats three error messages before
    every call, whatever the outcome: 13.3 us for a 1.2 KiB letter against 5.9 us for the
    same libsodium call without it (timeit, this 2-core machine; a restore of 100,000
    letters opens 100,000 of them). The lengths it checked are checked here; the tag is
    still checked by libsodium, which writes nothing out unless it matches."""
    if (_sodium_lib is not None and type(body) is type(nonce) is type(key) is type(full_aad) is bytes
            and len(nonce) == NONCE_SIZE and len(key) == 32):
        size = len(body) - TAG_SIZE
        if size < 0:  # shorter than its tag
            raise InvalidTag()
        out = _sodium_ffi.new("unsigned char[]", size)
        if _sodium_lib.crypto_aead_xchacha20poly1305_ietf_decrypt(out, _sodium_ffi.NULL, _sodium_ffi.NULL, body,
                                                                  len(body), full_aad, len(full_aad), nonce, key):
            raise InvalidTag()
        opened: bytes = _sodium_ffi.buffer(out, size)[:]
        return opened
    try:
        plain: bytes = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(body, full_aad, nonce, key)
        return plain
    except nacl.exceptions.CryptoError:
        raise InvalidTag() from None


def _seal_body(cipher_id: int, key: bytes, nonce: bytes, plaintext: bytes | memoryview, full_aad: bytes) -> bytes:
    if cipher_id == 1:
        if len(plaintext) <= SODIUM_MAX:
            return _xchacha_seal_sodium(key, nonce, plaintext, full_aad)
        return _xchacha_seal_openssl(key, nonce, plaintext, full_aad)
    return AESGCM(_aes_object_key(key, nonce)).encrypt(nonce[:12], plaintext, full_aad)


def _open_body(cipher_id: int, key: bytes, nonce: bytes, body: bytes, full_aad: bytes) -> bytes:
    if cipher_id == 1:
        if len(body) - TAG_SIZE <= SODIUM_MAX:
            return _xchacha_open_sodium(key, nonce, body, full_aad)
        return _xchacha_open_openssl(key, nonce, body, full_aad)
    return AESGCM(_aes_object_key(key, nonce)).decrypt(nonce[:12], body, full_aad)


# Known answers (docs/FORMAT.md 15.1-15.3): the inputs of draft-irtf-cfrg-xchacha-03
# appendix A.3.1, the XChaCha20-Poly1305 ciphertext and tag printed there (libsodium's
# result), and backupctl's AES-256-GCM envelope of the same inputs.
_KAT_KEY = bytes(range(0x80, 0xA0))
_KAT_NONCE = bytes(range(0x40, 0x58))
_KAT_AAD = bytes.fromhex("50515253c0c1c2c3c4c5c6c7")
_KAT_PLAINTEXT = (b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, "
                  b"sunscreen would be it.")
_KAT_HCHACHA20 = bytes.fromhex("4a8ac0c0296222bafe959faabe06a45b89a3cee444fef6e3d77659a53f49ee32")
_KAT_XCHACHA20_POLY1305 = bytes.fromhex(
    "bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb731c7f1b0b4aa6440bf3a82f4eda7e39"
    "ae64c6708c54c216cb96b72e1213b4522f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff9"
    "21f9664c97637da9768812f615c68b13b52ec0875924c1c7987947deafd8780acf49")
_KAT_AES_BODY = bytes.fromhex(
    "d2caab31265d3a55f8a7d11ee2bfb4b9a2aeb405ed20b2f095cdaddfd5652ed9d8dffb22df57aa9ff901373850d3259b"
    "fd366a2ee0faf6777bdc4c103a014fb424cda9d099e54c758ad0a5db6ee30e2e6d115e02db0cabd01349d6e546ec59a1"
    "87683b98f4e6de16d9cb71989a06740f0a7f36b62c68db04dd91243a01f9c37c2284")
_self_tested = False


def self_test() -> None:
    """Check both compositions against their known answers, once per process; raises
    CryptoSelfTestError (before anything is sealed or opened) when a byte differs."""
    global _self_tested
    if _self_tested:
        return
    try:
        good = (
            hchacha20(_KAT_KEY, _KAT_NONCE[:16]) == _KAT_HCHACHA20
            and _seal_body(1, _KAT_KEY, _KAT_NONCE, _KAT_PLAINTEXT, _KAT_AAD) == _KAT_XCHACHA20_POLY1305
            and _open_body(1, _KAT_KEY, _KAT_NONCE, _KAT_XCHACHA20_POLY1305, _KAT_AAD) == _KAT_PLAINTEXT
            # Both paths, whichever one the size above chose.
            and _xchacha_seal_openssl(_KAT_KEY, _KAT_NONCE, _KAT_PLAINTEXT, _KAT_AAD) == _KAT_XCHACHA20_POLY1305
            and _xchacha_open_openssl(_KAT_KEY, _KAT_NONCE, _KAT_XCHACHA20_POLY1305, _KAT_AAD) == _KAT_PLAINTEXT
            and _xchacha_seal_sodium(_KAT_KEY, _KAT_NONCE, _KAT_PLAINTEXT, _KAT_AAD) == _KAT_XCHACHA20_POLY1305
            and _xchacha_open_sodium(_KAT_KEY, _KAT_NONCE, _KAT_XCHACHA20_POLY1305, _KAT_AAD) == _KAT_PLAINTEXT
            and _seal_body(2, _KAT_KEY, _KAT_NONCE, _KAT_PLAINTEXT, b"\x01\x02" + _KAT_AAD) == _KAT_AES_BODY
            and _open_body(2, _KAT_KEY, _KAT_NONCE, _KAT_AES_BODY, b"\x01\x02" + _KAT_AAD) == _KAT_PLAINTEXT
        )
    except Exception:  # any failure of the backend is the same verdict: not the standard
        good = False
    if not good:
        raise CryptoSelfTestError("the cryptographic library on this machine gives non-standard results "
                                  "(XChaCha20-Poly1305 / AES-256-GCM known-answer self-test); nothing was written")
    _self_tested = True


def seal(key: bytes, plaintext: bytes | memoryview, aad: bytes, *, cipher: str) -> bytes:
    """Encrypt and authenticate `plaintext`; returns the whole envelope."""
    self_test()
    cipher_id = CIPHER_IDS[cipher]
    nonce = os.urandom(NONCE_SIZE)
    header = bytes((ENVELOPE_VERSION, cipher_id)) + nonce
    return header + _seal_body(cipher_id, key, nonce, plaintext, header[:2] + aad)


def _seal_body_into(cipher_id: int, key: bytes, nonce: bytes, plaintext: bytes | bytearray | memoryview,
                    full_aad: bytes, out: memoryview) -> None:
    """`_seal_body` written into `out` (exactly len(plaintext) + TAG_SIZE bytes). The
    OpenSSL paths encrypt in place (cryptography's encrypt_into); libsodium's one call,
    used for at most SODIUM_MAX bytes, returns its result, copied once."""
    if cipher_id == 1:
        if len(plaintext) <= SODIUM_MAX:
            out[:] = _xchacha_seal_sodium(key, nonce, plaintext, full_aad)
        else:
            ChaCha20Poly1305(hchacha20(key, nonce[:16])).encrypt_into(b"\x00\x00\x00\x00" + nonce[16:], plaintext,
                                                                      full_aad, out)
        return
    AESGCM(_aes_object_key(key, nonce)).encrypt_into(nonce[:12], plaintext, full_aad, out)


def sealed_length(plaintext_length: int, *, clear_header: bool = True) -> int:
    """The length `seal_into` writes: the envelope's, or without its two clear bytes."""
    return plaintext_length + (OVERHEAD if clear_header else OVERHEAD - 2)


def seal_into(key: bytes, plaintext: bytes | bytearray | memoryview, aad: bytes, *, cipher: str, out: memoryview,
              clear_header: bool = True) -> None:
    """`seal` written into `out` (sealed_length bytes), without building the envelope in
    a new object and copying it: the backup seals blobs straight into a pack's buffer.
    `clear_header=False` leaves out the envelope's first two bytes (version and cipher
    id, still authenticated), as a version-4 pack stores its parts."""
    self_test()
    cipher_id = CIPHER_IDS[cipher]
    if len(out) != sealed_length(len(plaintext), clear_header=clear_header):
        raise ValueError("seal_into: the output does not have the sealed length")
    nonce = os.urandom(NONCE_SIZE)
    clear = bytes((ENVELOPE_VERSION, cipher_id))
    start = 0
    if clear_header:
        out[0:2] = clear
        start = 2
    out[start : start + NONCE_SIZE] = nonce
    _seal_body_into(cipher_id, key, nonce, plaintext, clear + aad, out[start + NONCE_SIZE :])


def open_envelope(key: bytes, envelope: bytes | memoryview, aad: bytes, *, what: str) -> bytes:
    """Check and decrypt an envelope; any tampering raises IntegrityError naming `what`."""
    self_test()
    envelope = bytes(envelope)
    if len(envelope) < OVERHEAD or envelope[0] != ENVELOPE_VERSION:
        raise IntegrityError(f"{what}: not a valid encrypted object (bad header or too short)")
    cipher_id = envelope[1]
    if cipher_id not in CIPHER_NAMES:
        raise IntegrityError(f"{what}: unknown cipher id {cipher_id}")
    nonce = envelope[2:HEADER_SIZE]
    try:
        return _open_body(cipher_id, key, nonce, envelope[HEADER_SIZE:], envelope[:2] + aad)
    except InvalidTag:
        raise IntegrityError(
            f"{what}: authentication failed (the data was altered, moved or belongs elsewhere)"
        ) from None


def envelope_cipher(envelope: bytes | memoryview) -> str | None:
    return CIPHER_NAMES.get(envelope[1]) if len(envelope) > 1 else None

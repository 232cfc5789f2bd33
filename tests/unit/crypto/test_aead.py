"""agent.crypto.aead: HChaCha20, libsodium interop, AES-256-GCM, tamper detection."""

from __future__ import annotations

import hashlib

import blake3
import nacl.bindings
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from agent.crypto import aead
from agent.crypto.ids import CONTEXT_AES_OBJECT_KEY
from agent.errors import IntegrityError

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])
CIPHERS = ("xchacha20-poly1305", "aes-256-gcm")
XCHACHA_HEADER = b"\x01\x01"  # envelope version 1, cipher id 1

keys = st.binary(min_size=32, max_size=32)
nonces = st.binary(min_size=24, max_size=24)
aads = st.binary(max_size=80)


def _message(size: int, seed: bytes) -> bytes:
    """Deterministic pseudo-random bytes of any size (hypothesis cannot draw 100 KB cheaply)."""
    return hashlib.shake_256(seed).digest(size) if size else b""


sizes = st.integers(min_value=0, max_value=100_000)


# ---- HChaCha20 -------------------------------------------------------------------


def test_hchacha20_matches_draft_irtf_cfrg_xchacha_03_section_2_2_1():
    key = bytes(range(32))
    nonce = bytes.fromhex("000000090000004a0000000031415927")
    expected = bytes.fromhex(
        "82413b42 27b27bfe d30e4250 8a877d73 a0f9e4d5 8a74a853 c12ec413 26d3ecdc".replace(" ", "")
    )
    assert aead.hchacha20(key, nonce) == expected


def test_xchacha20_poly1305_matches_draft_appendix_a_3_1():
    """The AEAD test vector of the same draft, through the agent's envelope."""
    plaintext = (b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip "
                 b"for the future, sunscreen would be it.")
    aad = bytes.fromhex("50515253c0c1c2c3c4c5c6c7")
    key = bytes(range(0x80, 0xA0))
    nonce = bytes(range(0x40, 0x58))
    ciphertext = bytes.fromhex(
        "bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb"
        "731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b452"
        "2f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff9"
        "21f9664c97637da9768812f615c68b13b52e"
    )
    tag = bytes.fromhex("c0875924c1c7987947deafd8780acf49")
    # The draft's vector uses `aad` as is; the envelope prepends its 2 header bytes,
    # so check the primitive through libsodium with the same inputs first ...
    assert nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, aad, nonce, key) == ciphertext + tag
    # ... and then that the agent's construction (HChaCha20 + ChaCha20-Poly1305) gives
    # exactly that body when the associated data is the same.
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    body = ChaCha20Poly1305(aead.hchacha20(key, nonce[:16])).encrypt(b"\x00" * 4 + nonce[16:], plaintext, aad)
    assert body == ciphertext + tag


@SETTINGS
@given(key=keys, nonce16=st.binary(min_size=16, max_size=16))
def test_hchacha20_is_the_subkey_libsodium_uses(key, nonce16):
    """An XChaCha20-Poly1305 message from libsodium equals IETF ChaCha20-Poly1305 under
    hchacha20(key, nonce[:16]) with nonce 0^4 || nonce[16:]."""
    tail = b"\x07" * 8
    expected = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(b"abc", b"", nonce16 + tail, key)
    got = nacl.bindings.crypto_aead_chacha20poly1305_ietf_encrypt(
        b"abc", b"", b"\x00" * 4 + tail, aead.hchacha20(key, nonce16)
    )
    assert got == expected


# ---- libsodium interop -----------------------------------------------------------


@SETTINGS
@given(key=keys, nonce=nonces, aad=aads, size=sizes, seed=st.binary(max_size=8))
@example(key=b"k" * 32, nonce=b"n" * 24, aad=b"", size=0, seed=b"")
@example(key=b"k" * 32, nonce=b"n" * 24, aad=b"a", size=1, seed=b"")
@example(key=b"k" * 32, nonce=b"n" * 24, aad=b"a", size=64, seed=b"x")
@example(key=b"k" * 32, nonce=b"n" * 24, aad=b"a", size=65_537, seed=b"y")
@example(key=b"k" * 32, nonce=b"n" * 24, aad=b"a" * 80, size=100_000, seed=b"z")
def test_envelope_from_libsodium_opens_with_agent(key, nonce, aad, size, seed):
    message = _message(size, seed)
    body = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(message, XCHACHA_HEADER + aad, nonce, key)
    envelope = XCHACHA_HEADER + nonce + body
    assert aead.open_envelope(key, envelope, aad, what="libsodium object") == message


@SETTINGS
@given(key=keys, aad=aads, size=sizes, seed=st.binary(max_size=8))
@example(key=b"k" * 32, aad=b"", size=0, seed=b"")
@example(key=b"k" * 32, aad=b"a" * 80, size=100_000, seed=b"z")
def test_envelope_from_agent_opens_with_libsodium(key, aad, size, seed):
    message = _message(size, seed)
    envelope = aead.seal(key, message, aad, cipher="xchacha20-poly1305")
    assert envelope[:2] == XCHACHA_HEADER
    assert len(envelope) == len(message) + aead.OVERHEAD
    nonce = envelope[2:26]
    plain = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(envelope[26:], XCHACHA_HEADER + aad, nonce, key)
    assert plain == message


# ---- AES-256-GCM -----------------------------------------------------------------


@SETTINGS
@given(key=keys, aad=aads, size=sizes, seed=st.binary(max_size=8))
@example(key=b"k" * 32, aad=b"", size=0, seed=b"")
def test_aes_256_gcm_round_trip(key, aad, size, seed):
    message = _message(size, seed)
    envelope = aead.seal(key, message, aad, cipher="aes-256-gcm")
    assert envelope[:2] == b"\x01\x02"
    assert len(envelope) == len(message) + aead.OVERHEAD
    assert aead.envelope_cipher(envelope) == "aes-256-gcm"
    assert aead.open_envelope(key, envelope, aad, what="obj") == message


def test_aes_256_gcm_uses_a_per_object_key_as_documented():
    """Body = AES-256-GCM under BLAKE3-derive_key(key || nonce), GCM nonce = nonce[0:12]."""
    key, aad, message = b"K" * 32, b"binding", b"ordonnance du Dr Martin"
    envelope = aead.seal(key, message, aad, cipher="aes-256-gcm")
    nonce = envelope[2:26]
    object_key = blake3.blake3(key + nonce, derive_key_context=CONTEXT_AES_OBJECT_KEY).digest()
    assert object_key != key
    assert AESGCM(object_key).decrypt(nonce[:12], envelope[26:], b"\x01\x02" + aad) == message


@pytest.mark.parametrize("cipher", CIPHERS)
def test_seal_uses_a_fresh_nonce_each_time(cipher):
    a = aead.seal(b"k" * 32, b"same", b"aad", cipher=cipher)
    b = aead.seal(b"k" * 32, b"same", b"aad", cipher=cipher)
    assert a[2:26] != b[2:26]
    assert a != b


@pytest.mark.parametrize("cipher", CIPHERS)
def test_seal_accepts_memoryview(cipher):
    data = bytearray(b"x" * 1000)
    envelope = aead.seal(b"k" * 32, memoryview(data), b"", cipher=cipher)
    assert aead.open_envelope(b"k" * 32, memoryview(envelope), b"", what="obj") == bytes(data)


# ---- tampering -------------------------------------------------------------------

KEY = bytes(range(32))
AAD = b"backupctl\x00repo-id\x04chunk-id"
MESSAGE = b"Compte rendu operatoire, patient 0042. " * 20


@pytest.fixture(scope="module", params=CIPHERS)
def sealed(request):
    return request.param, aead.seal(KEY, MESSAGE, AAD, cipher=request.param)


def _refuses(envelope: bytes, aad: bytes = AAD, key: bytes = KEY) -> None:
    with pytest.raises(IntegrityError):
        plain = aead.open_envelope(key, envelope, aad, what="object")
        # never reached if the check works; makes a wrong plaintext visible in the report
        pytest.fail(f"tampered envelope opened to {plain[:40]!r}")


@pytest.mark.parametrize("cipher", CIPHERS)
@SETTINGS
@given(data=st.data())
def test_flipping_any_byte_is_detected(cipher, data):
    envelope = aead.seal(KEY, MESSAGE, AAD, cipher=cipher)
    position = data.draw(st.integers(min_value=0, max_value=len(envelope) - 1), label="position")
    mask = data.draw(st.integers(min_value=1, max_value=255), label="mask")
    tampered = bytearray(envelope)
    tampered[position] ^= mask
    _refuses(bytes(tampered))


def test_every_single_byte_position_is_covered_by_the_tag(sealed):
    _cipher, envelope = sealed
    for position in range(len(envelope)):
        tampered = bytearray(envelope)
        tampered[position] ^= 0x80
        _refuses(bytes(tampered))


def test_changed_associated_data_is_detected(sealed):
    _cipher, envelope = sealed
    assert aead.open_envelope(KEY, envelope, AAD, what="object") == MESSAGE
    _refuses(envelope, aad=AAD[:-1] + b"X")
    _refuses(envelope, aad=AAD + b"\x00")
    _refuses(envelope, aad=b"")


def test_wrong_key_is_detected(sealed):
    _cipher, envelope = sealed
    _refuses(envelope, key=bytes(32))


@pytest.mark.parametrize("cipher_byte", [0, 1, 2, 3, 255])
def test_changed_cipher_byte_is_detected(sealed, cipher_byte):
    _cipher, envelope = sealed
    if envelope[1] == cipher_byte:
        assert aead.open_envelope(KEY, envelope, AAD, what="object") == MESSAGE
        return
    _refuses(envelope[:1] + bytes((cipher_byte,)) + envelope[2:])


def test_changed_version_byte_is_detected(sealed):
    _cipher, envelope = sealed
    _refuses(b"\x02" + envelope[1:])
    _refuses(b"\x00" + envelope[1:])


def test_truncation_at_every_length_is_detected(sealed):
    _cipher, envelope = sealed
    for length in range(len(envelope)):
        _refuses(envelope[:length])


def test_appended_bytes_are_detected(sealed):
    _cipher, envelope = sealed
    _refuses(envelope + b"\x00")
    _refuses(envelope + envelope[-16:])


def test_envelope_of_one_cipher_relabelled_as_the_other_fails():
    """Same key, same nonce, the cipher byte rewritten: must not decrypt."""
    for source, target in ((1, 2), (2, 1)):
        cipher = aead.CIPHER_NAMES[source]
        envelope = aead.seal(KEY, MESSAGE, AAD, cipher=cipher)
        _refuses(envelope[:1] + bytes((target,)) + envelope[2:])


def test_envelope_cipher_reports_the_cipher():
    assert aead.envelope_cipher(aead.seal(KEY, b"", b"", cipher="xchacha20-poly1305")) == "xchacha20-poly1305"
    assert aead.envelope_cipher(aead.seal(KEY, b"", b"", cipher="aes-256-gcm")) == "aes-256-gcm"
    assert aead.envelope_cipher(b"\x01\x09rest") is None
    assert aead.envelope_cipher(b"") is None


@SETTINGS
@given(garbage=st.binary(max_size=200), aad=aads)
def test_arbitrary_bytes_never_open(garbage, aad):
    with pytest.raises(IntegrityError):
        aead.open_envelope(KEY, garbage, aad, what="garbage")


# ---- the known-answer self-test (docs/SECURITY.md section 8) --------------------------


@pytest.fixture
def untested(monkeypatch):
    """A process in which the self-test has not run yet."""
    monkeypatch.setattr(aead, "_self_tested", False)


def _chacha20_with_another_iv_layout(monkeypatch) -> None:
    """A backend whose ChaCha20 takes its 16-byte IV as nonce || counter instead of
    counter || nonce: every HChaCha20 subkey, hence every XChaCha20 object, changes."""
    real = aead.algorithms.ChaCha20

    class ChaCha20(real):
        def __init__(self, key, nonce):
            super().__init__(key, nonce[8:] + nonce[:8])

    monkeypatch.setattr(aead.algorithms, "ChaCha20", ChaCha20)


def test_the_self_test_passes_on_this_machine(untested):
    aead.self_test()
    assert aead._self_tested


def test_a_non_standard_chacha20_is_refused_before_anything_is_sealed(untested, monkeypatch):
    from agent.errors import CryptoSelfTestError

    _chacha20_with_another_iv_layout(monkeypatch)
    with pytest.raises(CryptoSelfTestError, match="non-standard results.*nothing was written") as caught:
        aead.seal(bytes(32), b"patient record", b"", cipher="xchacha20-poly1305")
    assert caught.value.exit_code == 1
    with pytest.raises(CryptoSelfTestError):
        aead.open_envelope(bytes(32), bytes(64), b"", what="x")
    assert not aead._self_tested  # asked again at the next use, never cached as good


@pytest.mark.parametrize("broken", ["aead_tag", "aes"])
def test_other_backend_faults_are_refused_too(untested, monkeypatch, broken):
    from agent.errors import CryptoSelfTestError

    if broken == "aead_tag":
        real = aead.ChaCha20Poly1305

        class Truncating:  # a tag with its last byte wrong
            def __init__(self, key):
                self._aead = real(key)

            def encrypt(self, nonce, data, associated_data):
                return self._aead.encrypt(nonce, data, associated_data)[:-1] + b"\x00"

            def decrypt(self, nonce, data, associated_data):
                return self._aead.decrypt(nonce, data, associated_data)

        monkeypatch.setattr(aead, "ChaCha20Poly1305", Truncating)
    else:
        monkeypatch.setattr(aead, "_aes_object_key", lambda key, nonce: bytes(32))
    with pytest.raises(CryptoSelfTestError):
        aead.self_test()


def test_a_repository_is_not_created_with_a_non_standard_backend(untested, monkeypatch):
    from agent.errors import CryptoSelfTestError
    from agent.crypto.kdf import KdfParams
    from agent.repo.repository import Repository
    from agent.storage.memory import MemoryStorage

    _chacha20_with_another_iv_layout(monkeypatch)
    storage = MemoryStorage()
    with pytest.raises(CryptoSelfTestError):
        Repository.init(storage, b"a long enough passphrase", cipher="aes-256-gcm", compression_level=None,
                        kdf_params=KdfParams(memory_kib=8192, iterations=1))
    assert storage.objects == {}


@pytest.mark.parametrize("size", [0, 1, aead.SODIUM_MAX - 1, aead.SODIUM_MAX, aead.SODIUM_MAX + 1, 3 * aead.SODIUM_MAX])
def test_the_libsodium_and_openssl_paths_give_the_same_bytes(size):
    """Small objects go through libsodium, larger ones through the OpenSSL composition:
    the same XChaCha20-Poly1305, so each opens what the other sealed, on both sides of
    the size where seal and open switch."""
    key, nonce, aad = bytes(range(32)), bytes(range(100, 124)), b"\x01\x01binding"
    plain = hashlib.sha256(str(size).encode()).digest() * (size // 32 + 1)
    plain = plain[:size]
    sodium = aead._xchacha_seal_sodium(key, nonce, plain, aad)
    assert sodium == aead._xchacha_seal_openssl(key, nonce, plain, aad)
    assert aead._xchacha_open_openssl(key, nonce, sodium, aad) == plain
    assert aead._xchacha_open_sodium(key, nonce, sodium, aad) == plain
    assert aead._open_body(1, key, nonce, aead._seal_body(1, key, nonce, memoryview(plain), aad), aad) == plain
    tampered = bytes([sodium[0] ^ 1]) + sodium[1:]
    for opener in (aead._xchacha_open_sodium, aead._xchacha_open_openssl):
        with pytest.raises(aead.InvalidTag):
            opener(key, nonce, tampered, aad)


def test_small_objects_open_through_libsodium_without_pynacls_wrapper(monkeypatch):
    """A restore opens one small object per letter: libsodium is called directly (PyNaCl's
    wrapper costs more than the decryption there). Same bytes, same refusals: a changed
    tag, a body shorter than a tag, the empty message."""
    def wrapper(*_args):
        raise AssertionError("PyNaCl's per-call wrapper was used")

    monkeypatch.setattr(aead.nacl.bindings, "crypto_aead_xchacha20poly1305_ietf_decrypt", wrapper)
    key, nonce, aad = bytes(range(32)), bytes(range(100, 124)), b"\x01\x01binding"
    for plain in (b"", b"x", b"lettre" * 200):
        sealed = aead._xchacha_seal_openssl(key, nonce, plain, aad)
        assert aead._xchacha_open_sodium(key, nonce, sealed, aad) == plain
        for bad in (sealed[:-1] + bytes([sealed[-1] ^ 1]), sealed[: aead.TAG_SIZE - 1]):
            with pytest.raises(aead.InvalidTag):
                aead._xchacha_open_sodium(key, nonce, bad, aad)
    envelope = aead.seal(key, b"lettre" * 200, aad, cipher="xchacha20-poly1305")
    assert aead.open_envelope(key, envelope, aad, what="letter") == b"lettre" * 200


def test_without_the_compiled_binding_small_objects_open_through_pynacls_wrapper(monkeypatch):
    """Another PyNaCl layout (no nacl._sodium): the public wrapper opens and refuses the same."""
    monkeypatch.setattr(aead, "_sodium_lib", None)
    key, nonce, aad = bytes(range(32)), bytes(range(100, 124)), b"\x01\x01binding"
    sealed = aead._xchacha_seal_openssl(key, nonce, b"lettre" * 200, aad)
    assert aead._xchacha_open_sodium(key, nonce, sealed, aad) == b"lettre" * 200
    with pytest.raises(aead.InvalidTag):
        aead._xchacha_open_sodium(key, nonce, sealed[:-1] + bytes([sealed[-1] ^ 1]), aad)

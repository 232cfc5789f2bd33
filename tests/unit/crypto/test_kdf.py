"""agent.crypto.kdf: Argon2id parameters are bounded before any work is done."""

from __future__ import annotations

import nacl.pwhash
import pytest

from agent.crypto import kdf
from agent.crypto.kdf import KdfParams, derive_key
from agent.errors import KeyFileError

FAST = KdfParams(memory_kib=8192, iterations=1)
SALT = bytes(range(16))


def test_defaults_are_the_documented_ones():
    params = KdfParams()
    assert (params.memory_kib, params.iterations, params.parallelism) == (64 * 1024, 3, 1)
    params.validate()


@pytest.mark.parametrize(
    "params",
    [
        KdfParams(memory_kib=8 * 1024, iterations=1),  # lower memory bound
        KdfParams(memory_kib=64 * 1024, iterations=1),  # upper memory bound: what init writes
        KdfParams(memory_kib=65536, iterations=3),  # upper pass bound: what init writes
    ],
)
def test_bounds_are_inclusive(params):
    params.validate()


@pytest.mark.parametrize(
    "params, word",
    [
        (KdfParams(memory_kib=64 * 1024 + 1), "memory"),
        (KdfParams(memory_kib=4 * 1024 * 1024, iterations=6), "memory"),  # the planted key of issue 16
        (KdfParams(memory_kib=4 * 1024 * 1024 + 1), "memory"),
        (KdfParams(memory_kib=2**40), "memory"),
        (KdfParams(memory_kib=8 * 1024 - 1), "memory"),
        (KdfParams(memory_kib=0), "memory"),
        (KdfParams(memory_kib=-65536), "memory"),
        (KdfParams(iterations=0), "passes"),
        (KdfParams(iterations=-1), "passes"),
        (KdfParams(iterations=4), "passes"),
        (KdfParams(iterations=64), "passes"),
        (KdfParams(iterations=65), "passes"),
        (KdfParams(iterations=10**9), "passes"),
        (KdfParams(parallelism=0), "lanes"),
        (KdfParams(parallelism=2), "lanes"),
        (KdfParams(parallelism=4), "lanes"),
    ],
    ids=repr,
)
def test_out_of_range_parameters_are_refused(params, word):
    with pytest.raises(KeyFileError, match=word):
        params.validate()


@pytest.mark.parametrize(
    "params",
    [
        KdfParams(memory_kib=65536.0),
        KdfParams(memory_kib="65536"),
        KdfParams(memory_kib=None),
        KdfParams(memory_kib=[65536]),
        KdfParams(iterations=3.0),
        KdfParams(iterations="3"),
        KdfParams(iterations=None),
        KdfParams(iterations=True),  # JSON `true` is not a pass count
        KdfParams(parallelism="1"),
        KdfParams(parallelism=None),
        KdfParams(parallelism=1.0),  # JSON 1.0 is not an integer lane count
        KdfParams(parallelism=True),
    ],
    ids=repr,
)
def test_non_integer_parameters_are_refused(params):
    with pytest.raises(KeyFileError):
        params.validate()


def test_hostile_memory_request_is_refused_before_any_allocation():
    """A key file asking for 2**40 KiB (1 PiB) must fail in validation, not in Argon2."""
    with pytest.raises(KeyFileError, match="memory"):
        derive_key(b"passphrase", SALT, KdfParams(memory_kib=2**40, iterations=1))


def test_hostile_pass_count_is_refused_before_any_work():
    with pytest.raises(KeyFileError, match="passes"):
        derive_key(b"passphrase", SALT, KdfParams(memory_kib=8192, iterations=2**31))


@pytest.mark.parametrize("salt", [b"", b"short", bytes(15), bytes(17), bytes(32)])
def test_wrong_salt_size_is_a_key_file_error(salt):
    with pytest.raises(KeyFileError, match="salt"):
        derive_key(b"passphrase", salt, FAST)


def test_derive_key_is_argon2id_v19_with_the_given_parameters():
    expected = nacl.pwhash.argon2id.kdf(32, b"passphrase", SALT, opslimit=1, memlimit=8192 * 1024)
    assert derive_key(b"passphrase", SALT, FAST) == expected
    assert len(expected) == kdf.KEY_SIZE


def test_derive_key_depends_on_passphrase_salt_and_parameters():
    base = derive_key(b"passphrase", SALT, FAST)
    assert derive_key(b"passphrase", SALT, FAST) == base
    assert derive_key(b"passphrasf", SALT, FAST) != base
    assert derive_key(b"passphrase", bytes(16), FAST) != base
    assert derive_key(b"passphrase", SALT, KdfParams(memory_kib=8192, iterations=2)) != base
    assert derive_key(b"passphrase", SALT, KdfParams(memory_kib=9216, iterations=1)) != base


def test_passphrase_is_nfc_normalised():
    """"é" typed as one code point or as "e" + combining accent opens the same repository."""
    composed = "Élodie été".encode()
    decomposed = "E\u0301lodie e\u0301te\u0301".encode()
    assert composed != decomposed
    assert derive_key(composed, SALT, FAST) == derive_key(decomposed, SALT, FAST)


def test_non_utf8_passphrase_is_used_as_is():
    latin1 = "été".encode("latin-1")
    assert derive_key(latin1, SALT, FAST) == nacl.pwhash.argon2id.kdf(32, latin1, SALT, opslimit=1,
                                                                      memlimit=8192 * 1024)
    assert derive_key(latin1, SALT, FAST) != derive_key("été".encode(), SALT, FAST)


def test_a_machine_without_the_memory_argon2id_asks_says_so(monkeypatch):
    # A small machine (or a container limit) refusing the 64 MiB: told in words, not a traceback.
    def out_of_memory(*args, **kwargs):
        raise MemoryError("cannot allocate 65536 KiB")

    monkeypatch.setattr(nacl.pwhash.argon2id, "kdf", out_of_memory)
    with pytest.raises(KeyFileError) as raised:
        kdf.derive_key(b"phrase", bytes(kdf.SALT_SIZE), kdf.KdfParams())
    assert str(raised.value) == "Argon2id failed with the key file's parameters: cannot allocate 65536 KiB"

"""Argon2id: from the passphrase to the key that wraps the master key.

Parameters (docs/FORMAT.md, "Key files"): Argon2id version 0x13, 3 passes over
64 MiB, one lane, 16-byte random salt, 32-byte output. RFC 9106 section 4 recommends
t=3, m=64 MiB for memory-constrained hosts; libsodium (PyNaCl) computes one lane,
so p=1. On this machine one derivation takes about 0.2 s.

Parameters read from a key file are bounded before any work is done. The upper bounds
are exactly what backupctl writes (every writer, `init`, `key add`, `key passwd`,
`recover --add-key` and `media init`, uses the defaults above, and no option changes
them): a key file planted in the storage by someone who can only add objects can then
cost at most one default derivation (64 MiB, 3 passes), never gigabytes or minutes.
The lower bounds admit the cheaper parameters the test suite writes (8 MiB, 1 pass);
they cost less than the defaults, so they cannot be used to stall anything.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import nacl.exceptions
import nacl.pwhash

from agent.errors import KeyFileError

DEFAULT_MEMORY_KIB = 64 * 1024
DEFAULT_ITERATIONS = 3
SALT_SIZE = 16
KEY_SIZE = 32

# Bounds accepted from a key file: 8 MiB .. 64 MiB of memory, 1 .. 3 passes (see above:
# the maximum is what every writer writes; raising the defaults means raising these too,
# and saying so in docs/FORMAT.md 3.1).
MIN_MEMORY_KIB = 8 * 1024
MAX_MEMORY_KIB = DEFAULT_MEMORY_KIB
MAX_ITERATIONS = DEFAULT_ITERATIONS


@dataclass(frozen=True)
class KdfParams:
    memory_kib: int = DEFAULT_MEMORY_KIB
    iterations: int = DEFAULT_ITERATIONS
    parallelism: int = 1

    def validate(self) -> None:
        if type(self.memory_kib) is not int or not MIN_MEMORY_KIB <= self.memory_kib <= MAX_MEMORY_KIB:
            raise KeyFileError(
                f"key file asks Argon2id for {self.memory_kib} KiB of memory; "
                f"accepted range is {MIN_MEMORY_KIB}..{MAX_MEMORY_KIB} KiB"
            )
        if type(self.iterations) is not int or not 1 <= self.iterations <= MAX_ITERATIONS:
            raise KeyFileError(
                f"key file asks Argon2id for {self.iterations} passes; accepted range is 1..{MAX_ITERATIONS}"
            )
        if type(self.parallelism) is not int or self.parallelism != 1:
            raise KeyFileError(f"key file asks Argon2id for {self.parallelism} lanes; only 1 is supported")


# What a new key file uses unless told otherwise (frozen, so one instance serves every default).
DEFAULT_KDF_PARAMS = KdfParams()


def normalize_passphrase(passphrase: bytes) -> bytes:
    """NFC-normalise a UTF-8 passphrase, so "é" typed as one code point or as "e" plus
    a combining accent (macOS, some keyboards) opens the same repository. Bytes that
    are not UTF-8 are used as they are."""
    try:
        return unicodedata.normalize("NFC", passphrase.decode("utf-8")).encode("utf-8")
    except UnicodeDecodeError:
        return passphrase


def derive_key(passphrase: bytes, salt: bytes, params: KdfParams) -> bytes:
    params.validate()
    passphrase = normalize_passphrase(passphrase)
    if len(salt) != SALT_SIZE:
        raise KeyFileError(f"key file salt is {len(salt)} bytes, expected {SALT_SIZE}")
    try:
        return nacl.pwhash.argon2id.kdf(
            KEY_SIZE,
            passphrase,
            salt,
            opslimit=params.iterations,
            memlimit=params.memory_kib * 1024,
        )
    except (nacl.exceptions.RuntimeError, MemoryError) as exc:
        raise KeyFileError(f"Argon2id failed with the key file's parameters: {exc}") from exc

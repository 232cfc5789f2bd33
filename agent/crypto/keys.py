"""The master key, its subkeys, and key files that wrap it under a passphrase.

One random 256-bit master secret per repository, never stored in clear. Each key file
holds it encrypted under an Argon2id-derived key; several key files (several
passphrases) can open the same repository, and changing a passphrase rewrites one
small key file, never the data.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from typing import cast

from agent.crypto import aead, ids
from agent.crypto.kdf import DEFAULT_KDF_PARAMS, SALT_SIZE, KdfParams, derive_key
from agent.errors import IntegrityError, KeyFileError, WrongPassphrase

MASTER_SIZE = 32
KEY_FILE_VERSION = 1
KEY_WRAP_CIPHER = "xchacha20-poly1305"
_WRAP_AAD_PREFIX = b"backupctl key v1\x00"
# Key files on which Repository.open runs Argon2id, at most. Someone who can add objects to the
# storage (object lock does not stop adding) can plant key files; each costs at most one
# derivation at the largest accepted parameters (agent/crypto/kdf.py: 64 MiB, 3 passes,
# about 0.2 s here), so an opening costs at most 8 of them (about 2 s, one at a time).
# A practice has a few passphrases (the server's, the doctor's, the IT provider's, a new
# machine's after `recover --add-key`): 8 leaves room, and the key that opened last time
# on this machine is tried first anyway, so planted files cost a machine in use nothing.
MAX_KEY_FILES_TRIED = 8
# A key file is about 500 bytes (JSON: two hex ids, a date, a host name of at most 255
# bytes, the KDF parameters, a 16-byte salt and a 74-byte wrapped key, in base64). A
# larger object under keys/ is not a key file: it is refused from its listed size, never
# read, and costs no derivation (a planted 400 MB one cost 1.27 GB of memory).
MAX_KEY_FILE_SIZE = 8 * 1024
# Repository and key ids: 16 random bytes, written as 32 hex digits (init, media init, key add).
ID_SIZE = 16
# The wrapped master key: the envelope of a 32-byte secret (docs/FORMAT.md 3.1).
WRAPPED_KEY_SIZE = aead.OVERHEAD + 32


@dataclass(frozen=True)
class MasterKey:
    """The master secret and the subkeys derived from it."""

    secret: bytes

    @classmethod
    def generate(cls) -> "MasterKey":
        return cls(os.urandom(MASTER_SIZE))

    @property
    def encryption_key(self) -> bytes:
        return ids.derive_subkey(self.secret, ids.CONTEXT_ENCRYPTION)

    @property
    def chunk_id_key(self) -> bytes:
        return ids.derive_subkey(self.secret, ids.CONTEXT_CHUNK_ID)

    @property
    def chunker_seed(self) -> int:
        """63-bit secret seed of the chunker's gear table; never 0 (0 means "unkeyed").

        pyfastcdc's Cython build takes the seed as a signed 64-bit C integer, so the top
        bit is cleared: first 8 bytes of the subkey, little-endian, AND (2**63 - 1), OR 1.
        """
        raw = ids.derive_subkey(self.secret, ids.CONTEXT_CHUNKER_SEED)
        return (int.from_bytes(raw[:8], "little") & (2**63 - 1)) | 1


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: object, field: str) -> bytes:
    if not isinstance(text, str):
        raise KeyFileError(f"key file field {field!r} is not a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise KeyFileError(f"key file field {field!r} is not valid base64") from None


def _wrap_aad(repository_id: bytes, key_id: bytes) -> bytes:
    return _WRAP_AAD_PREFIX + repository_id + key_id


def wrap_master_key(
    master: MasterKey,
    passphrase: bytes,
    *,
    repository_id: bytes,
    key_id: bytes,
    params: KdfParams = DEFAULT_KDF_PARAMS,
    created: str,
    host: str,
) -> bytes:
    """Serialize a key file (UTF-8 JSON) holding `master` wrapped under `passphrase`."""
    salt = os.urandom(SALT_SIZE)
    kek = derive_key(passphrase, salt, params)
    wrapped = aead.seal(kek, master.secret, _wrap_aad(repository_id, key_id), cipher=KEY_WRAP_CIPHER)
    document = {
        "version": KEY_FILE_VERSION,
        "repository_id": repository_id.hex(),
        "key_id": key_id.hex(),
        "created": created,
        "host": host,
        "kdf": {
            "algorithm": "argon2id",
            "version": 19,
            "memory_kib": params.memory_kib,
            "iterations": params.iterations,
            "parallelism": params.parallelism,
            "salt": _b64(salt),
        },
        "wrapped_master_key": _b64(wrapped),
    }
    return json.dumps(document, indent=2).encode("utf-8")


@dataclass(frozen=True)
class KeyFile:
    repository_id: bytes
    key_id: bytes
    params: KdfParams
    salt: bytes
    wrapped: bytes
    created: str
    host: str

    @classmethod
    def parse(cls, raw: bytes, *, name: str) -> "KeyFile":
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise KeyFileError(f"key file {name} is not valid JSON") from None
        if not isinstance(doc, dict) or type(doc.get("version")) is not int or doc["version"] != KEY_FILE_VERSION:
            raise KeyFileError(f"key file {name} has an unknown version")
        kdf = doc.get("kdf")
        if (not isinstance(kdf, dict) or kdf.get("algorithm") != "argon2id"
                or type(kdf.get("version")) is not int or kdf["version"] != 19):
            raise KeyFileError(f"key file {name} does not use Argon2id version 19")
        try:
            repository_id = bytes.fromhex(doc["repository_id"])
            key_id = bytes.fromhex(doc["key_id"])
        except (KeyError, TypeError, ValueError):
            raise KeyFileError(f"key file {name} has no valid repository_id/key_id") from None
        # As the file says them, whatever their type: validate() refuses anything but ints.
        params = KdfParams(
            memory_kib=cast(int, kdf.get("memory_kib")),
            iterations=cast(int, kdf.get("iterations")),
            parallelism=cast(int, kdf.get("parallelism")),
        )
        params.validate()
        # Everything derive_key and unwrap would refuse is refused here, before Argon2id
        # runs: a file that cannot open anything must not count as a tried key file
        # (Repository.open stops after MAX_KEY_FILES_TRIED of those).
        salt = _unb64(kdf.get("salt"), "kdf.salt")
        if len(salt) != SALT_SIZE:
            raise KeyFileError(f"key file {name} has a {len(salt)}-byte salt, expected {SALT_SIZE}")
        wrapped = _unb64(doc.get("wrapped_master_key"), "wrapped_master_key")
        if (len(wrapped) != WRAPPED_KEY_SIZE or wrapped[0] != aead.ENVELOPE_VERSION
                or aead.envelope_cipher(wrapped) != KEY_WRAP_CIPHER):
            raise KeyFileError(f"key file {name} does not hold a wrapped master key "
                               f"({len(wrapped)} bytes, expected {WRAPPED_KEY_SIZE} with {KEY_WRAP_CIPHER})")
        if len(repository_id) != ID_SIZE or len(key_id) != ID_SIZE:
            raise KeyFileError(f"key file {name} has no valid repository_id/key_id")
        created, host = doc.get("created", ""), doc.get("host", "")
        if not isinstance(created, str) or not isinstance(host, str):
            raise KeyFileError(f"key file {name}: created and host must be strings")
        return cls(
            repository_id=repository_id,
            key_id=key_id,
            params=params,
            salt=salt,
            wrapped=wrapped,
            created=created,
            host=host,
        )

    def unwrap(self, passphrase: bytes) -> MasterKey:
        kek = derive_key(passphrase, self.salt, self.params)
        try:
            secret = aead.open_envelope(
                kek, self.wrapped, _wrap_aad(self.repository_id, self.key_id), what="key file"
            )
        except IntegrityError:
            raise WrongPassphrase("the passphrase does not open this repository") from None
        if len(secret) != MASTER_SIZE:
            raise KeyFileError("the key file holds a master key of the wrong size")
        return MasterKey(secret)

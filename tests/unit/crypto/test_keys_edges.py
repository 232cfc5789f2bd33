"""Key files: base64 read strictly and the messages a user sees. Written for the mutants mutation
testing found alive (docs/RELIABILITY.md)."""

from __future__ import annotations

import json

import pytest

from agent.crypto.kdf import KdfParams
from agent.crypto.keys import KeyFile, MasterKey, wrap_master_key
from agent.errors import KeyFileError, WrongPassphrase

FAST = KdfParams(memory_kib=8192, iterations=1)
PASSPHRASE = b"phrase de passe du cabinet"


def _document() -> dict:
    raw = wrap_master_key(MasterKey.generate(), PASSPHRASE, repository_id=bytes(16), key_id=bytes(16),
                          params=FAST, created="2026-12-07T06:00:00+01:00", host="cabinet")
    return json.loads(raw)


def _parse(document: dict) -> KeyFile:
    return KeyFile.parse(json.dumps(document).encode(), name="keys/k")


def test_a_salt_with_a_character_outside_base64_is_refused_not_skipped():
    # A lenient decoder drops the '!' and reads the same salt: the file would open.
    document = _document()
    salt = document["kdf"]["salt"]
    document["kdf"]["salt"] = salt[:4] + "!" + salt[4:]
    with pytest.raises(KeyFileError) as raised:
        _parse(document)
    assert str(raised.value) == "key file field 'kdf.salt' is not valid base64"


def test_a_wrapped_key_that_is_not_a_string_is_named():
    document = _document()
    document["wrapped_master_key"] = 42
    with pytest.raises(KeyFileError) as raised:
        _parse(document)
    assert str(raised.value) == "key file field 'wrapped_master_key' is not a base64 string"


def test_a_wrong_passphrase_says_so_in_words():
    key_file = _parse(_document())
    with pytest.raises(WrongPassphrase) as raised:
        key_file.unwrap(b"not the passphrase")
    assert str(raised.value) == "the passphrase does not open this repository"
    assert len(key_file.unwrap(PASSPHRASE).encryption_key) == 32


def test_a_key_file_that_is_not_json_is_named():
    with pytest.raises(KeyFileError) as raised:
        KeyFile.parse(b'{"version": 1,', name="keys/k")
    assert str(raised.value) == "key file keys/k is not valid JSON"


@pytest.mark.parametrize("field, value", [
    ("repository_id", "not hex"),
    ("repository_id", None),
    ("key_id", 12),
], ids=["repository_id-not-hex", "repository_id-null", "key_id-a-number"])
def test_a_key_file_without_readable_ids_is_named(field, value):
    document = _document()
    document[field] = value
    with pytest.raises(KeyFileError) as raised:
        _parse(document)
    assert str(raised.value) == "key file keys/k has no valid repository_id/key_id"


def test_a_key_file_without_its_ids_is_named():
    document = _document()
    del document["key_id"]
    with pytest.raises(KeyFileError) as raised:
        _parse(document)
    assert str(raised.value) == "key file keys/k has no valid repository_id/key_id"


def test_a_key_file_asking_for_several_lanes_is_refused_before_any_derivation():
    # Argon2id with 4 lanes gives another key: read as 1 lane, the file would never open.
    document = _document()
    document["kdf"]["parallelism"] = 4
    with pytest.raises(KeyFileError) as raised:
        _parse(document)
    assert str(raised.value) == "key file asks Argon2id for 4 lanes; only 1 is supported"


def test_a_key_file_without_its_creation_date_or_host_opens():
    # Both only tell a person which key file is which: absent, they read as empty.
    document = _document()
    del document["created"], document["host"]
    key_file = _parse(document)
    assert (key_file.created, key_file.host) == ("", "")
    assert len(key_file.unwrap(PASSPHRASE).secret) == 32


"""agent.crypto.keys: master key, subkeys, key files wrapped under a passphrase."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.crypto import aead, ids
from agent.crypto.kdf import KdfParams
from agent.crypto.keys import KeyFile, MasterKey, wrap_master_key
from agent.errors import KeyFileError, WrongPassphrase
from tests.support.ids import plain_id

FAST = KdfParams(memory_kib=8192, iterations=1)
REPO_ID = bytes.fromhex("00112233445566778899aabbccddeeff")
KEY_ID = bytes.fromhex("ffeeddccbbaa99887766554433221100")
PASSPHRASE = "correct horse battery staple — cabinet Dr Dupont".encode()

FUZZ = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])


def _key_file(master: MasterKey | None = None, passphrase: bytes = PASSPHRASE) -> tuple[MasterKey, bytes]:
    master = master or MasterKey.generate()
    raw = wrap_master_key(master, passphrase, repository_id=REPO_ID, key_id=KEY_ID, params=FAST,
                          created="2026-11-02T10:00:00+01:00", host="cabinet-serveur")
    return master, raw


@pytest.fixture(scope="module")
def wrapped() -> tuple[MasterKey, bytes]:
    return _key_file()


def _edit(raw: bytes, edit) -> bytes:
    doc = json.loads(raw)
    edit(doc)
    return json.dumps(doc).encode()


# ---- master key ---------------------------------------------------------------------


def test_master_key_is_random_and_32_bytes():
    a, b = MasterKey.generate(), MasterKey.generate()
    assert len(a.secret) == 32
    assert a.secret != b.secret


def test_subkeys_are_distinct_and_derived_from_the_secret():
    master = MasterKey(bytes(range(32)))
    assert master.encryption_key == ids.derive_subkey(master.secret, ids.CONTEXT_ENCRYPTION)
    assert master.chunk_id_key == ids.derive_subkey(master.secret, ids.CONTEXT_CHUNK_ID)
    assert len({master.encryption_key, master.chunk_id_key, master.secret}) == 3
    assert MasterKey(bytes(32)).encryption_key != master.encryption_key


def test_chunker_seed_is_64_bit_and_never_zero():
    for secret in (bytes(32), b"\xff" * 32, bytes(range(32))):
        seed = MasterKey(secret).chunker_seed
        assert 0 < seed < 2**64
        assert seed & 1


# ---- wrap / unwrap ------------------------------------------------------------------


def test_wrap_unwrap_round_trip(wrapped):
    master, raw = wrapped
    key_file = KeyFile.parse(raw, name="keys/x")
    assert key_file.repository_id == REPO_ID
    assert key_file.key_id == KEY_ID
    assert key_file.params == FAST
    assert key_file.host == "cabinet-serveur"
    assert key_file.created == "2026-11-02T10:00:00+01:00"
    assert len(key_file.salt) == 16
    assert key_file.unwrap(PASSPHRASE) == master


def test_key_file_never_contains_the_secret_in_clear(wrapped):
    master, raw = wrapped
    for form in (master.secret, master.secret.hex().encode(), base64.b64encode(master.secret)):
        assert form not in raw


def test_key_file_is_documented_json(wrapped):
    _master, raw = wrapped
    doc = json.loads(raw)
    assert doc["version"] == 1
    assert doc["kdf"]["algorithm"] == "argon2id"
    assert doc["kdf"]["version"] == 19
    assert (doc["kdf"]["memory_kib"], doc["kdf"]["iterations"], doc["kdf"]["parallelism"]) == (8192, 1, 1)
    wrapped_key = base64.b64decode(doc["wrapped_master_key"])
    assert aead.envelope_cipher(wrapped_key) == "xchacha20-poly1305"
    assert len(wrapped_key) == 32 + aead.OVERHEAD


def test_two_wraps_of_one_master_differ_but_both_open():
    master = MasterKey.generate()
    _, raw1 = _key_file(master)
    _, raw2 = _key_file(master, passphrase=b"another passphrase")
    k1, k2 = KeyFile.parse(raw1, name="k1"), KeyFile.parse(raw2, name="k2")
    assert k1.salt != k2.salt
    assert k1.unwrap(PASSPHRASE) == k2.unwrap(b"another passphrase") == master


@pytest.mark.parametrize("wrong", [b"", b"correct horse battery staple", PASSPHRASE + b" ", PASSPHRASE.upper()])
def test_wrong_passphrase(wrapped, wrong):
    _master, raw = wrapped
    with pytest.raises(WrongPassphrase):
        KeyFile.parse(raw, name="keys/x").unwrap(wrong)


def _flip_hex(text: str) -> str:
    return ("0" if text[0] != "0" else "1") + text[1:]


def _flip_b64(text: str) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[len(raw) // 2] ^= 1
    return base64.b64encode(bytes(raw)).decode()


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda d: d.update(repository_id=_flip_hex(d["repository_id"])), id="repository_id"),
        pytest.param(lambda d: d.update(repository_id=d["repository_id"][:-2]), id="repository_id-short"),
        pytest.param(lambda d: d.update(key_id=_flip_hex(d["key_id"])), id="key_id"),
        pytest.param(lambda d: d.update(key_id=""), id="key_id-empty"),
        pytest.param(lambda d: d["kdf"].update(salt=_flip_b64(d["kdf"]["salt"])), id="salt"),
        pytest.param(lambda d: d["kdf"].update(salt=base64.b64encode(b"x" * 8).decode()), id="salt-short"),
        pytest.param(lambda d: d["kdf"].update(salt="not base64!"), id="salt-garbage"),
        pytest.param(lambda d: d["kdf"].update(salt=None), id="salt-null"),
        pytest.param(lambda d: d["kdf"].update(iterations=2), id="iterations"),
        pytest.param(lambda d: d["kdf"].update(memory_kib=9216), id="memory"),
        pytest.param(lambda d: d["kdf"].update(memory_kib=2**40), id="memory-hostile"),
        pytest.param(lambda d: d.update(wrapped_master_key=_flip_b64(d["wrapped_master_key"])), id="wrapped"),
        pytest.param(lambda d: d.update(wrapped_master_key=d["wrapped_master_key"][:-8]), id="wrapped-cut"),
        pytest.param(lambda d: d.update(wrapped_master_key=""), id="wrapped-empty"),
        pytest.param(lambda d: d.update(wrapped_master_key=12), id="wrapped-int"),
        pytest.param(lambda d: d.pop("wrapped_master_key"), id="wrapped-missing"),
        pytest.param(lambda d: d.update(version=2), id="version"),
        pytest.param(lambda d: d["kdf"].update(algorithm="scrypt"), id="algorithm"),
        pytest.param(lambda d: d["kdf"].update(version=16), id="argon2-version"),
        pytest.param(lambda d: d.pop("kdf"), id="kdf-missing"),
        pytest.param(lambda d: d.pop("repository_id"), id="repository_id-missing"),
    ],
)
def test_tampered_key_file_never_yields_a_master_key(wrapped, edit):
    master, raw = wrapped
    tampered = _edit(raw, edit)
    with pytest.raises((WrongPassphrase, KeyFileError)):
        unwrapped = KeyFile.parse(tampered, name="keys/x").unwrap(PASSPHRASE)
        pytest.fail(f"tampered key file opened (same master: {unwrapped == master})")


def test_wrapped_key_bound_to_repository_and_key_id():
    """A wrapped master key copied into another key file (other ids) does not open."""
    master, raw = _key_file()
    other = wrap_master_key(master, PASSPHRASE, repository_id=b"\x01" * 16, key_id=b"\x02" * 16,
                            params=FAST, created="", host="")

    def graft(doc):
        foreign = json.loads(other)
        doc["wrapped_master_key"] = foreign["wrapped_master_key"]
        doc["kdf"]["salt"] = foreign["kdf"]["salt"]

    with pytest.raises(WrongPassphrase):
        KeyFile.parse(_edit(raw, graft), name="keys/x").unwrap(PASSPHRASE)


def test_wrong_size_master_in_an_authentic_envelope_is_a_key_file_error():
    """Someone with the passphrase wraps 16 bytes: authentic but not a master key."""
    _master, raw = _key_file(MasterKey(b"\x05" * 16))
    with pytest.raises(KeyFileError):
        KeyFile.parse(raw, name="keys/x").unwrap(PASSPHRASE)


# ---- KeyFile.parse on hostile input ---------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\xff\xfe\x00",
        b"null",
        b"[]",
        b"42",
        b'"version"',
        b"{}",
        b'{"version": 1}',
        b'{"version": 1, "kdf": []}',
        b'{"version": 1, "kdf": {"algorithm": "argon2id", "version": 19}}',
        b'{"version": 1, "kdf": {"algorithm": "argon2id", "version": 19}, "repository_id": 5, "key_id": "00"}',
        b'{"version": 1, "kdf": {"algorithm": "argon2id", "version": 19}, "repository_id": "zz", "key_id": "00"}',
        b'{"version": 1, "kdf": {"algorithm": "argon2id", "version": 19, "memory_kib": NaN, "iterations": 1,'
        b' "parallelism": 1}, "repository_id": "00", "key_id": "00"}',
        b'{"version": 1, "kdf": {"algorithm": "argon2id", "version": 19, "memory_kib": Infinity, "iterations": 1,'
        b' "parallelism": 1}, "repository_id": "00", "key_id": "00"}',
        b'{"version": 1, "kdf": {"algorithm": "argon2id", "version": 19, "memory_kib": 8192, "iterations": 1,'
        b' "parallelism": 1, "salt": "AAAAAAAAAAAAAAAAAAAAAA=="}, "repository_id": "00", "key_id": "00",'
        b' "wrapped_master_key": "\\u00e9\\u00e9\\u00e9\\u00e9"}',
        b'{"version": 1, "kdf": {"algorithm": "argon2id", "version": 19, "memory_kib": 8192, "iterations": 1,'
        b' "parallelism": 1, "salt": "AAAAAAAAAAAAAAAAAAAAAA=="}, "repository_id": "00", "key_id": "00",'
        b' "wrapped_master_key": ["AAAA"]}',
        b'{"version": 1, "kdf": {"algorithm": "argon2id", "version": 19, "memory_kib": ' + b"9" * 5000 + b"}}",
    ],
    ids=lambda raw: plain_id(raw, 40),
)
def test_parse_garbage_raises_key_file_error(raw):
    with pytest.raises(KeyFileError):
        KeyFile.parse(raw, name="keys/x")


def test_parse_deeply_nested_json_raises_key_file_error():
    """A hostile key file in a shared bucket must not crash the agent with RecursionError."""
    depth = 100_000
    with pytest.raises(KeyFileError):
        KeyFile.parse(b"[" * depth + b"]" * depth, name="keys/x")
    with pytest.raises(KeyFileError):
        KeyFile.parse(b'{"version": 1, "kdf": ' + b"[" * depth + b"]" * depth + b"}", name="keys/x")


json_scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=-(2**70), max_value=2**70)
                | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=30))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=12)
FIELDS = ["version", "repository_id", "key_id", "created", "host", "wrapped_master_key", "kdf"]
KDF_FIELDS = ["algorithm", "version", "memory_kib", "iterations", "parallelism", "salt"]


def _expect_only_key_file_error(raw: bytes) -> None:
    try:
        parsed = KeyFile.parse(raw, name="keys/fuzz")
    except KeyFileError:
        return
    # Whatever parses must carry bounded parameters and bytes fields.
    parsed.params.validate()
    assert isinstance(parsed.salt, bytes) and isinstance(parsed.wrapped, bytes)


@FUZZ
@given(raw=st.binary(max_size=300))
def test_parse_arbitrary_bytes_raises_only_key_file_error(raw):
    _expect_only_key_file_error(raw)


@FUZZ
@given(value=json_values)
def test_parse_arbitrary_json_raises_only_key_file_error(value):
    _expect_only_key_file_error(json.dumps(value).encode())


_, VALID = _key_file(MasterKey(bytes(range(32))))


@FUZZ
@given(field=st.sampled_from(FIELDS), value=json_values, drop=st.booleans())
def test_parse_mutated_key_file_raises_only_key_file_error(field, value, drop):
    doc = json.loads(VALID)
    if drop:
        doc.pop(field)
    else:
        doc[field] = value
    _expect_only_key_file_error(json.dumps(doc).encode())


@FUZZ
@given(field=st.sampled_from(KDF_FIELDS), value=json_values, drop=st.booleans())
def test_parse_mutated_kdf_section_raises_only_key_file_error(field, value, drop):
    doc = json.loads(VALID)
    if drop:
        doc["kdf"].pop(field)
    else:
        doc["kdf"][field] = value
    _expect_only_key_file_error(json.dumps(doc).encode())


@pytest.mark.parametrize(
    "edit",
    [
        # The reviewer's case: a 1-byte salt ("eA==") passed parse and was refused only by
        # derive_key, after Repository.open had counted the file as tried.
        pytest.param(lambda d: d["kdf"].update(salt="eA=="), id="salt-1-byte"),
        pytest.param(lambda d: d["kdf"].update(salt=""), id="salt-empty"),
        pytest.param(lambda d: d["kdf"].update(salt=base64.b64encode(b"s" * 17).decode()), id="salt-17"),
        pytest.param(lambda d: d.update(wrapped_master_key=base64.b64encode(b"\x01\x01" + b"w" * 71).decode()),
                     id="wrapped-73"),
        pytest.param(lambda d: d.update(wrapped_master_key=base64.b64encode(b"\x01\x01" + b"w" * 4000).decode()),
                     id="wrapped-long"),
        pytest.param(lambda d: d.update(wrapped_master_key=base64.b64encode(b"\x02\x01" + b"w" * 72).decode()),
                     id="wrapped-envelope-version"),
        pytest.param(lambda d: d.update(wrapped_master_key=base64.b64encode(b"\x01\x02" + b"w" * 72).decode()),
                     id="wrapped-other-cipher"),
        pytest.param(lambda d: d.update(repository_id="ab" * 15), id="repository_id-15-bytes"),
        pytest.param(lambda d: d.update(key_id="ab" * 17), id="key_id-17-bytes"),
        pytest.param(lambda d: d.update(created=12), id="created-int"),
        pytest.param(lambda d: d.update(host=["a"]), id="host-list"),
        pytest.param(lambda d: d.update(version=True), id="version-true"),
        pytest.param(lambda d: d["kdf"].update(version=19.0), id="argon2-version-float"),
    ],
)
def test_a_key_file_that_cannot_open_anything_is_refused_by_parse(wrapped, edit):
    """Everything derive_key or unwrap would refuse for its form is refused by parse,
    before any Argon2id run, so such a file never counts as a tried key file
    (docs/SECURITY.md section 4)."""
    _master, raw = wrapped
    with pytest.raises(KeyFileError, match="key file keys/x"):
        KeyFile.parse(_edit(raw, edit), name="keys/x")

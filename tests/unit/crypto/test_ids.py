"""agent.crypto.ids: keyed chunk ids and subkey derivation."""

from __future__ import annotations

import hashlib

import blake3
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.crypto import ids

SETTINGS = settings(max_examples=50, deadline=None, derandomize=True, database=None)
CONTEXTS = [ids.CONTEXT_ENCRYPTION, ids.CONTEXT_CHUNK_ID, ids.CONTEXT_CHUNKER_SEED, ids.CONTEXT_AES_OBJECT_KEY]


def test_chunk_id_is_keyed_blake3_256():
    key, data = b"K" * 32, b"lettre de liaison"
    assert ids.chunk_id(key, data) == blake3.blake3(data, key=key).digest()
    assert len(ids.chunk_id(key, data)) == ids.ID_SIZE == 32


def test_chunk_id_is_not_the_plain_hash_of_the_data():
    """Someone reading the bucket cannot confirm a known document by hashing it."""
    data = b"formulaire CERFA standard"
    cid = ids.chunk_id(b"K" * 32, data)
    assert cid != blake3.blake3(data).digest()
    assert cid != hashlib.sha256(data).digest()


@SETTINGS
@given(k1=st.binary(min_size=32, max_size=32), k2=st.binary(min_size=32, max_size=32), data=st.binary(max_size=200))
def test_different_keys_give_different_ids(k1, k2, data):
    if k1 == k2:
        assert ids.chunk_id(k1, data) == ids.chunk_id(k2, data)
    else:
        assert ids.chunk_id(k1, data) != ids.chunk_id(k2, data)


@SETTINGS
@given(a=st.binary(max_size=200), b=st.binary(max_size=200))
def test_chunk_id_is_deterministic_and_content_dependent(a, b):
    key = b"\x11" * 32
    assert ids.chunk_id(key, a) == ids.chunk_id(key, bytes(a))
    assert (ids.chunk_id(key, a) == ids.chunk_id(key, b)) == (a == b)


def test_chunk_id_accepts_memoryview():
    data = bytearray(b"x" * 1000)
    assert ids.chunk_id(b"K" * 32, memoryview(data)) == ids.chunk_id(b"K" * 32, bytes(data))


def test_derivation_contexts_are_distinct_strings():
    assert len(set(CONTEXTS)) == len(CONTEXTS)


def test_derive_subkey_contexts_give_distinct_keys():
    master = bytes(range(32))
    subkeys = [ids.derive_subkey(master, context) for context in CONTEXTS]
    assert all(len(k) == 32 for k in subkeys)
    assert len(set(subkeys) | {master}) == len(CONTEXTS) + 1


def test_derive_subkey_is_blake3_derive_key_and_depends_on_master():
    master = bytes(range(32))
    assert ids.derive_subkey(master, ids.CONTEXT_ENCRYPTION) == blake3.blake3(
        master, derive_key_context=ids.CONTEXT_ENCRYPTION
    ).digest()
    assert ids.derive_subkey(master, ids.CONTEXT_ENCRYPTION) != ids.derive_subkey(bytes(32), ids.CONTEXT_ENCRYPTION)


def test_sha256_fingerprints():
    assert ids.sha256_hex(b"abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    streaming = ids.new_file_fingerprint()
    streaming.update(b"a")
    streaming.update(b"bc")
    assert streaming.hexdigest() == ids.sha256_hex(b"abc")

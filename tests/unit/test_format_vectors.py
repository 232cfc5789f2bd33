"""docs/FORMAT.md cannot drift from the code.

The test vectors are parsed out of the document (section 15) and checked three ways:

* against the agent's own code (`agent.crypto`, `agent.repo`, the restore and check engines);
* against independent implementations: libsodium's XChaCha20-Poly1305 (through PyNaCl's raw
  bindings), the Argon2 reference library (libargon2, when installed), BLAKE3's official vectors;
* against `SpecReader` below, a reader written from FORMAT.md alone that imports nothing from
  `agent`: it restores the document's example repository and repositories made by backupctl.

Constants the document states in prose are compared with the code's constants too.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import io
import json
import math
import os
import re
import stat
import struct
from pathlib import Path

import blake3
import nacl.bindings
import nacl.exceptions
import nacl.pwhash
import pytest
import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "FORMAT.md"
BEGIN_MARK = "<!-- BEGIN GENERATED TEST VECTORS (scripts/format_vectors.py) -->"
END_MARK = "<!-- END GENERATED TEST VECTORS -->"
INTEGER_FIELDS = {"memory_kib", "iterations", "parallelism", "chunker_seed", "input_size"}
# What the reader's AEAD raises when an envelope does not open (XChaCha20-Poly1305, AES-256-GCM):
# a refusal must come from the authentication, not from any other error on the way.
NOT_AUTHENTIC = (nacl.exceptions.CryptoError, InvalidTag)
EXAMPLE_MTIME_NS = 1767547800000000000

# ---- parsing the document ----------------------------------------------------------------


def _doc() -> str:
    return DOC_PATH.read_text(encoding="utf-8")


def _generated() -> str:
    text = _doc()
    start, end = text.index(BEGIN_MARK), text.index(END_MARK)
    assert start < end
    return text[start + len(BEGIN_MARK) : end]


_FENCE = re.compile(r"^```(\S+)(?: (\S*))?\n(.*?)^```$", re.M | re.S)


def _blocks() -> list[tuple[str, str, str]]:
    return [(m.group(1), m.group(2) or "", m.group(3)) for m in _FENCE.finditer(_generated())]


def _parse_fields(body: str, integers: set[str] = INTEGER_FIELDS) -> dict:
    fields: dict = {}
    last = None
    for line in body.splitlines():
        if not line.strip():
            continue
        if line[0].isspace():
            assert isinstance(fields[last], bytes), f"continuation of non-hex field {last}"
            fields[last] += bytes.fromhex(line.strip())
            continue
        key, _, value = line.partition(" ")
        value = value.strip()
        if value.startswith('"'):
            fields[key] = json.loads(value)
        elif key in integers:
            fields[key] = int(value)
        else:
            fields[key] = bytes.fromhex(value)
        last = key
    return fields


def vectors() -> dict[str, dict]:
    found = {}
    for kind, name, body in _blocks():
        if kind == "vector":
            assert name not in found, f"vector {name} appears twice"
            found[name] = _parse_fields(body)
    return found


def example_objects() -> dict[str, bytes]:
    objects = {}
    for kind, name, body in _blocks():
        if kind == "object":
            objects[name] = bytes.fromhex("".join(body.split()))
        elif kind == "object-text":
            objects[name] = body.rstrip("\n").encode("utf-8")
    return objects


def expected_restore() -> list[dict]:
    bodies = [body for kind, _name, body in _blocks() if kind == "expected-restore"]
    assert len(bodies) == 1
    return [json.loads(line) for line in bodies[0].splitlines() if line.strip()]


def _expected_path(entry: dict) -> bytes:
    if "path" in entry:
        return entry["path"].encode("utf-8")
    return base64.b64decode(entry["path_b64"], validate=True)


# ---- an independent reader, from FORMAT.md alone (no `agent` import) ---------------------


class SpecReader:
    """Section 14 of FORMAT.md, in Python, for objects held in a dict {name: bytes}."""

    AES_CONTEXT = "backupctl 2026-11 aes-256-gcm object key"
    ENTRY = struct.Struct("<B32sIII")

    def __init__(self, objects: dict[str, bytes], passphrase: bytes) -> None:
        self.objects = objects
        self.master = self._open_master(passphrase)
        self.enc_key = blake3.blake3(self.master, derive_key_context="backupctl 2026-11 encryption key").digest()
        self.id_key = blake3.blake3(self.master, derive_key_context="backupctl 2026-11 chunk id key").digest()
        self.config = json.loads(self.payload(self.open_envelope(self.enc_key, self.objects["config"],
                                                                  self.binding(1, b""))))
        self.format_version = self.config["format_version"]
        assert self.format_version in (1, 2, 3, 4, 5)
        assert bytes.fromhex(self.config["repository_id"]) == self.repo_id
        self.padded = self.format_version >= 4  # section 7.2
        self.versioned = self.format_version >= 5  # section 7.3: every structure says its version
        # Section 8 and 10: the `version` of index files and snapshots.
        self.document_version = self.format_version if self.versioned else 1
        self.cipher_id = {"xchacha20-poly1305": 1, "aes-256-gcm": 2}[self.config["cipher"]]
        self.index = self._master_index()

    # -- primitives (sections 4 and 5) --

    def names(self, prefix: str) -> list[str]:
        return sorted(n for n in self.objects
                      if n.startswith(prefix) and not n.rsplit("/", 1)[-1].startswith(".tmp-"))

    @classmethod
    def open_envelope(cls, key: bytes, env: bytes, binding: bytes) -> bytes:
        assert len(env) >= 42 and env[0] == 1
        nonce, body, aad = env[2:26], env[26:], env[:2] + binding
        if env[1] == 1:
            return nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(body, aad, nonce, key)
        if env[1] == 2:
            object_key = blake3.blake3(key + nonce, derive_key_context=cls.AES_CONTEXT).digest()
            return AESGCM(object_key).decrypt(nonce[:12], body, aad)
        raise AssertionError(f"unknown cipher id {env[1]}")

    @staticmethod
    def payload(plain: bytes, expected_size: int | None = None) -> bytes:
        if plain[0] == 0:
            data = plain[1:]
        elif plain[0] == 1:
            data = zstandard.ZstdDecompressor().decompress(plain[1:], max_output_size=expected_size or 1 << 30)
        else:
            raise AssertionError(f"unknown compression byte {plain[0]}")
        assert expected_size is None or len(data) == expected_size
        return data

    def binding(self, kind: int, object_id: bytes) -> bytes:
        return b"backupctl\x00" + self.repo_id + bytes((kind,)) + object_id

    @staticmethod
    def padme(length: int) -> int:
        e = math.floor(math.log2(length))
        s = math.floor(math.log2(e)) + 1
        mask = 2 ** (e - s) - 1
        return (length + mask) & ~mask

    @classmethod
    def unpad(cls, plain: bytes) -> bytes:
        """Section 7.2: u32 n || payload (n bytes) || zero padding to padme(max(4 + n, 512))."""
        (n,) = struct.unpack_from("<I", plain)
        assert 4 + n <= len(plain) == cls.padme(max(4 + n, 512)) and not any(plain[4 + n :])
        return plain[4 : 4 + n]

    def open_body(self, body: bytes, binding: bytes) -> bytes:
        """Section 4.1: a version-4 body is an envelope without its implied `01 || cipher id`."""
        return self.open_envelope(self.enc_key, bytes((1, self.cipher_id)) + body, binding)

    # -- keys (section 3) --

    def _open_master(self, passphrase: bytes) -> bytes:
        for name in self.names("keys/"):
            doc = json.loads(self.objects[name])
            kdf = doc["kdf"]
            assert doc["version"] == 1 and kdf["algorithm"] == "argon2id" and kdf["version"] == 19
            assert 8192 <= kdf["memory_kib"] <= 65536 and 1 <= kdf["iterations"] <= 3  # KDF_BOUNDS
            assert kdf["parallelism"] == 1 and name == "keys/" + doc["key_id"]
            salt = base64.b64decode(kdf["salt"], validate=True)
            assert len(salt) == 16
            kek = nacl.pwhash.argon2id.kdf(32, passphrase, salt, opslimit=kdf["iterations"],
                                           memlimit=kdf["memory_kib"] * 1024)
            repo_id, key_id = bytes.fromhex(doc["repository_id"]), bytes.fromhex(doc["key_id"])
            try:
                master = self.open_envelope(kek, base64.b64decode(doc["wrapped_master_key"], validate=True),
                                            b"backupctl key v1\x00" + repo_id + key_id)
            except Exception:
                continue
            assert len(master) == 32
            self.repo_id = repo_id
            return master
        raise AssertionError("no key file opens with this passphrase")

    # -- index and packs (sections 7 and 8) --

    def _entries(self, buf: bytes) -> list[tuple]:
        assert len(buf) % 45 == 0
        entries = list(self.ENTRY.iter_unpack(buf))
        assert all(kind in (0, 1) for kind, *_ in entries)
        return entries

    def _parse_index(self, plain: bytes) -> tuple[list[bytes], dict[bytes, list[tuple]]]:
        assert plain[0] == self.document_version
        pos = 1
        (n_superseded,) = struct.unpack_from("<I", plain, pos)
        pos += 4
        superseded = [plain[pos + 16 * i : pos + 16 * (i + 1)] for i in range(n_superseded)]
        pos += 16 * n_superseded
        (n_packs,) = struct.unpack_from("<I", plain, pos)
        pos += 4
        packs = {}
        for _ in range(n_packs):
            pack_id = plain[pos : pos + 32]
            (n_entries,) = struct.unpack_from("<I", plain, pos + 32)
            pos += 36
            packs[pack_id] = self._entries(plain[pos : pos + 45 * n_entries])
            pos += 45 * n_entries
        assert pos == len(plain)
        return superseded, packs

    def _master_index(self) -> dict[bytes, tuple]:
        files = {}
        for name in self.names("index/"):
            index_id = bytes.fromhex(name[len("index/"):])
            if self.padded:  # section 8: kind 13, padded plaintext
                plain = self.payload(self.unpad(self.open_envelope(self.enc_key, self.objects[name],
                                                                   self.binding(13, index_id))))
            else:
                plain = self.payload(self.open_envelope(self.enc_key, self.objects[name], self.binding(2, index_id)))
            files[index_id] = self._parse_index(plain)
        superseded = {old for replaced, _packs in files.values() for old in replaced}
        index: dict[bytes, tuple] = {}
        for index_id, (_replaced, packs) in files.items():
            if index_id in superseded:
                continue
            for pack_id, entries in packs.items():
                for kind, chunk_id, offset, length, raw_length in entries:
                    index.setdefault(chunk_id, (pack_id, kind, offset, length, raw_length))
        return index

    @staticmethod
    def pack_name(pack_id: bytes) -> str:
        return f"data/{pack_id.hex()[:2]}/{pack_id.hex()}"

    def pack_header(self, name: str) -> list[tuple]:
        data = self.objects[name]
        assert hashlib.sha256(data).digest().hex() == name.rsplit("/", 1)[-1]
        if self.versioned:  # section 7.3: a 48-byte trailer, u32 format version || u32 header length
            assert len(data) >= 48
            trailer = self.open_body(data[-48:], self.binding(12, b""))
            assert len(trailer) == 8
            version, header_length = struct.unpack("<II", trailer)
            assert version == self.format_version
            start = len(data) - 48 - header_length
            assert start >= 0 and 40 <= header_length <= 16 * 1024 * 1024
            return self._entries(self.payload(self.unpad(self.open_body(data[start:-48], self.binding(11, b"")))))
        if self.padded:  # section 7.2
            assert len(data) >= 44
            trailer = self.open_body(data[-44:], self.binding(12, b""))
            assert len(trailer) == 4
            (header_length,) = struct.unpack("<I", trailer)
            start = len(data) - 44 - header_length
            assert start >= 0 and 40 <= header_length <= 16 * 1024 * 1024
            return self._entries(self.payload(self.unpad(self.open_body(data[start:-44], self.binding(11, b"")))))
        (header_length,) = struct.unpack("<I", data[-4:])
        start = len(data) - 4 - header_length
        assert start >= 0 and header_length <= 16 * 1024 * 1024
        plain = self.payload(self.open_envelope(self.enc_key, data[start:-4], self.binding(6, b"")))
        return self._entries(plain)

    def load_blob(self, chunk_id: bytes) -> bytes:
        pack_id, kind, offset, length, raw_length = self.index[chunk_id]
        envelope = self.objects[self.pack_name(pack_id)][offset : offset + length]
        assert len(envelope) == length
        if self.padded:
            plain = self.unpad(self.open_body(envelope, self.binding(10 if kind == 1 else 9, chunk_id)))
        else:
            plain = self.open_envelope(self.enc_key, envelope, self.binding(5 if kind == 1 else 4, chunk_id))
        data = self.payload(plain, raw_length)
        assert blake3.blake3(data, key=self.id_key).digest() == chunk_id
        return data

    # -- snapshots and trees (sections 9 and 10) --

    def snapshots(self) -> list[dict]:
        """Section 10: ordered by the instant of `time` (never its text), then by id; the
        last is "latest"."""
        found = []
        for name in self.names("snapshots/"):
            snapshot_id = bytes.fromhex(name[len("snapshots/"):])
            doc = json.loads(self.payload(self.open_envelope(self.enc_key, self.objects[name],
                                                             self.binding(3, snapshot_id))))
            assert doc["version"] == self.document_version
            moment = datetime.datetime.fromisoformat(doc["time"])
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=datetime.timezone.utc)
            found.append((moment, snapshot_id, doc))
        return [doc for _moment, _id, doc in sorted(found, key=lambda item: item[:2])]

    def latest(self) -> dict:
        return self.snapshots()[-1]

    def restore(self, snapshot: dict, target: bytes, *, keep_special_bits: bool = False) -> None:
        first_link: dict[str, tuple[bytes, str]] = {}  # hardlink -> (first path, its verified sha256)
        directories: list[tuple[bytes, dict]] = []
        may_chown = os.geteuid() == 0

        def apply(path: bytes, node: dict) -> None:
            """Section 9, in its order: owner first (chown clears setuid and setgid), mode, times."""
            if may_chown:
                os.lchown(path, node["uid"], node["gid"])
            os.chmod(path, node["mode"] & (0o7777 if keep_special_bits else 0o777))
            os.utime(path, ns=(node["mtime_ns"], node["mtime_ns"]))

        def restore_dir(tree_id: bytes, directory: bytes) -> None:
            tree = json.loads(self.load_blob(tree_id))
            assert tree.get("version") == (self.format_version if self.versioned else None)  # section 9
            for node in tree["nodes"]:
                if "name" in node:
                    name = node["name"].encode("utf-8")
                else:
                    name = base64.b64decode(node["name_b64"], validate=True)
                assert name not in (b"", b".", b"..") and b"/" not in name and b"\x00" not in name
                path = os.path.join(directory, name)
                if node["type"] == "dir":
                    os.mkdir(path, 0o700)
                    if node.get("subtree"):
                        restore_dir(bytes.fromhex(node["subtree"]), path)
                    directories.append((path, node))
                elif node["type"] == "symlink":
                    link = node["target"].encode("utf-8") if "target" in node else \
                        base64.b64decode(node["target_b64"], validate=True)
                    os.symlink(link, path)
                    if may_chown:
                        os.lchown(path, node["uid"], node["gid"])
                    os.utime(path, ns=(node["mtime_ns"], node["mtime_ns"]), follow_symlinks=False)
                elif node["type"] == "file":
                    first = first_link.get(node.get("hardlink"))
                    if first is not None and first[1] == node["sha256"]:  # never on `hardlink` alone
                        os.link(first[0], path)
                        continue
                    digest, size = hashlib.sha256(), 0
                    with open(path, "wb") as handle:
                        for chunk in node["chunks"]:
                            data = self.load_blob(bytes.fromhex(chunk))
                            handle.write(data)
                            digest.update(data)
                            size += len(data)
                    assert size == node["size"] and digest.hexdigest() == node["sha256"], path
                    apply(path, node)
                    if node.get("hardlink") and node["hardlink"] not in first_link:
                        first_link[node["hardlink"]] = (path, node["sha256"])
                else:
                    raise AssertionError(f"unknown node type {node['type']}")

        restore_dir(bytes.fromhex(snapshot["tree"]), target)
        for path, node in directories:  # children were appended before their parents
            apply(path, node)


# ---- the vectors, against the agent's code and independent implementations ----------------


def test_document_has_every_vector():
    assert set(vectors()) == {
        "hchacha20", "xchacha20-poly1305-aead", "envelope-xchacha20-poly1305", "envelope-aes-256-gcm",
        "subkeys", "chunk-id", "argon2id", "associated-data", "gear-table", "padding", "pack-v4",
        "pack-v5",
    }
    objects = example_objects()
    assert sum(n.startswith("keys/") for n in objects) == 1
    assert sum(n.startswith("data/") for n in objects) == 2
    assert {"config", "index/b0b1b2b3b4b5b6b7b8b9babbbcbdbebf",
            "snapshots/c0c1c2c3c4c5c6c7c8c9cacbcccdcecf"} <= set(objects)


def test_hchacha20():
    from agent.crypto.aead import hchacha20

    v = vectors()["hchacha20"]
    assert hchacha20(v["key"], v["nonce16"]) == v["output"]
    # The value printed in draft-irtf-cfrg-xchacha-03 section 2.2.1.
    assert v["output"].hex() == "82413b4227b27bfed30e42508a877d73a0f9e4d58a74a853c12ec41326d3ecdc"


def test_xchacha20_poly1305_construction_matches_libsodium():
    from agent.crypto.aead import hchacha20

    v = vectors()["xchacha20-poly1305-aead"]
    assert v["hchacha20_subkey"] == hchacha20(v["key"], v["nonce24"][:16])
    assert v["chacha_nonce12"] == bytes(4) + v["nonce24"][16:]
    ours = ChaCha20Poly1305(v["hchacha20_subkey"]).encrypt(v["chacha_nonce12"], v["plaintext"], v["aad"])
    sodium = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(v["plaintext"], v["aad"], v["nonce24"], v["key"])
    assert ours == sodium == v["ciphertext_and_tag"]
    # The tag printed in draft-irtf-cfrg-xchacha-03 appendix A.3.1.
    assert v["ciphertext_and_tag"][-16:].hex() == "c0875924c1c7987947deafd8780acf49"


@pytest.mark.parametrize("name, cipher", [("envelope-xchacha20-poly1305", "xchacha20-poly1305"),
                                          ("envelope-aes-256-gcm", "aes-256-gcm")])
def test_envelopes(monkeypatch, name, cipher):
    from agent.crypto import aead

    v = vectors()[name]
    envelope = v["envelope"]
    assert envelope[0] == 1 and envelope[1] == aead.CIPHER_IDS[cipher]
    assert envelope[2:26] == v["nonce24"]
    assert len(envelope) == len(v["plaintext"]) + 42
    assert v["full_aad"] == envelope[:2] + v["aad"]
    assert aead.open_envelope(v["key"], envelope, v["aad"], what="vector") == v["plaintext"]
    assert SpecReader.open_envelope(v["key"], envelope, v["aad"]) == v["plaintext"]
    if cipher == "xchacha20-poly1305":
        assert nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
            envelope[26:], v["full_aad"], v["nonce24"], v["key"]) == v["plaintext"]
    else:
        assert v["object_key"] == blake3.blake3(v["key"] + v["nonce24"],
                                                derive_key_context="backupctl 2026-11 aes-256-gcm object key").digest()
        assert v["gcm_nonce12"] == v["nonce24"][:12]
        assert AESGCM(v["object_key"]).decrypt(v["gcm_nonce12"], envelope[26:], v["full_aad"]) == v["plaintext"]
    # The agent's own seal, given the vector's nonce, writes exactly these bytes.
    monkeypatch.setattr(aead.os, "urandom", lambda n: v["nonce24"][:n])
    assert aead.seal(v["key"], v["plaintext"], v["aad"], cipher=cipher) == envelope


def test_subkeys():
    from agent.crypto import ids
    from agent.crypto.keys import MasterKey

    v = vectors()["subkeys"]
    master = MasterKey(v["master"])
    assert master.encryption_key == v["encryption_key"]
    assert master.chunk_id_key == v["chunk_id_key"]
    assert ids.derive_subkey(v["master"], ids.CONTEXT_CHUNKER_SEED) == v["chunker_seed_material"]
    assert master.chunker_seed == v["chunker_seed"]
    assert v["chunker_seed"] == (int.from_bytes(v["chunker_seed_material"][:8], "little") & (2**63 - 1)) | 1


def test_blake3_library_agrees_with_official_vectors():
    """BLAKE3's own test_vectors.json, input length 1: the modes FORMAT.md relies on are standard."""
    data = bytes([0])
    assert blake3.blake3(data, key=b"whats the Elvish word for friend").digest().hex() == \
        "6d7878dfff2f485635d39013278ae14f1454b8c0a3a2d34bc1ab38228a80c95b"
    assert blake3.blake3(data, derive_key_context="BLAKE3 2019-12-27 16:29:52 test vectors context").digest().hex() == \
        "b3e2e340a117a499c6cf2398a19ee0d29cca2bb7404c73063382693bf66cb06c"


def test_chunk_id():
    from agent.crypto import ids

    v = vectors()["chunk-id"]
    assert v["chunk_id_key"] == vectors()["subkeys"]["chunk_id_key"]
    assert ids.chunk_id(v["chunk_id_key"], v["data"]) == v["chunk_id"]
    assert v["data"] == "Bonjour, cabinet médical.\n".encode("utf-8")


def test_argon2id_with_the_agent():
    from agent.crypto.kdf import KdfParams, derive_key

    v = vectors()["argon2id"]
    assert (v["memory_kib"], v["iterations"], v["parallelism"]) == (65536, 3, 1)
    params = KdfParams(v["memory_kib"], v["iterations"], v["parallelism"])
    assert params == KdfParams()  # the vector uses the defaults
    assert derive_key(v["passphrase"].encode("utf-8"), v["salt"], params) == v["output"]


def test_argon2id_with_the_reference_implementation():
    # argon2-cffi wraps the reference C implementation of Argon2 (phc-winner-argon2),
    # independent of libsodium's, which the agent uses.
    from argon2.low_level import Type, hash_secret_raw

    v = vectors()["argon2id"]
    out = hash_secret_raw(v["passphrase"].encode("utf-8"), v["salt"], time_cost=v["iterations"],
                          memory_cost=v["memory_kib"], parallelism=v["parallelism"], hash_len=32,
                          type=Type.ID, version=19)
    assert out == v["output"]


def test_associated_data():
    from agent.crypto.keys import MasterKey, _wrap_aad
    from agent.repo import layout
    from agent.repo.chunker import ChunkerParams
    from agent.repo.repository import Repository, StoredConfig
    from agent.storage.memory import MemoryStorage

    v = vectors()["associated-data"]
    assert v["chunk_id"] == vectors()["chunk-id"]["chunk_id"]
    config = StoredConfig(v["repository_id"], "xchacha20-poly1305", 3, ChunkerParams(), "")
    repo = Repository(MemoryStorage(), MasterKey(bytes(32)), config)
    header = b"\x01\x01"
    assert v["full_aad_config"] == header + repo._aad(layout.KIND_CONFIG, b"")
    assert v["full_aad_index"] == header + repo._aad(layout.KIND_INDEX, v["index_id"])
    assert v["full_aad_snapshot"] == header + repo._aad(layout.KIND_SNAPSHOT, v["snapshot_id"])
    assert v["full_aad_data_blob"] == header + repo._aad(layout.KIND_DATA_BLOB, v["chunk_id"])
    assert v["full_aad_tree_blob"] == header + repo._aad(layout.KIND_TREE_BLOB, v["chunk_id"])
    assert v["full_aad_pack_header"] == header + repo._aad(layout.KIND_PACK_HEADER, b"")
    assert v["full_aad_key_file"] == header + _wrap_aad(v["repository_id"], v["key_id"])
    assert v["full_aad_snapshot"] == header + b"backupctl\x00" + v["repository_id"] + b"\x03" + v["snapshot_id"]


def test_gear_table_vector():
    from agent.crypto import ids
    from agent.repo.chunker import Chunker, ChunkerParams

    v = vectors()["gear-table"]
    assert v["master"] == vectors()["subkeys"]["master"]
    # Independently: BLAKE3 derive_key in XOF mode, 2048 bytes, as section 3.3 says.
    stream = blake3.blake3(v["master"], derive_key_context="backupctl 2026-12 gear table").digest(length=2048)
    assert stream == v["gear_table"]
    table = struct.unpack("<256Q", v["gear_table"])
    assert table[0] == int.from_bytes(v["gear_0"], "big") and table[255] == int.from_bytes(v["gear_255"], "big")
    # With the agent's code: the same table, and the same cut points.
    assert ids.gear_table(v["master"]) == table
    data = blake3.blake3(v["input_label"].encode("ascii")).digest(length=v["input_size"])
    assert hashlib.sha256(data).digest() == v["input_sha256"]
    lengths = [len(c) for c in Chunker(ChunkerParams(), gear=table).chunks(io.BytesIO(data))]
    assert lengths == [int(n) for n in v["chunk_lengths"].split()]


def test_padding_vector():
    from agent.repo.pack import padded_length, padme

    v = vectors()["padding"]
    lengths = [int(n) for n in v["lengths"].split()]
    assert [SpecReader.padme(n) for n in lengths] == [padme(n) for n in lengths] == \
        [int(n) for n in v["padme"].split()]
    assert [SpecReader.padme(max(n, 512)) for n in lengths] == [padded_length(n) for n in lengths] == \
        [int(n) for n in v["padded"].split()]


def test_version_4_pack_vector_is_what_the_agent_writes(monkeypatch):
    """The agent, given 15.11's nonces, writes exactly 15.11's pack, part by part."""
    from agent.crypto.keys import MasterKey
    from agent.repo.chunker import ChunkerParams
    from agent.repo.repository import Repository, StoredConfig
    from agent.storage.memory import MemoryStorage

    v = vectors()["pack-v4"]
    labels = ["v4 blob 1", "v4 blob 2", "v4 pack header", "v4 pack trailer"]
    nonces = [hashlib.sha256(b"backupctl test vector nonce " + label.encode()).digest()[:24] for label in labels]
    master = MasterKey(vectors()["subkeys"]["master"])
    assert master.encryption_key == v["encryption_key"]
    repo = Repository(MemoryStorage(), master, StoredConfig(v["repository_id"], "xchacha20-poly1305", 3,
                                                            ChunkerParams(), "", format_version=4))
    # Then the index file's nonce, which the vector does not cover.
    monkeypatch.setattr(os, "urandom", lambda n: nonces.pop(0) if n == 24 and nonces else bytes(n))
    assert repo.store_blob(0, v["blob_1_data"])[0] == v["blob_1_chunk_id"]
    assert repo.store_blob(0, v["blob_2_data"])[0] == v["blob_2_chunk_id"]
    repo.flush()
    name = "data/" + v["pack_id"].hex()[:2] + "/" + v["pack_id"].hex()
    assert repo.storage.read(name) == v["pack"] == (v["blob_1_body"] + v["blob_2_body"] + v["header_body"]
                                                   + v["trailer_body"])
    assert hashlib.sha256(v["pack"]).digest() == v["pack_id"]


def test_version_4_pack_vector_with_the_spec_reader():
    """15.11 opened with section 7.2 alone: trailer, header, entries, then each blob."""
    v = vectors()["pack-v4"]
    reader = SpecReader.__new__(SpecReader)  # only the primitives: no repository around it
    reader.enc_key, reader.repo_id, reader.cipher_id = v["encryption_key"], v["repository_id"], 1
    pack = v["pack"]
    trailer = reader.open_body(pack[-44:], reader.binding(12, b""))
    assert trailer == v["trailer_plain"]
    (header_length,) = struct.unpack("<I", trailer)
    header = pack[len(pack) - 44 - header_length : -44]
    assert header == v["header_body"]
    padded_header = reader.open_body(header, reader.binding(11, b""))
    assert padded_header == v["header_padded"]
    entries = reader._entries(reader.payload(reader.unpad(padded_header)))
    assert reader.payload(reader.unpad(padded_header)) == v["header_entries"]
    assert len(entries) == 2
    for number, (kind, chunk_id, offset, length, raw_length) in enumerate(entries, start=1):
        assert kind == 0 and chunk_id == v[f"blob_{number}_chunk_id"]
        body = pack[offset : offset + length]
        assert body == v[f"blob_{number}_body"] and body[:2] != b"\x01\x01"
        plain = reader.open_body(body, reader.binding(9, chunk_id))
        assert plain == v[f"blob_{number}_padded"]
        assert reader.payload(reader.unpad(plain), raw_length) == v[f"blob_{number}_data"]
        with pytest.raises(NOT_AUTHENTIC):  # bound to its kind: not a tree blob, not a version-3 blob
            reader.open_body(body, reader.binding(10, chunk_id))
        with pytest.raises(NOT_AUTHENTIC):
            reader.open_body(body, reader.binding(4, chunk_id))


def test_version_5_pack_vector_is_what_the_agent_writes(monkeypatch):
    """The agent of a version-5 repository, given 15.11's nonces and 15.11.1's, writes 15.11's
    blobs and header with 15.11.1's trailer, and reads its blob list back."""
    from agent.crypto.keys import MasterKey
    from agent.repo.chunker import ChunkerParams
    from agent.repo.repository import Repository, StoredConfig
    from agent.storage.memory import MemoryStorage

    v4, v = vectors()["pack-v4"], vectors()["pack-v5"]
    labels = ["v4 blob 1", "v4 blob 2", "v4 pack header", "v5 pack trailer"]
    nonces = [hashlib.sha256(b"backupctl test vector nonce " + label.encode()).digest()[:24] for label in labels]
    master = MasterKey(vectors()["subkeys"]["master"])
    assert master.encryption_key == v["encryption_key"] and v["repository_id"] == v4["repository_id"]
    repo = Repository(MemoryStorage(), master, StoredConfig(v["repository_id"], "xchacha20-poly1305", 3,
                                                            ChunkerParams(), "", format_version=5))
    monkeypatch.setattr(os, "urandom", lambda n: nonces.pop(0) if n == 24 and nonces else bytes(n))
    repo.store_blob(0, v4["blob_1_data"])
    repo.store_blob(0, v4["blob_2_data"])
    repo.flush()
    name = "data/" + v["pack_id"].hex()[:2] + "/" + v["pack_id"].hex()
    pack = repo.storage.read(name)
    assert pack == v4["pack"][:-44] + v["trailer_body"]
    assert hashlib.sha256(pack).digest() == v["pack_id"]
    assert [e.chunk_id for e in repo.pack_header_entries(pack, name)] == [v4["blob_1_chunk_id"],
                                                                           v4["blob_2_chunk_id"]]


def test_version_5_pack_vector_with_the_spec_reader():
    """15.11.1 opened with section 7.3 alone: the last 48 bytes say version 5 and the header's
    length; the last 44 do not open (it is not a version-4 trailer)."""
    v4, v = vectors()["pack-v4"], vectors()["pack-v5"]
    reader = SpecReader.__new__(SpecReader)
    reader.enc_key, reader.repo_id, reader.cipher_id = v["encryption_key"], v["repository_id"], 1
    pack = v4["pack"][:-44] + v["trailer_body"]
    assert len(v["trailer_body"]) == 48
    trailer = reader.open_body(pack[-48:], reader.binding(12, b""))
    assert trailer == v["trailer_plain"]
    version, header_length = struct.unpack("<II", trailer)
    assert version == 5 and header_length == len(v4["header_body"])
    assert pack[len(pack) - 48 - header_length : -48] == v4["header_body"]
    with pytest.raises(NOT_AUTHENTIC):
        reader.open_body(pack[-44:], reader.binding(12, b""))
    reader.format_version, reader.versioned, reader.padded = 5, True, True
    reader.objects = {"data/" + v["pack_id"].hex()[:2] + "/" + v["pack_id"].hex(): pack}
    [name] = reader.objects
    assert [entry[1] for entry in reader.pack_header(name)] == [v4["blob_1_chunk_id"], v4["blob_2_chunk_id"]]


# ---- the example repository ------------------------------------------------------------------


def _passphrase() -> bytes:
    return vectors()["argon2id"]["passphrase"].encode("utf-8")


def _check_restored(target: Path) -> None:
    entries = expected_restore()
    root = bytes(target)
    seen = set()
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            seen.add(os.path.relpath(os.path.join(directory, name), root))
    assert seen == {_expected_path(e) for e in entries}
    inodes: dict[bytes, int] = {}
    for entry in entries:
        path = os.path.join(root, _expected_path(entry))
        st = os.lstat(path)
        if entry["type"] == "dir":
            assert stat.S_ISDIR(st.st_mode)
        elif entry["type"] == "symlink":
            assert stat.S_ISLNK(st.st_mode)
            assert os.readlink(path) == entry["target"].encode("utf-8")
            continue
        else:
            assert stat.S_ISREG(st.st_mode)
            content = Path(os.fsdecode(path)).read_bytes()
            assert len(content) == entry["size"] == st.st_size
            assert hashlib.sha256(content).hexdigest() == entry["sha256"]
            inodes[_expected_path(entry)] = st.st_ino
            if "same_file_as" in entry:
                assert st.st_ino == inodes[entry["same_file_as"].encode("utf-8")]
        assert stat.S_IMODE(st.st_mode) == int(entry["mode"], 8), entry
        assert st.st_mtime_ns == EXAMPLE_MTIME_NS, entry


def _memory_storage(objects: dict[str, bytes]):
    from agent.storage.memory import MemoryStorage

    storage = MemoryStorage()
    for name, data in objects.items():
        storage.write(name, data)
    return storage


def test_example_repository_with_the_agent(tmp_path):
    from agent.engine.check import CheckEngine
    from agent.engine.restore import RestoreEngine
    from agent.repo.repository import Repository

    repo = Repository.open(_memory_storage(example_objects()), _passphrase())
    assert repo.master.secret == vectors()["subkeys"]["master"]
    assert repo.config.repository_id == vectors()["associated-data"]["repository_id"]
    from tests.support.locked import run_locked

    report = run_locked(CheckEngine(repo, read_data=True))
    assert report.ok and not report.warnings, report.as_dict()
    assert report.blobs_verified == 6
    (snapshot,) = repo.snapshots()
    assert snapshot.id == vectors()["associated-data"]["snapshot_id"]
    assert snapshot.paths == ["/srv/cabinet"]
    restored = RestoreEngine(repo, snapshot, str(tmp_path / "out")).run()
    assert not restored.failures
    assert restored.verified == 5
    _check_restored(tmp_path / "out")


def test_example_repository_with_the_spec_reader(tmp_path):
    objects = example_objects()
    reader = SpecReader(objects, _passphrase())
    assert reader.master == vectors()["subkeys"]["master"]
    # Section 7: the index can be rebuilt from the pack headers alone.
    rebuilt = {}
    for name in reader.names("data/"):
        for kind, chunk_id, offset, length, raw_length in reader.pack_header(name):
            rebuilt[chunk_id] = (bytes.fromhex(name.rsplit("/", 1)[-1]), kind, offset, length, raw_length)
    assert rebuilt == reader.index
    # Section 5: the example exercises both compression bytes.
    first_bytes = set()
    for chunk_id, (pack_id, kind, offset, length, _raw) in reader.index.items():
        envelope = objects[reader.pack_name(pack_id)][offset : offset + length]
        plain = reader.open_envelope(reader.enc_key, envelope, reader.binding(5 if kind else 4, chunk_id))
        first_bytes.add(plain[0])
    assert first_bytes == {0, 1}
    (snapshot,) = reader.snapshots()
    out = tmp_path / "out"
    out.mkdir()
    reader.restore(snapshot, bytes(out))
    _check_restored(out)


def test_example_repository_rejects_a_wrong_passphrase():
    from agent.errors import WrongPassphrase
    from agent.repo.repository import Repository

    with pytest.raises(WrongPassphrase):
        Repository.open(_memory_storage(example_objects()), b"not the passphrase")


# ---- the spec reader on repositories made by backupctl --------------------------------------


def _make_source(root: Path) -> None:
    root.mkdir()
    (root / "lettre.txt").write_bytes("Rendez-vous confirmé.\n".encode("utf-8"))
    os.link(root / "lettre.txt", root / "lettre-lien.txt")
    (root / "vide.txt").write_bytes(b"")
    (root / "notes.txt").write_bytes(b"compte rendu de consultation\n" * 5000)
    (root / "scan.bin").write_bytes(hashlib.shake_256(b"scan").digest(3 * 1024 * 1024 + 17))
    with open(root / "disque.img", "wb") as handle:
        handle.truncate(2 * 1024 * 1024)
        handle.seek(1024 * 1024)
        handle.write(b"data in the middle of holes")
    sub = root / "dossiers" / "2026"
    sub.mkdir(parents=True)
    (sub / "patient.txt").write_bytes(b"x" * 100)
    os.chmod(sub / "patient.txt", 0o600)
    with open(os.path.join(bytes(root), b"caf\xe9.txt"), "wb") as handle:
        handle.write(b"latin-1 name\n")
    os.symlink("lettre.txt", root / "dernier")
    os.symlink(b"\xff-not-utf8", os.path.join(bytes(root), b"lien-binaire"))
    os.utime(root / "notes.txt", ns=(1_700_000_000_123_456_789, 1_700_000_000_123_456_789))


def _compare_trees(source: bytes, restored: bytes) -> None:
    for directory, dirs, files in os.walk(source):
        for name in dirs + files:
            src = os.path.join(directory, name)
            dst = os.path.join(restored, os.path.relpath(src, source))
            a, b = os.lstat(src), os.lstat(dst)
            assert stat.S_IFMT(a.st_mode) == stat.S_IFMT(b.st_mode), src
            if stat.S_ISLNK(a.st_mode):
                assert os.readlink(src) == os.readlink(dst)
                continue
            assert stat.S_IMODE(a.st_mode) == stat.S_IMODE(b.st_mode), src
            if stat.S_ISREG(a.st_mode):
                assert a.st_mtime_ns == b.st_mtime_ns, src
                with open(src, "rb") as x, open(dst, "rb") as y:
                    assert x.read() == y.read(), src
    assert os.stat(os.path.join(restored, b"lettre.txt")).st_ino == \
        os.stat(os.path.join(restored, b"lettre-lien.txt")).st_ino


@pytest.mark.parametrize("cipher, level, version", [("xchacha20-poly1305", 3, 5), ("aes-256-gcm", None, 5),
                                                    ("xchacha20-poly1305", 3, 4)])
def test_spec_reader_restores_a_backupctl_repository(tmp_path, cipher, level, version):
    from agent.crypto.kdf import KdfParams
    from agent.engine.backup import BackupEngine, BackupOptions
    from agent.repo.repository import Repository
    from agent.storage.memory import MemoryStorage
    from tests.support.locked import run_locked

    source = tmp_path / "source"
    _make_source(source)
    storage = MemoryStorage()
    repo = Repository.init(storage, b"phrase de passe", cipher=cipher, compression_level=level,
                           kdf_params=KdfParams(memory_kib=8192, iterations=1), format_version=version)
    report = run_locked(BackupEngine(repo, BackupOptions(paths=[str(source)])))
    assert not report.warnings

    reader = SpecReader(dict(storage.objects), b"phrase de passe")
    assert reader.config["cipher"] == cipher and reader.format_version == version
    (snapshot,) = reader.snapshots()
    assert snapshot["paths"] == [str(source)]
    out = tmp_path / "out"
    out.mkdir()
    reader.restore(snapshot, bytes(out))
    _compare_trees(bytes(source), os.path.join(bytes(out), bytes(source).lstrip(b"/")))
    # Versions 4 and 5 (section 7.2): the packs carry no clear byte; every blob opens only
    # with the repository's cipher as its implied second byte, and the index rebuilt from
    # the packs' headers (and, version 5, trailers that say 5: section 7.3) is the one the
    # index files give.
    rebuilt = {}
    for name in reader.names("data/"):
        for kind, cid, offset, length, raw in reader.pack_header(name):
            rebuilt[cid] = (bytes.fromhex(name.rsplit("/", 1)[-1]), kind, offset, length, raw)
            body = storage.objects[name][offset : offset + length]
            other = bytes((1, 3 - reader.cipher_id)) + body
            with pytest.raises(NOT_AUTHENTIC):
                reader.open_envelope(reader.enc_key, other, reader.binding(10 if kind else 9, cid))
    assert rebuilt == reader.index


def test_spec_reader_reads_a_stored_report_and_the_binding_protects_it(tmp_path):
    """Section 12.4: a report is an envelope of kind 8 bound to its id; the reader written
    from the document opens it, and only under its own id and kind."""
    from agent.crypto.kdf import KdfParams
    from agent.repo.repository import Repository
    from agent.reports.document import SCHEMA, encode_stored
    from agent.storage.memory import MemoryStorage

    storage = MemoryStorage()
    repo = Repository.init(storage, b"phrase de passe", cipher="xchacha20-poly1305", compression_level=3,
                           kdf_params=KdfParams(memory_kib=8192, iterations=1))
    report_id = bytes(range(16))
    document = {"schema": SCHEMA, "report_id": report_id.hex(), "restore_test": {"ok": True, "files": 3}}
    repo.save_report(report_id, encode_stored(document, "<!DOCTYPE html><p>rapport</p>"))
    reader = SpecReader(dict(storage.objects), b"phrase de passe")
    (name,) = reader.names("reports/")
    assert name == "reports/" + report_id.hex()
    stored = json.loads(reader.payload(reader.open_envelope(reader.enc_key, storage.objects[name],
                                                            reader.binding(8, report_id))))
    assert stored == {"document": document, "html": "<!DOCTYPE html><p>rapport</p>"}
    for kind, object_id in ((8, bytes(16)), (3, report_id)):
        with pytest.raises(NOT_AUTHENTIC):
            reader.open_envelope(reader.enc_key, storage.objects[name], reader.binding(kind, object_id))


def test_spec_reader_restores_a_pruned_repository(tmp_path):
    """After prune (snapshots forgotten, packs rewritten, index files superseded) and
    with a lock object present, the reader written from the document still restores."""
    import datetime as dt

    from agent import clock
    from agent.crypto.kdf import KdfParams
    from agent.engine.backup import BackupEngine, BackupOptions
    from agent.engine.prune import PruneEngine
    from agent.engine.retention import RetentionPolicy
    from agent.repo.lock import RepositoryLock
    from agent.repo.repository import Repository
    from agent.storage.memory import MemoryStorage
    from tests.support.locked import run_locked

    source = tmp_path / "source"
    _make_source(source)
    storage = MemoryStorage()
    repo = Repository.init(storage, b"phrase de passe", cipher="xchacha20-poly1305", compression_level=3,
                           kdf_params=KdfParams(memory_kib=8192, iterations=1))
    now = dt.datetime(2026, 11, 23, 9, tzinfo=dt.timezone.utc)
    clock.freeze(now)
    try:
        for weeks_ago in (10, 9, 8, 1):  # three in September, one in November
            (source / f"semaine-{weeks_ago}.bin").write_bytes(os.urandom(300_000))
            for older in (source / f"semaine-{w}.bin" for w in range(weeks_ago + 1, 12)):
                if older.exists():
                    older.unlink()
            run_locked(BackupEngine(repo, BackupOptions(paths=[str(source)],
                                                        time=now - dt.timedelta(weeks=weeks_ago))))
        report = run_locked(PruneEngine(Repository.open(storage, b"phrase de passe"),
                                        RetentionPolicy(weekly=4, monthly=12, yearly=1)), exclusive=True)
        assert report.snapshots_forgotten == 2 and report.packs_deleted + report.packs_rewritten > 0
        RepositoryLock(repo, "backup")._write()  # a lock object lying in the repository
    finally:
        clock.freeze(None)
    reader = SpecReader(dict(storage.objects), b"phrase de passe")
    assert reader.config["format_version"] == 5
    newest = reader.latest()
    out = tmp_path / "out"
    out.mkdir()
    reader.restore(newest, bytes(out))
    _compare_trees(bytes(source), os.path.join(bytes(out), bytes(source).lstrip(b"/")))


def test_example_version_1_repository_is_backed_up_into_as_it_is(tmp_path):
    """A version-1 repository stays version 1 under a version-5 program: its config is not
    rewritten, its new packs have the layout of section 7.1 and the seeded chunker, and
    both the old and the new snapshot restore, with the agent and with the spec reader."""
    from agent.engine.backup import BackupEngine, BackupOptions
    from agent.engine.check import CheckEngine
    from agent.engine.restore import RestoreEngine
    from agent.repo.repository import Repository
    from tests.support.locked import run_locked

    storage = _memory_storage(example_objects())
    config_before = storage.read("config")
    packs_before = {info.name for info in storage.list("data/")}
    source = tmp_path / "source"
    _make_source(source)
    repo = Repository.open(storage, _passphrase())
    assert repo.config.format_version == 1 and not repo.padded
    run_locked(BackupEngine(repo, BackupOptions(paths=[str(source)])))
    assert storage.read("config") == config_before
    new_packs = {info.name for info in storage.list("data/")} - packs_before
    assert new_packs
    reader = SpecReader(dict(storage.objects), _passphrase())
    for name in new_packs:
        data = storage.read(name)
        entries = reader.pack_header(name)  # the clear u32 header length of section 7.1
        assert all(data[offset : offset + 2] == b"\x01\x01" for _k, _c, offset, _l, _r in entries)
    # scan.bin (3 MiB + 17, incompressible) was cut by the seeded chunker of versions 1-3.
    chunker = Repository.open(storage, _passphrase()).new_chunker()
    scan = (source / "scan.bin").read_bytes()
    from agent.repo.chunker import Chunker

    assert [len(c) for c in chunker.chunks(io.BytesIO(scan))] == \
        [len(c) for c in Chunker(repo.config.chunker, repo.master.chunker_seed).chunks(io.BytesIO(scan))]
    fresh = Repository.open(storage, _passphrase())
    assert run_locked(CheckEngine(fresh, read_data=True)).ok
    old, new = sorted(fresh.snapshots(), key=lambda snap: snap.time)
    assert not RestoreEngine(fresh, old, str(tmp_path / "old")).run().failures
    _check_restored(tmp_path / "old")
    (tmp_path / "new").mkdir()
    newest = reader.latest()
    reader.restore(newest, bytes(tmp_path / "new"))
    _compare_trees(bytes(source), os.path.join(bytes(tmp_path / "new"), bytes(source).lstrip(b"/")))


# ---- constants stated in the prose ------------------------------------------------------------


def test_prose_constants_match_the_code():
    from agent.crypto import aead, ids, kdf, keys
    from agent.repo import chunker, compression, index, layout, pack, repository, snapshot

    doc = _doc()
    assert repository.FORMAT_VERSION == 5 and doc.startswith("# backupctl repository format, version 5\n")
    for context in (ids.CONTEXT_ENCRYPTION, ids.CONTEXT_CHUNK_ID, ids.CONTEXT_CHUNKER_SEED,
                    ids.CONTEXT_AES_OBJECT_KEY, ids.CONTEXT_GEAR_TABLE):
        assert f"`{context}`" in doc
    assert repository.AAD_PREFIX == bytes.fromhex("62 61 63 6b 75 70 63 74 6c 00")
    assert "`62 61 63 6b 75 70 63 74 6c 00`" in doc
    assert keys._WRAP_AAD_PREFIX == b"backupctl key v1\x00" and 'b"backupctl key v1\\x00"' in doc
    kinds = dict(re.findall(r"^\| (\d) \| (config|index file|snapshot|data blob|tree blob|pack header|lock|report) \|",
                            doc, re.M))
    assert kinds == {str(layout.KIND_CONFIG): "config", str(layout.KIND_INDEX): "index file",
                     str(layout.KIND_SNAPSHOT): "snapshot", str(layout.KIND_DATA_BLOB): "data blob",
                     str(layout.KIND_TREE_BLOB): "tree blob", str(layout.KIND_PACK_HEADER): "pack header",
                     str(layout.KIND_LOCK): "lock", str(layout.KIND_REPORT): "report"}
    kinds_v4 = dict(re.findall(r"^\| (\d+) \| (data blob|tree blob|pack header|pack trailer|index file)"
                               r"(?:, padded)? \(versions 4 and 5\) \|", doc, re.M))
    assert kinds_v4 == {str(layout.KIND_DATA_BLOB_V4): "data blob", str(layout.KIND_TREE_BLOB_V4): "tree blob",
                        str(layout.KIND_PACK_HEADER_V4): "pack header",
                        str(layout.KIND_PACK_TRAILER_V4): "pack trailer", str(layout.KIND_INDEX_V4): "index file"}
    assert pack.TRAILER_SIZE == 44 and pack.TRAILER_PLAIN.format == "<I" and "the last 44 bytes" in doc
    assert pack.PAD_MINIMUM == 512 and "padded_length(L) = padme(max(L, 512))" in doc
    assert repository.PADDED_FORMAT == 4 and repository.VERSIONED_FORMAT == 5
    assert pack.TRAILER_SIZE_V5 == 48 and pack.TRAILER_PLAIN_V5.format == "<II" and "the last 48 bytes" in doc
    assert aead.CIPHER_IDS == {"xchacha20-poly1305": 1, "aes-256-gcm": 2}
    assert (aead.ENVELOPE_VERSION, aead.NONCE_SIZE, aead.TAG_SIZE, aead.OVERHEAD) == (1, 24, 16, 42)
    assert keys.KEY_WRAP_CIPHER == "xchacha20-poly1305" and keys.MASTER_SIZE == 32
    assert "the envelope is 74 bytes" in " ".join(doc.split())
    assert (kdf.DEFAULT_MEMORY_KIB, kdf.DEFAULT_ITERATIONS, kdf.SALT_SIZE, kdf.KEY_SIZE) == (65536, 3, 16, 32)
    assert (kdf.MIN_MEMORY_KIB, kdf.MAX_MEMORY_KIB, kdf.MAX_ITERATIONS) == (8192, 65536, 3)
    assert "`8192 ≤ memory_kib ≤ 65536`" in doc and "`1 ≤ iterations ≤ 3`" in doc
    assert f"at most {keys.MAX_KEY_FILES_TRIED} key files" in doc
    assert (compression.NONE, compression.ZSTD, compression.DEFAULT_LEVEL) == (0, 1, 3)
    assert compression.MAX_METADATA_SIZE == 1 << 30 and "1 GiB" in doc
    assert pack.ENTRY.format == "<B32sIII" and pack.ENTRY.size == 45 and "`<B32sIII`" in doc
    assert (pack.BLOB_DATA, pack.BLOB_TREE) == (0, 1)
    assert pack.TRAILER.format == "<I"
    assert pack.TARGET_PACK_SIZE == pack.MAX_HEADER_SIZE == 16777216
    assert "`16777216`" in doc and "above 16 MiB (16777216)" in doc
    assert index.INDEX_VERSION == 1 and snapshot.SNAPSHOT_VERSION == 1 and keys.KEY_FILE_VERSION == 1
    assert "u8   version                                  1 in versions 1 to 4; 5 in version 5" in doc
    assert "    {\"version\":5,\"nodes\":[node, node, ...]}" in doc
    assert repository.PACKS_PER_INDEX == 8 and "After every **8** packs" in doc
    assert (chunker.MIN_SIZE, chunker.AVG_SIZE, chunker.MAX_SIZE) == (262144, 1048576, 8388608)
    assert chunker.ALGORITHM == "fastcdc-2020-nc1" and f'`"{chunker.ALGORITHM}"`' in doc
    for size in ("`262144`", "`1048576`", "`8388608`"):
        assert size in doc
    for prefix in (layout.KEYS_PREFIX, layout.DATA_PREFIX, layout.INDEX_PREFIX, layout.SNAPSHOTS_PREFIX,
                   layout.LOCKS_PREFIX, layout.REPORTS_PREFIX):
        assert f"`{prefix}" in doc
    assert layout.pack_name(bytes(range(32))) == "data/00/" + bytes(range(32)).hex()


def test_generated_section_matches_the_script_where_it_is_deterministic():
    """Everything up to the example repository (no zstd output involved) is reproduced exactly."""
    import importlib.util

    script = DOC_PATH.parents[1] / "scripts" / "format_vectors.py"
    spec = importlib.util.spec_from_file_location("format_vectors", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    generated = "\n".join(module.vectors_primitives())
    assert generated in _generated()
    assert "\n".join(module.vectors_version4()) in _generated()

"""Print the test vectors of docs/FORMAT.md (section 15) as Markdown.

Every value is computed from fixed inputs with the project's own format code
(`agent.crypto`, `agent.repo`); only the envelope sealing is written out here, because
`aead.seal` draws a random nonce and a test vector needs a fixed one. The sealing below
follows FORMAT.md section 4 step by step, and tests/unit/test_format_vectors.py checks
the printed vectors against the agent's reader, libsodium, the Argon2 reference library
and an independent reader written from FORMAT.md alone.

    .venv/bin/python scripts/format_vectors.py                 # print the Markdown
    .venv/bin/python scripts/format_vectors.py --update docs/FORMAT.md
                                                             # replace the generated part

Run it again only when the format changes (a new format version): the example
repository's compressed objects depend on the zstd library version, so a rerun with
another zstandard release may print different (equally valid) pack bytes.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import blake3  # noqa: E402
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305  # noqa: E402

from agent.crypto import aead, ids  # noqa: E402
from agent.crypto.kdf import KdfParams, derive_key  # noqa: E402
from agent.crypto.keys import KEY_FILE_VERSION, MasterKey  # noqa: E402
from agent.repo import compression, layout  # noqa: E402
from agent.repo.chunker import Chunker, ChunkerParams  # noqa: E402
from agent.repo.index import encode_index  # noqa: E402
from agent.repo.pack import (  # noqa: E402
    BLOB_DATA,
    BLOB_TREE,
    TRAILER,
    TRAILER_PLAIN,
    TRAILER_PLAIN_V5,
    PackEntry,
    encode_header_entries,
    pad,
    padded_length,
    padme,
)
from agent.repo.repository import AAD_PREFIX, StoredConfig  # noqa: E402
from agent.repo.snapshot import Snapshot  # noqa: E402
from agent.repo.tree import DIR, FILE, SYMLINK, Node, encode_tree  # noqa: E402

BEGIN_MARK = "<!-- BEGIN GENERATED TEST VECTORS (scripts/format_vectors.py) -->"
END_MARK = "<!-- END GENERATED TEST VECTORS -->"

# ---- fixed inputs -------------------------------------------------------------------

# draft-irtf-cfrg-xchacha-03 section 2.2.1 (HChaCha20) and appendix A.3.1 (AEAD).
HCHACHA_KEY = bytes(range(0x00, 0x20))
HCHACHA_NONCE = bytes.fromhex("000000090000004a0000000031415927")
AEAD_KEY = bytes(range(0x80, 0xA0))
AEAD_NONCE = bytes(range(0x40, 0x58))
AEAD_AAD = bytes.fromhex("50515253c0c1c2c3c4c5c6c7")
AEAD_PLAINTEXT = (
    b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for "
    b"the future, sunscreen would be it."
)

MASTER = bytes(range(0x00, 0x20))
CHUNK_TEXT = "Bonjour, cabinet médical.\n".encode("utf-8")
PASSPHRASE = b"correct horse battery staple"
SALT = bytes(range(0x00, 0x10))

REPOSITORY_ID = bytes(range(0xA0, 0xB0))
INDEX_ID = bytes(range(0xB0, 0xC0))
SNAPSHOT_ID = bytes(range(0xC0, 0xD0))
KEY_ID = bytes(range(0xD0, 0xE0))
XCHACHA = "xchacha20-poly1305"
AES = "aes-256-gcm"

TZ = dt.timezone(dt.timedelta(hours=1))


def fixed_nonce(label: str) -> bytes:
    """The example repository's nonces: SHA-256("backupctl test vector nonce " + label)[0:24]."""
    return hashlib.sha256(b"backupctl test vector nonce " + label.encode("ascii")).digest()[:24]


# ---- the sealing of FORMAT.md section 4, with a caller-chosen nonce -------------------


def seal(key: bytes, plaintext: bytes, aad: bytes, *, cipher: str, nonce: bytes) -> bytes:
    header = bytes((aead.ENVELOPE_VERSION, aead.CIPHER_IDS[cipher])) + nonce
    full_aad = header[:2] + aad
    if cipher == XCHACHA:
        subkey = aead.hchacha20(key, nonce[:16])
        body = ChaCha20Poly1305(subkey).encrypt(b"\x00\x00\x00\x00" + nonce[16:], plaintext, full_aad)
    else:
        object_key = blake3.blake3(key + nonce, derive_key_context=ids.CONTEXT_AES_OBJECT_KEY).digest()
        body = AESGCM(object_key).encrypt(nonce[:12], plaintext, full_aad)
    return header + body


def object_aad(kind: int, object_id: bytes, repository_id: bytes = REPOSITORY_ID) -> bytes:
    return AAD_PREFIX + repository_id + bytes((kind,)) + object_id


def key_file_aad(repository_id: bytes, key_id: bytes) -> bytes:
    return b"backupctl key v1\x00" + repository_id + key_id


# ---- Markdown output --------------------------------------------------------------------

WIDTH = 64  # hex digits per line


def _hex_lines(data: bytes) -> list[str]:
    text = data.hex()
    return [text[i : i + WIDTH] for i in range(0, len(text), WIDTH)] or [""]


def block(kind: str, name: str, fields: list[tuple[str, object]]) -> str:
    """A fenced block: `field value` lines; hex continues on indented lines."""
    pad = max(len(k) for k, _ in fields) + 2
    lines = [f"```{kind} {name}"]
    for key, value in fields:
        if isinstance(value, bytes):
            parts = _hex_lines(value)
            lines.append(f"{key.ljust(pad)}{parts[0]}".rstrip())
            lines.extend(" " * pad + part for part in parts[1:])
        elif isinstance(value, bool):
            raise TypeError(key)
        elif isinstance(value, int):
            lines.append(f"{key.ljust(pad)}{value}")
        else:
            lines.append(f"{key.ljust(pad)}{json.dumps(value)}")
    lines.append("```")
    return "\n".join(lines)


def object_block(name: str, data: bytes) -> str:
    return "\n".join([f"```object {name}", *_hex_lines(data), "```"])


def text_block(kind: str, name: str, text: str) -> str:
    return "\n".join([f"```{kind} {name}", text, "```"])


# ---- the vectors ---------------------------------------------------------------------------


def vectors_primitives() -> list[str]:
    out = []
    out.append("### 15.1 HChaCha20\n\nInputs of draft-irtf-cfrg-xchacha-03 section 2.2.1; the output "
               "is the one printed there.\n")
    out.append(block("vector", "hchacha20", [
        ("key", HCHACHA_KEY),
        ("nonce16", HCHACHA_NONCE),
        ("output", aead.hchacha20(HCHACHA_KEY, HCHACHA_NONCE)),
    ]))

    subkey = aead.hchacha20(AEAD_KEY, AEAD_NONCE[:16])
    chacha_nonce = b"\x00\x00\x00\x00" + AEAD_NONCE[16:]
    bare = ChaCha20Poly1305(subkey).encrypt(chacha_nonce, AEAD_PLAINTEXT, AEAD_AAD)
    out.append("\n### 15.2 XChaCha20-Poly1305\n\nFirst the bare AEAD with the inputs of "
               "draft-irtf-cfrg-xchacha-03 appendix A.3.1 (`ciphertext_and_tag` is the draft's "
               "ciphertext followed by its tag). Then a backupctl envelope of the same plaintext "
               "under the same key and nonce: the envelope's two header bytes `01 01` are put in "
               "front of the caller's associated data, so the ciphertext is the same and the tag "
               "differs.\n")
    out.append(block("vector", "xchacha20-poly1305-aead", [
        ("key", AEAD_KEY),
        ("nonce24", AEAD_NONCE),
        ("aad", AEAD_AAD),
        ("plaintext", AEAD_PLAINTEXT),
        ("hchacha20_subkey", subkey),
        ("chacha_nonce12", chacha_nonce),
        ("ciphertext_and_tag", bare),
    ]))
    out.append("")
    out.append(block("vector", "envelope-xchacha20-poly1305", [
        ("key", AEAD_KEY),
        ("nonce24", AEAD_NONCE),
        ("aad", AEAD_AAD),
        ("plaintext", AEAD_PLAINTEXT),
        ("full_aad", bytes((1, 1)) + AEAD_AAD),
        ("envelope", seal(AEAD_KEY, AEAD_PLAINTEXT, AEAD_AAD, cipher=XCHACHA, nonce=AEAD_NONCE)),
    ]))

    object_key = blake3.blake3(AEAD_KEY + AEAD_NONCE, derive_key_context=ids.CONTEXT_AES_OBJECT_KEY).digest()
    out.append("\n### 15.3 AES-256-GCM\n\nThe same inputs in an envelope with cipher id 2. "
               "`object_key` is BLAKE3 derive_key(\"" + ids.CONTEXT_AES_OBJECT_KEY + "\", key || nonce24); "
               "the GCM nonce is nonce24[0:12].\n")
    out.append(block("vector", "envelope-aes-256-gcm", [
        ("key", AEAD_KEY),
        ("nonce24", AEAD_NONCE),
        ("aad", AEAD_AAD),
        ("plaintext", AEAD_PLAINTEXT),
        ("object_key", object_key),
        ("gcm_nonce12", AEAD_NONCE[:12]),
        ("full_aad", bytes((1, 2)) + AEAD_AAD),
        ("envelope", seal(AEAD_KEY, AEAD_PLAINTEXT, AEAD_AAD, cipher=AES, nonce=AEAD_NONCE)),
    ]))

    master = MasterKey(MASTER)
    seed_material = ids.derive_subkey(MASTER, ids.CONTEXT_CHUNKER_SEED)
    out.append("\n### 15.4 Subkeys\n\nBLAKE3 derive_key of the master secret with each context "
               "string of section 3.3. `chunker_seed` is the decimal value of "
               "`chunker_seed_material[0:8]` read little-endian, AND (2**63 - 1), OR 1.\n")
    out.append(block("vector", "subkeys", [
        ("master", MASTER),
        ("encryption_key", master.encryption_key),
        ("chunk_id_key", master.chunk_id_key),
        ("chunker_seed_material", seed_material),
        ("chunker_seed", master.chunker_seed),
    ]))

    out.append("\n### 15.5 Chunk id\n\nKeyed BLAKE3-256 of a chunk's plaintext (here the UTF-8 text "
               "\"Bonjour, cabinet médical.\" and a line feed) under the chunk id key of 15.4.\n")
    out.append(block("vector", "chunk-id", [
        ("chunk_id_key", master.chunk_id_key),
        ("data", CHUNK_TEXT),
        ("chunk_id", ids.chunk_id(master.chunk_id_key, CHUNK_TEXT)),
    ]))

    params = KdfParams()
    out.append("\n### 15.6 Argon2id\n\nArgon2id version 0x13 with the default parameters "
               "(`passphrase` is a JSON string; its UTF-8 bytes are the password).\n")
    out.append(block("vector", "argon2id", [
        ("passphrase", PASSPHRASE.decode("utf-8")),
        ("salt", SALT),
        ("memory_kib", params.memory_kib),
        ("iterations", params.iterations),
        ("parallelism", params.parallelism),
        ("output", derive_key(PASSPHRASE, SALT, params)),
    ]))

    chunk = ids.chunk_id(master.chunk_id_key, CHUNK_TEXT)
    out.append("\n### 15.7 Associated data\n\nThe complete associated data (`full_aad_*`: the envelope's "
               "version and cipher bytes `01 01`, then the object's binding) of each kind, for "
               "repository id `repository_id`. The data and tree blob examples use the chunk id of "
               "15.5; the key file example uses `key_id`.\n")
    out.append(block("vector", "associated-data", [
        ("repository_id", REPOSITORY_ID),
        ("index_id", INDEX_ID),
        ("snapshot_id", SNAPSHOT_ID),
        ("chunk_id", chunk),
        ("key_id", KEY_ID),
        ("full_aad_config", b"\x01\x01" + object_aad(layout.KIND_CONFIG, b"")),
        ("full_aad_index", b"\x01\x01" + object_aad(layout.KIND_INDEX, INDEX_ID)),
        ("full_aad_snapshot", b"\x01\x01" + object_aad(layout.KIND_SNAPSHOT, SNAPSHOT_ID)),
        ("full_aad_data_blob", b"\x01\x01" + object_aad(layout.KIND_DATA_BLOB, chunk)),
        ("full_aad_tree_blob", b"\x01\x01" + object_aad(layout.KIND_TREE_BLOB, chunk)),
        ("full_aad_pack_header", b"\x01\x01" + object_aad(layout.KIND_PACK_HEADER, b"")),
        ("full_aad_key_file", b"\x01\x01" + key_file_aad(REPOSITORY_ID, KEY_ID)),
    ]))
    return out


# ---- the example repository -----------------------------------------------------------------


def _ns(moment: dt.datetime) -> int:
    return int(moment.timestamp()) * 1_000_000_000


LETTER = "Bonjour,\nvotre rendez-vous est confirmé le 12 mars à 9 h.\n".encode("utf-8")
NOTES = b"".join(
    f"{day:02d}/01 consultation, compte rendu dicte, courrier envoye au confrere.\n".encode("ascii")
    for day in range(1, 9)
)
ZEROS = bytes(8192)


def example_repository() -> tuple[list[str], list[str]]:
    """(Markdown parts, object names) of a small complete repository."""
    master = MasterKey(MASTER)
    enc_key, id_key = master.encryption_key, master.chunk_id_key
    level = 3
    created = dt.datetime(2026, 1, 5, 1, 55, tzinfo=TZ).isoformat()
    snapshot_time = dt.datetime(2026, 1, 5, 2, 0, tzinfo=TZ)
    mtime = _ns(dt.datetime(2026, 1, 4, 18, 30, tzinfo=TZ))

    def chunk_id(data: bytes) -> bytes:
        return ids.chunk_id(id_key, data)

    # Data pack: three data blobs, in the order a backup stores them.
    data_entries: list[PackEntry] = []
    data_parts: list[bytes] = []
    offset = 0
    for label, content in (("letter", LETTER), ("notes", NOTES), ("zeros", ZEROS)):
        cid = chunk_id(content)
        envelope = seal(enc_key, compression.compress(content, level),
                        object_aad(layout.KIND_DATA_BLOB, cid), cipher=XCHACHA, nonce=fixed_nonce(label))
        data_entries.append(PackEntry(BLOB_DATA, cid, offset, len(envelope), len(content)))
        data_parts.append(envelope)
        offset += len(envelope)

    def file_node(name: bytes, content: bytes, **extra) -> Node:
        return Node(name=name, type=FILE, mode=0o640, uid=1000, gid=1000, mtime_ns=mtime,
                    user="secretariat", group="cabinet", size=len(content),
                    sha256=hashlib.sha256(content).hexdigest(),
                    chunks=[chunk_id(content)] if content else [], **extra)

    cabinet_nodes = [
        file_node("lettre.txt".encode(), LETTER, hardlink="2049:131074"),
        file_node("copie-lettre.txt".encode(), LETTER, hardlink="2049:131074"),
        file_node(b"caf\xe9.txt", b""),  # Latin-1 name, not UTF-8: stored as name_b64
        file_node("notes.txt".encode(), NOTES),
        file_node("image.raw".encode(), ZEROS, sparse=True),
        Node(name=b"dernier", type=SYMLINK, mode=0o777, uid=1000, gid=1000, mtime_ns=mtime,
             user="secretariat", group="cabinet", target=b"notes.txt"),
    ]
    cabinet_json = encode_tree(cabinet_nodes)
    srv_json = encode_tree([Node(name=b"cabinet", type=DIR, mode=0o750, uid=1000, gid=1000, mtime_ns=mtime,
                                 user="secretariat", group="cabinet", subtree=chunk_id(cabinet_json))])
    root_json = encode_tree([Node(name=b"srv", type=DIR, mode=0o755, uid=0, gid=0, mtime_ns=mtime,
                                  user="root", group="root", subtree=chunk_id(srv_json))])

    tree_entries: list[PackEntry] = []
    tree_parts: list[bytes] = []
    offset = 0
    for label, content in (("tree cabinet", cabinet_json), ("tree srv", srv_json), ("tree root", root_json)):
        cid = chunk_id(content)
        envelope = seal(enc_key, compression.compress(content, level),
                        object_aad(layout.KIND_TREE_BLOB, cid), cipher=XCHACHA, nonce=fixed_nonce(label))
        tree_entries.append(PackEntry(BLOB_TREE, cid, offset, len(envelope), len(content)))
        tree_parts.append(envelope)
        offset += len(envelope)

    def pack(parts: list[bytes], entries: list[PackEntry], label: str) -> tuple[bytes, bytes]:
        header = seal(enc_key, compression.compress(encode_header_entries(entries), compression.DEFAULT_LEVEL),
                      object_aad(layout.KIND_PACK_HEADER, b""), cipher=XCHACHA, nonce=fixed_nonce(label))
        data = b"".join(parts) + header + TRAILER.pack(len(header))
        return hashlib.sha256(data).digest(), data

    data_pack_id, data_pack = pack(data_parts, data_entries, "data pack header")
    tree_pack_id, tree_pack = pack(tree_parts, tree_entries, "tree pack header")

    index_plain = encode_index({data_pack_id: data_entries, tree_pack_id: tree_entries})
    index_object = seal(enc_key, compression.compress(index_plain, level),
                        object_aad(layout.KIND_INDEX, INDEX_ID), cipher=XCHACHA, nonce=fixed_nonce("index"))

    snapshot = Snapshot(
        time=snapshot_time, host="cabinet-serveur", user="root", paths=["/srv/cabinet"],
        tree=chunk_id(root_json), tags=["weekly"], excludes=["*.tmp"],
        summary={"files_new": 6, "files_changed": 0, "files_unchanged": 0, "dirs": 1,
                 "bytes_total": 2 * len(LETTER) + len(NOTES) + len(ZEROS),
                 "bytes_read": 2 * len(LETTER) + len(NOTES) + len(ZEROS),
                 "bytes_added": len(data_pack) + len(tree_pack), "duration_s": 0.05,
                 "partial": False, "warnings": 0},
        program="backupctl 0.1.0",
    )
    snapshot_plain = snapshot.encode()
    snapshot_object = seal(enc_key, compression.compress(snapshot_plain, level),
                           object_aad(layout.KIND_SNAPSHOT, SNAPSHOT_ID), cipher=XCHACHA,
                           nonce=fixed_nonce("snapshot"))

    # The example stays a version-1 repository: version-2 readers read it unchanged.
    config = StoredConfig(REPOSITORY_ID, XCHACHA, level, ChunkerParams(), created, format_version=1)
    config_plain = config.encode()
    config_object = seal(enc_key, compression.compress(config_plain, level),
                         object_aad(layout.KIND_CONFIG, b""), cipher=XCHACHA, nonce=fixed_nonce("config"))

    params = KdfParams()
    kek = derive_key(PASSPHRASE, SALT, params)
    wrapped = seal(kek, MASTER, key_file_aad(REPOSITORY_ID, KEY_ID), cipher=XCHACHA,
                   nonce=fixed_nonce("key file"))
    key_document = json.dumps({
        "version": KEY_FILE_VERSION,
        "repository_id": REPOSITORY_ID.hex(),
        "key_id": KEY_ID.hex(),
        "created": created,
        "host": "cabinet-serveur",
        "kdf": {"algorithm": "argon2id", "version": 19, "memory_kib": params.memory_kib,
                "iterations": params.iterations, "parallelism": params.parallelism,
                "salt": base64.b64encode(SALT).decode("ascii")},
        "wrapped_master_key": base64.b64encode(wrapped).decode("ascii"),
    }, indent=2)

    objects = [
        (layout.key_name(KEY_ID), None),
        (layout.CONFIG, config_object),
        (layout.pack_name(data_pack_id), data_pack),
        (layout.pack_name(tree_pack_id), tree_pack),
        (layout.index_name(INDEX_ID), index_object),
        (layout.snapshot_name(SNAPSHOT_ID), snapshot_object),
    ]

    expected = [
        json.dumps({"path": "srv", "type": DIR, "mode": "0755"}),
        json.dumps({"path": "srv/cabinet", "type": DIR, "mode": "0750"}),
    ]
    first_link: dict[str, str] = {}
    for node in sorted(cabinet_nodes, key=lambda n: n.name):
        entry: dict = {}
        path = b"srv/cabinet/" + node.name
        try:
            entry["path"] = path.decode("utf-8")
        except UnicodeDecodeError:
            entry["path_b64"] = base64.b64encode(path).decode("ascii")
        entry["type"] = node.type
        if node.type == FILE:
            entry.update(mode=f"{node.mode:04o}", size=node.size, sha256=node.sha256)
            if node.hardlink in first_link:
                entry["same_file_as"] = first_link[node.hardlink]
            elif node.hardlink:
                first_link[node.hardlink] = entry["path"]
        else:
            entry["target"] = node.target.decode()
        expected.append(json.dumps(entry))

    md = []
    md.append("### 15.8 A complete example repository\n")
    md.append(
        "Six objects make a whole repository with one snapshot of `/srv/cabinet` (three data "
        "blobs, three tree blobs, two packs, one index file). The passphrase, salt and "
        "parameters are those of 15.6, so the key-encryption key is 15.6's `output`; the "
        "master secret is 15.4's `master` and the repository id, key id, index id and "
        "snapshot id are those of 15.7. Every nonce is fixed for reproducibility: "
        "SHA-256(\"backupctl test vector nonce \" + label)[0:24], labels `key file`, `config`, "
        "`letter`, `notes`, `zeros`, `tree cabinet`, `tree srv`, `tree root`, `data pack header`, "
        "`tree pack header`, `index`, `snapshot` (real objects use random nonces). A reader "
        "that restores this repository to the listing at the end of this section "
        "has every step of section 14 right.\n"
    )
    md.append("The key file (the object's bytes are this UTF-8 text):\n")
    md.append(text_block("object-text", layout.key_name(KEY_ID), key_document))
    for name, data in objects[1:]:
        md.append(f"\nObject `{name}` ({len(data)} bytes):\n")
        md.append(object_block(name, data))
    md.append("\nThe plaintexts, for debugging a reader (each is what follows the compression byte "
              "once decompressed).\n\nConfig:\n")
    md.append("```json\n" + config_plain.decode() + "\n```")
    md.append("\nSnapshot:\n")
    md.append("```json\n" + snapshot_plain.decode() + "\n```")
    for label, content in (("root", root_json), ("srv", srv_json), ("cabinet", cabinet_json)):
        md.append(f"\nTree `{label}` (chunk id `{chunk_id(content).hex()}`):\n")
        md.append("```json\n" + content.decode() + "\n```")
    md.append("\nIndex plaintext (after the compression byte):\n")
    md.append("```text\n" + "\n".join(_hex_lines(index_plain)) + "\n```")
    md.append("\nWhat restoring the snapshot must produce, in walk order (one JSON object a line; "
              "`path_b64` is a path that is not UTF-8; `same_file_as` names the first link of a "
              "hard-linked file; `image.raw` is sparse, one all-zero chunk; `mode` is octal; "
              "every `mtime_ns` is 1767547800000000000):\n")
    md.append("```expected-restore\n" + "\n".join(expected) + "\n```")
    return md, [name for name, _ in objects]


# ---- format version 4 ----------------------------------------------------------------------

CHUNKER_INPUT_LABEL = b"backupctl test vector chunker input"
CHUNKER_INPUT_SIZE = 6 * 1024 * 1024
PADME_INPUTS = (5, 100, 511, 512, 513, 1000, 4097, 70000, 1048577, 8388613)
BLOB_2 = blake3.blake3(b"backupctl test vector incompressible blob").digest(length=700)


def vectors_version4() -> list[str]:
    """Sections 15.9 to 15.11: gear table, padding and a whole version-4 pack (no zstd
    output in any of them, so they are reproduced exactly by the test)."""
    out = []
    gear = ids.gear_table(MASTER)
    data = blake3.blake3(CHUNKER_INPUT_LABEL).digest(length=CHUNKER_INPUT_SIZE)
    lengths = [len(c) for c in Chunker(ChunkerParams(), gear=gear).chunks(__import__("io").BytesIO(data))]
    out.append("\n### 15.9 Gear table and cut points (version 4)\n\n`gear_table` is the first 2048 bytes "
               "of BLAKE3 derive_key(\"" + ids.CONTEXT_GEAR_TABLE + "\", master) in its extendable-output "
               "mode, for 15.4's `master`; entry i is bytes 8i to 8i + 8 read as a little-endian u64 "
               "(`gear_0` and `gear_255` are entries 0 and 255 in hexadecimal, most significant digit first). "
               "`input` is described by `input_label`: the first `input_size` bytes of the extendable "
               "output of unkeyed BLAKE3 over the label's ASCII bytes (`input_sha256` is their SHA-256). "
               "`chunk_lengths` are the lengths of the chunks FastCDC (section 11, default sizes) cuts "
               "it into with this gear table.\n")
    out.append(block("vector", "gear-table", [
        ("master", MASTER),
        ("gear_table", b"".join(g.to_bytes(8, "little") for g in gear)),
        ("gear_0", gear[0].to_bytes(8, "big")),
        ("gear_255", gear[255].to_bytes(8, "big")),
        ("input_label", CHUNKER_INPUT_LABEL.decode("ascii")),
        ("input_size", CHUNKER_INPUT_SIZE),
        ("input_sha256", hashlib.sha256(data).digest()),
        ("chunk_lengths", " ".join(str(n) for n in lengths)),
    ]))

    out.append("\n### 15.10 Padding (version 4)\n\n`padme` is Padmé of section 7.2 for each length of "
               "`lengths`, `padded` is padded_length (Padmé of at least 512), in the same order.\n")
    out.append(block("vector", "padding", [
        ("lengths", " ".join(str(n) for n in PADME_INPUTS)),
        ("padme", " ".join(str(padme(n)) for n in PADME_INPUTS)),
        ("padded", " ".join(str(padded_length(n)) for n in PADME_INPUTS)),
    ]))

    master = MasterKey(MASTER)
    enc_key, id_key = master.encryption_key, master.chunk_id_key
    implied = bytes((aead.ENVELOPE_VERSION, aead.CIPHER_IDS[XCHACHA]))
    fields: list[tuple[str, object]] = [("encryption_key", enc_key), ("repository_id", REPOSITORY_ID)]
    entries, parts, offset = [], [], 0
    for number, content in ((1, LETTER), (2, BLOB_2)):
        cid = ids.chunk_id(id_key, content)
        padded = pad(compression.compress(content, 3))
        nonce = fixed_nonce(f"v4 blob {number}")
        body = seal(enc_key, padded, object_aad(layout.KIND_DATA_BLOB_V4, cid), cipher=XCHACHA, nonce=nonce)[2:]
        entries.append(PackEntry(BLOB_DATA, cid, offset, len(body), len(content)))
        parts.append(body)
        offset += len(body)
        fields += [(f"blob_{number}_data", content), (f"blob_{number}_chunk_id", cid),
                   (f"blob_{number}_padded", padded), (f"blob_{number}_body", body)]
    header_plain = encode_header_entries(entries)
    header_padded = pad(compression.compress(header_plain, compression.DEFAULT_LEVEL))
    header = seal(enc_key, header_padded, object_aad(layout.KIND_PACK_HEADER_V4, b""), cipher=XCHACHA,
                  nonce=fixed_nonce("v4 pack header"))[2:]
    trailer_plain = TRAILER_PLAIN.pack(len(header))
    trailer = seal(enc_key, trailer_plain, object_aad(layout.KIND_PACK_TRAILER_V4, b""), cipher=XCHACHA,
                   nonce=fixed_nonce("v4 pack trailer"))[2:]
    pack = b"".join(parts) + header + trailer
    assert implied == b"\x01\x01"
    fields += [("header_entries", header_plain), ("header_padded", header_padded), ("header_body", header),
               ("trailer_plain", trailer_plain), ("trailer_body", trailer),
               ("pack_id", hashlib.sha256(pack).digest()), ("pack", pack)]
    out.append("\n### 15.11 A version-4 pack\n\nA data pack of a version-4 repository (section 7.2) "
               "with the cipher XChaCha20-Poly1305, the keys of 15.4 and the repository id of 15.7. "
               "Blob 1 is the letter of 15.8, blob 2 the first 700 bytes of the extendable output of "
               "BLAKE3 over `backupctl test vector incompressible blob`; neither compresses, so each "
               "payload is `00` and the data. `*_padded` are the padded plaintexts, `*_body` the "
               "envelopes without their two implied bytes `01 01` (whose associated data includes "
               "them, section 4.3, with kinds 9, 11 and 12). Nonces as in 15.8, labels `v4 blob 1`, "
               "`v4 blob 2`, `v4 pack header`, `v4 pack trailer`. The header is stored as is (zstd "
               "does not shorten it). The stored object is `pack`, named `data/<pack_id hex[0:2]>/<pack_id hex>`.\n")
    out.append(block("vector", "pack-v4", fields))

    # Version 5 (section 7.3): the same blobs and header, the trailer saying the version.
    trailer_v5_plain = TRAILER_PLAIN_V5.pack(5, len(header))
    trailer_v5 = seal(enc_key, trailer_v5_plain, object_aad(layout.KIND_PACK_TRAILER_V4, b""), cipher=XCHACHA,
                      nonce=fixed_nonce("v5 pack trailer"))[2:]
    pack_v5 = b"".join(parts) + header + trailer_v5
    out.append("\n### 15.11.1 The same pack in version 5\n\nThe pack of 15.11 as a version-5 repository "
               "writes it (section 7.3): the same blob bodies and header body, then a 48-byte trailer "
               "whose 8-byte plaintext `trailer_plain` is the format version 5 and the header body's "
               "length, u32 little-endian each (kind 12, nonce label `v5 pack trailer`). The stored "
               "object is 15.11's `pack` without its last 44 bytes, followed by `trailer_body`; its "
               "SHA-256 is `pack_id`.\n")
    out.append(block("vector", "pack-v5", [
        ("encryption_key", enc_key), ("repository_id", REPOSITORY_ID),
        ("trailer_plain", trailer_v5_plain), ("trailer_body", trailer_v5),
        ("pack_id", hashlib.sha256(pack_v5).digest()),
    ]))
    return out


def render() -> str:
    parts = vectors_primitives()
    repo_parts, _object_names = example_repository()
    parts.append("")
    parts.extend(repo_parts)
    parts.extend(vectors_version4())
    return "\n".join(parts) + "\n"


def update(path: str, generated: str) -> None:
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    start = text.index(BEGIN_MARK) + len(BEGIN_MARK)
    end = text.index(END_MARK)
    text = text[:start] + "\n" + generated + text[end:]
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--update", metavar="FORMAT_MD", help="replace the generated part of this file")
    args = parser.parse_args()
    generated = render()
    if args.update:
        update(args.update, generated)
    else:
        sys.stdout.write(generated)


if __name__ == "__main__":
    main()

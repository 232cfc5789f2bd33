"""Format version 5 (docs/FORMAT.md sections 7.3, 8, 9, 10 and 16): every stored structure says
its own format version, inside its authenticated bytes.

The expected bytes are recomputed here from the document (offsets, sizes, kinds and member
names written as literals, not taken from the code's constants): a pack's last 48 bytes are a
trailer body of kind 12 whose 8-byte plaintext is u32 version || u32 header length; an index
file's first plaintext byte, a snapshot's `version` and a tree's first member `version` say 5.
A reader refuses a structure whose version is not the config's, and one altered in its
ciphertext fails authentication; a version-4 repository keeps its own layout.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import struct
from pathlib import Path

import pytest
import zstandard

from agent.crypto import aead
from agent.crypto.kdf import KdfParams
from agent.errors import IntegrityError, RepositoryExists
from agent.repo import compression, layout
from agent.repo import repository as repository_module
from agent.repo.layout import SnapshotId
from agent.repo.pack import BLOB_DATA, BLOB_TREE
from agent.repo.repository import FORMAT_VERSION, Repository
from agent.repo.snapshot import Snapshot
from agent.repo.tree import FILE, Node, check_tree_version, decode_tree, encode_tree
from agent.storage.memory import MemoryStorage
from tests.support.locked import run_locked

FAST = KdfParams(memory_kib=8192, iterations=1)
PASSPHRASE = b"phrase de passe du cabinet"
CIPHER_IDS = {"xchacha20-poly1305": 1, "aes-256-gcm": 2}  # section 4.1


def _repo(version: int | None = None, cipher: str = "xchacha20-poly1305") -> Repository:
    options = {} if version is None else {"format_version": version}
    return Repository.init(MemoryStorage(), PASSPHRASE, cipher=cipher, compression_level=None, kdf_params=FAST,
                           **options)


def _node(name: str, chunk: bytes) -> Node:
    return Node(name=name.encode(), type=FILE, mode=0o600, uid=1000, gid=1000, mtime_ns=1_767_000_000 * 10**9,
                size=10, sha256="00" * 32, chunks=[chunk])


def _fill(repo: Repository) -> tuple[bytes, bytes, SnapshotId]:
    """One data blob, one tree naming it, one snapshot naming the tree: (chunk, tree, snapshot id)."""
    chunk, _ = repo.store_blob(BLOB_DATA, b"Rendez-vous confirme.\n" * 4)
    tree, _ = repo.store_blob(BLOB_TREE, encode_tree([_node("lettre.txt", chunk)]))
    repo.flush()
    snapshot = Snapshot(time=dt.datetime(2026, 12, 7, 5, tzinfo=dt.timezone.utc), host="cabinet", user="root",
                        paths=["/srv/cabinet"], tree=tree)
    return chunk, tree, repo.save_snapshot(snapshot)


# ---- a reader of the document: the key, no config -------------------------------------------


def _binding(repo: Repository, kind: int, object_id: bytes) -> bytes:
    return b"backupctl\x00" + repo.config.repository_id + bytes((kind,)) + object_id  # section 4.3


def _open_body(repo: Repository, body: bytes, kind: int, object_id: bytes = b"") -> tuple[bytes, int]:
    """A body (section 4.1) opened without the config: cipher 1, then cipher 2 (section 6)."""
    for cipher_id in (1, 2):
        try:
            return aead.open_envelope(repo.master.encryption_key, bytes((1, cipher_id)) + body,
                                      _binding(repo, kind, object_id), what="test"), cipher_id
        except IntegrityError:
            continue
    raise IntegrityError("opens under neither cipher")


def _unpad(plain: bytes) -> bytes:  # section 7.2
    (n,) = struct.unpack_from("<I", plain)
    assert 4 + n <= len(plain) and not any(plain[4 + n :])
    return plain[4 : 4 + n]


def _payload(plain: bytes) -> bytes:  # section 5
    if plain[0] == 0:
        return plain[1:]
    assert plain[0] == 1
    return zstandard.ZstdDecompressor().decompress(plain[1:], max_output_size=1 << 30)


def _trailer(repo: Repository, pack: bytes) -> tuple[int, int, int]:
    """Section 7.3: (format version, header length, cipher id) from a pack's last 48 bytes."""
    plain, cipher_id = _open_body(repo, pack[-48:], 12)
    assert len(plain) == 8
    version, header_length = struct.unpack("<II", plain)
    return version, header_length, cipher_id


def _packs(repo: Repository) -> dict[str, bytes]:
    return {info.name: repo.storage.read(info.name) for info in repo.storage.list("data/")}


def _index_plain(repo: Repository, name: str, kind: int = 13) -> bytes:
    envelope = repo.storage.read(name)
    index_id = bytes.fromhex(name[len("index/"):])
    return _payload(_unpad(aead.open_envelope(repo.master.encryption_key, envelope,
                                              _binding(repo, kind, index_id), what=name)))


def _snapshot_doc(repo: Repository, snapshot_id: bytes) -> dict:
    envelope = repo.storage.read("snapshots/" + snapshot_id.hex())
    return json.loads(_payload(aead.open_envelope(repo.master.encryption_key, envelope,
                                                  _binding(repo, 3, snapshot_id), what="snapshot")))


def _tree_plain(repo: Repository, tree: bytes) -> bytes:
    """A tree blob read through the pack header only (no index, no config): kind 10, padded."""
    for pack in _packs(repo).values():
        _version, header_length, _cipher = _trailer(repo, pack)
        start = len(pack) - 48 - header_length
        header = _payload(_unpad(_open_body(repo, pack[start:-48], 11)[0]))
        for kind, chunk_id, offset, length, _raw in struct.iter_unpack("<B32sIII", header):
            if chunk_id == tree:
                assert kind == 1
                return _payload(_unpad(_open_body(repo, pack[offset : offset + length], 10, tree)[0]))
    raise AssertionError("tree not found in any pack")


# ---- what version 5 writes ------------------------------------------------------------------


def test_init_writes_version_5():
    repo = _repo()
    assert FORMAT_VERSION == 5 and repo.config.format_version == 5
    assert Repository.open(repo.storage, PASSPHRASE).config.format_version == 5


@pytest.mark.parametrize("cipher", ["xchacha20-poly1305", "aes-256-gcm"])
def test_every_structure_of_a_version_5_repository_says_5_to_a_reader_without_the_config(cipher):
    repo = _repo(cipher=cipher)
    _chunk, tree, snapshot_id = _fill(repo)
    # Packs: the 48-byte trailer says 5, and which cipher opens it (the config is not read).
    packs = _packs(repo)
    assert len(packs) == 2  # data and tree blobs go to separate packs
    for pack in packs.values():
        version, header_length, cipher_id = _trailer(repo, pack)
        assert (version, cipher_id) == (5, CIPHER_IDS[cipher])
        assert 40 <= header_length <= len(pack) - 48
        with pytest.raises(IntegrityError):  # not a version-4 trailer of 44 bytes
            _open_body(repo, pack[-44:], 12)
    # Index files: the first byte of the plaintext.
    [index_name] = [info.name for info in repo.storage.list("index/")]
    assert _index_plain(repo, index_name)[0] == 5
    # Snapshots: `version`.
    assert _snapshot_doc(repo, snapshot_id)["version"] == 5
    # Trees: the first member, `version`.
    plain = _tree_plain(repo, tree)
    assert plain.startswith(b'{"version":5,"nodes":[')
    assert list(json.loads(plain)) == ["version", "nodes"]
    # And the program reads back what it wrote.
    fresh = Repository.open(repo.storage, PASSPHRASE)
    fresh.load_index()
    assert [n.name for n in decode_tree(fresh.load_blob(tree), 5)] == [b"lettre.txt"]
    assert fresh.load_snapshot(snapshot_id).tree == tree


def test_a_tree_encoded_without_its_version_is_stored_with_it():
    """The repository stamps every tree it stores (section 9), so callers that encode trees
    without a version still write version-5 trees; the id is that of the stored document."""
    repo = _repo()
    listing = encode_tree([_node("a", bytes(32))])
    assert listing.startswith(b'{"nodes":')
    tree, _ = repo.store_blob(BLOB_TREE, listing)
    repo.flush()
    stored = repo.load_blob(tree)
    assert stored == b'{"version":5,' + listing[1:] == encode_tree([_node("a", bytes(32))], 5)
    assert repo.chunk_id(stored) == tree
    assert json.loads(stored) == {"version": 5, **json.loads(listing)}


# ---- tampering and disagreement ---------------------------------------------------------------


def _flip(stored: bytes, at: int, old: bytes, new: bytes) -> bytes:
    """The ciphertext of a stream cipher with `old` plaintext bytes at `at` turned into `new`
    (XChaCha20: ciphertext = plaintext XOR keystream), the tag kept: what an attacker who
    knows the plaintext can do without the key."""
    assert len(old) == len(new)
    changed = bytes(c ^ a ^ b for c, a, b in zip(stored[at : at + len(old)], old, new, strict=True))
    return stored[:at] + changed + stored[at + len(old) :]


def test_a_version_altered_inside_the_ciphertext_fails_authentication(monkeypatch):
    repo = _repo()
    # Index files and snapshots stored uncompressed (compression byte 00, valid for every
    # object, section 5), so that their version is at a known place of the plaintext.
    monkeypatch.setattr(compression, "compress", lambda data, _level: b"\x00" + data)
    _chunk, tree, snapshot_id = _fill(repo)
    monkeypatch.undo()
    # A pack's trailer: the version is the first 4 plaintext bytes, after the 24-byte nonce.
    name, pack = next(iter(_packs(repo).items()))
    trailer_at = len(pack) - 48 + 24
    assert pack[trailer_at : trailer_at + 4] != struct.pack("<I", 5)  # encrypted, not clear
    forged = _flip(pack, trailer_at, struct.pack("<I", 5), struct.pack("<I", 4))
    with pytest.raises(IntegrityError, match="authentication"):
        repo.pack_header_entries(forged, name)
    # A tree blob: u32 length, compression byte 00, then `{"version":5,`; "5" at byte 11.
    location = repo.locate(tree)
    tree_pack = repo.storage.read(layout.pack_name(location.pack_id))
    body = tree_pack[location.offset : location.offset + location.length]
    forged_body = _flip(body, 24 + 4 + 1 + 11, b"5", b"6")
    with pytest.raises(IntegrityError, match="authentication"):
        repo.decode_blob(tree, BLOB_TREE, forged_body, location.raw_length, pack_name="p", verify_id=False)
    # An index file: an ordinary envelope (2 clear bytes, 24-byte nonce), then u32 length,
    # compression byte 00 and the version byte.
    [index_name] = [info.name for info in repo.storage.list("index/")]
    index_id = layout.index_id_from_name(index_name)
    assert _index_plain(repo, index_name)[0] == 5
    repo.storage.write(index_name, _flip(repo.storage.read(index_name), 26 + 4 + 1, b"\x05", b"\x04"))
    with pytest.raises(IntegrityError, match="authentication"):
        Repository.open(repo.storage, PASSPHRASE).read_index_file(index_id)
    # A snapshot: after the 26 bytes and the compression byte 00, its JSON text.
    snapshot_name = "snapshots/" + snapshot_id.hex()
    envelope = repo.storage.read(snapshot_name)
    text = aead.open_envelope(repo.master.encryption_key, envelope, _binding(repo, 3, snapshot_id), what="s")[1:]
    at = 26 + 1 + text.index(b'"version":5,') + len(b'"version":')
    repo.storage.write(snapshot_name, _flip(envelope, at, b"5", b"4"))
    with pytest.raises(IntegrityError, match="authentication"):
        Repository.open(repo.storage, PASSPHRASE).load_snapshot(snapshot_id)


def _reseal(repo: Repository, plain: bytes, kind: int, object_id: bytes = b"") -> bytes:
    """An envelope made with the repository's key: authentic, whatever it says."""
    return aead.seal(repo.master.encryption_key, plain, _binding(repo, kind, object_id), cipher=repo.config.cipher)


def test_an_authentic_pack_trailer_of_another_version_is_refused_by_name():
    repo = _repo()
    _fill(repo)
    for name, pack in _packs(repo).items():
        _version, header_length, _cipher = _trailer(repo, pack)
        for other in (4, 6):
            forged = pack[:-48] + _reseal(repo, struct.pack("<II", other, header_length), 12)[2:]
            assert len(forged) == len(pack)
            with pytest.raises(IntegrityError, match=rf"^{name} trailer says format version {other}"):
                repo.pack_header_entries(forged, name)
        assert len(repo.pack_header_entries(pack, name)) == 1


def test_an_authentic_index_file_of_another_version_is_refused_by_name():
    repo = _repo()
    _fill(repo)
    [index_name] = [info.name for info in repo.storage.list("index/")]
    index_id = layout.index_id_from_name(index_name)
    plain = _index_plain(repo, index_name)
    for other, said in ((1, r"version 1 \(formats 1 to 4\)"), (6, "format version 6, newer than this program's")):
        payload = b"\x00" + bytes((other,)) + plain[1:]
        padded = struct.pack("<I", len(payload)) + payload
        padded += bytes(max(512, len(padded)) - len(padded))
        repo.storage.write(index_name, _reseal(repo, padded, 13, index_id))
        with pytest.raises(IntegrityError, match=rf"^{index_name} says {said}"):
            Repository.open(repo.storage, PASSPHRASE).read_index_file(index_id)


def test_an_authentic_snapshot_of_another_version_is_refused_by_name():
    repo = _repo()
    _chunk, _tree, snapshot_id = _fill(repo)
    doc = _snapshot_doc(repo, snapshot_id)
    for other, said in ((1, r"version 1 \(formats 1 to 4\)"), (4, "format version 4"),
                        (6, "format version 6, newer")):
        text = json.dumps({**doc, "version": other}).encode()
        repo.storage.write("snapshots/" + snapshot_id.hex(), _reseal(repo, b"\x00" + text, 3, snapshot_id))
        with pytest.raises(IntegrityError, match=rf"^snapshot {snapshot_id.hex()[:8]} says {said}"):
            Repository.open(repo.storage, PASSPHRASE).load_snapshot(snapshot_id)


@pytest.mark.parametrize("document, said", [
    (b'{"nodes":[]}', "says no format version"),
    (b'{"version":4,"nodes":[]}', "says format version 4"),
    (b'{"version":6,"nodes":[]}', "says format version 6, newer than this program's"),
    (b'{"nodes":[],"version":4}', "says format version 4"),  # any valid JSON: not only the first member
])
def test_an_authentic_tree_of_another_version_is_refused_by_name(monkeypatch, document, said):
    repo = _repo()
    # Stored as is: the repository would stamp it with its own version.
    monkeypatch.setattr(repository_module, "with_version", lambda data, _version: data)
    tree, _ = repo.store_blob(BLOB_TREE, document)
    accepted, _ = repo.store_blob(BLOB_TREE, b'{"nodes":[],"version":5}')  # valid: any member order
    repo.flush()
    monkeypatch.undo()
    fresh = Repository.open(repo.storage, PASSPHRASE)
    fresh.load_index()
    with pytest.raises(IntegrityError, match=rf"^tree {tree.hex()[:16]} in pack data/.* {said}"):
        fresh.load_blob(tree)
    with pytest.raises(IntegrityError, match=said):
        decode_tree(document, 5)
    assert fresh.load_blob(accepted) == b'{"nodes":[],"version":5}'



@pytest.mark.parametrize("document, message", [
    (b"[]", "tree 0123abcd says no format version, the repository's config says format version 5: "
            "refused (a structure of another layout is never read as this one's)"),
    (b'"nodes"', "tree 0123abcd says no format version, the repository's config says format version 5: "
                 "refused (a structure of another layout is never read as this one's)"),
    (b'{"nodes":', "tree 0123abcd: not a valid tree document (Expecting value: line 1 column 10 (char 9))"),
    (b"\xff\xfe", "tree 0123abcd: not a valid tree document (Expecting value: line 1 column 1 (char 0))"),
], ids=["a-list", "a-string", "cut-short", "not-text"])
def test_a_tree_that_is_no_json_object_is_refused_by_name(document, message):
    # Authentic but not a tree document (a bug of another writer): an IntegrityError naming
    # the tree, never a Python error from reading a member of a list or a string.
    with pytest.raises(IntegrityError) as raised:
        check_tree_version(document, 5, what="tree 0123abcd")
    assert str(raised.value) == message

# ---- older repositories keep their layout -----------------------------------------------------


def test_a_version_4_repository_is_backed_up_restored_and_checked_in_its_own_layout(tmp_path):
    from agent.engine.backup import BackupEngine, BackupOptions
    from agent.engine.check import CheckEngine
    from agent.engine.restore import RestoreEngine

    repo = _repo(version=4)
    storage = repo.storage
    config_before = storage.read("config")
    source = tmp_path / "source"
    (source / "dossier").mkdir(parents=True)
    (source / "dossier" / "lettre.txt").write_bytes(b"Rendez-vous confirme.\n" * 50)
    for run in range(2):  # the second backup by another opening, as the next night's
        (source / f"scan-{run}.bin").write_bytes(os.urandom(200_000))
        report = run_locked(BackupEngine(Repository.open(storage, PASSPHRASE), BackupOptions(paths=[str(source)])))
        assert not report.warnings
    assert storage.read("config") == config_before
    fresh = Repository.open(storage, PASSPHRASE)
    assert fresh.config.format_version == 4
    # Section 7.2: a 44-byte trailer holding the header length alone; index files say 1,
    # snapshots 1, trees nothing.
    for pack in _packs(fresh).values():
        plain, _cipher = _open_body(fresh, pack[-44:], 12)
        assert len(plain) == 4
        with pytest.raises(IntegrityError):
            _open_body(fresh, pack[-48:], 12)
    for info in storage.list("index/"):
        assert _index_plain(fresh, info.name)[0] == 1
    snapshots = fresh.snapshots()
    assert len(snapshots) == 2
    for snapshot in snapshots:
        assert _snapshot_doc(fresh, snapshot.id)["version"] == 1
    fresh.load_index()
    root = fresh.load_blob(snapshots[-1].tree)
    assert root.startswith(b'{"nodes":') and "version" not in json.loads(root)
    assert run_locked(CheckEngine(fresh, read_data=True)).ok
    for number, snapshot in enumerate(snapshots):
        target = tmp_path / f"restored-{number}"
        assert not RestoreEngine(fresh, snapshot, str(target)).run().failures
        restored = Path(str(target) + str(source))
        assert (restored / "dossier" / "lettre.txt").read_bytes() == b"Rendez-vous confirme.\n" * 50
        assert (restored / f"scan-{number}.bin").read_bytes() == (source / f"scan-{number}.bin").read_bytes()


def test_a_version_4_repository_refuses_a_structure_saying_5():
    """The check goes both ways: a structure of the newer layout is not read as an older one's."""
    repo = _repo(version=4)
    _chunk, _tree, snapshot_id = _fill(repo)
    doc = _snapshot_doc(repo, snapshot_id)
    text = json.dumps({**doc, "version": 5}).encode()
    repo.storage.write("snapshots/" + snapshot_id.hex(), _reseal(repo, b"\x00" + text, 3, snapshot_id))
    with pytest.raises(IntegrityError, match="says format version 5, the repository's config says format version 4"):
        Repository.open(repo.storage, PASSPHRASE).load_snapshot(snapshot_id)
    with pytest.raises(IntegrityError, match="config says format version 4, whose trees say none"):
        decode_tree(b'{"version":5,"nodes":[]}', 4)


# ---- init --------------------------------------------------------------------------------------


class _RacedStorage(MemoryStorage):
    """Another `init` writes its config between our check and our write."""

    def write(self, name: str, data: bytes, **options: bool) -> None:
        if name == layout.CONFIG and not self.exists(layout.CONFIG):
            super().write(name, b"their config", exclusive=True)
        super().write(name, data, **options)


def test_an_init_that_loses_the_race_for_config_says_the_repository_exists():
    storage = _RacedStorage()
    with pytest.raises(RepositoryExists) as raised:
        Repository.init(storage, PASSPHRASE, cipher="xchacha20-poly1305", compression_level=None, kdf_params=FAST)
    assert raised.value.exit_code == 11
    assert storage.read(layout.CONFIG) == b"their config"
    assert list(storage.list(layout.KEYS_PREFIX)) == []  # our key file, which opens nothing there, is gone

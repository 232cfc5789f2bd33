"""docs/FORMAT.md's prose, exact: what the document states in words, recomputed or checked.

test_format_vectors.py holds the byte vectors of section 15 and the reader of section 14.
This file holds the rest: the recovery code of section 3.2.1 (its vector, 15.12, and an
implementation written from the section alone, without `agent`), the documented compression
default (section 5), the size of tree blobs (section 7), the root tree's database dumps and the
snapshot summary (sections 9 and 10), what restore does with holes, hard links, owners and
special bits (sections 9 and 14), the order of snapshots (section 10), and the chunker's pinned
release (section 11).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import re
import secrets
import sqlite3
import stat
import tomllib
from pathlib import Path

import blake3
import pytest

from tests.support.locked import run_locked
from tests.unit.test_format_vectors import DOC_PATH, SpecReader, _parse_fields

ROOT = DOC_PATH.parents[1]
PASSPHRASE = b"phrase de passe"


def _doc() -> str:
    return DOC_PATH.read_text(encoding="utf-8")


def _flat(text: str) -> str:
    return " ".join(text.split())


def _section(title: str) -> str:
    """The text of one section, from its heading to the next heading of any level."""
    text = _doc()
    start = text.index(title)
    following = re.compile(r"^#{2,3} ", re.M).search(text, start + len(title))
    return text[start : following.start() if following else len(text)]


# ---- section 15.12: the hand-written recovery code vectors ---------------------------------------

_INTEGERS = {"threshold", "count"}


def _hand_vectors() -> dict[str, dict]:
    """The `vector` blocks of section 15.12 (after the generated part), parsed as section 15 says."""
    text = _section("### 15.12 Recovery code")
    found: dict[str, dict] = {}
    for name, body in re.findall(r"^```vector (\S+)\n(.*?)^```$", text, re.M | re.S):
        found[name] = _parse_fields(body, _INTEGERS)
    return found


# ---- section 3.2.1, written from the document alone (no `agent` import) ----------------------------

_SUPERSCRIPTS = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹", "0123456789")


def _field_polynomial() -> int:
    """The reduction polynomial, read from the prose ("GF(2)[x] / (x¹²⁸ + x⁷ + x² + x + 1)")."""
    match = re.search(r"GF\(2\)\[x\] / \(([x⁰-⁹¹²³ +1]+)\)", _flat(_section("### 3.2.1")))
    assert match, "section 3.2.1 names the field's polynomial"
    value = 0
    for term in match.group(1).split(" + "):
        term = term.strip().translate(_SUPERSCRIPTS)
        value |= 1 if term == "1" else 2 if term == "x" else 1 << int(term[1:])
    return value


class ProseRecoveryCode:
    """Section 3.2.1: GF(2^128) shares, base32 text, check characters, QR text."""

    ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    CONTEXT = b"backupctl recovery code line\x00"

    def __init__(self) -> None:
        self.modulus = _field_polynomial()
        assert self.modulus.bit_length() == 129

    # -- the field --

    def mul(self, a: int, b: int) -> int:
        product = 0
        while b:
            if b & 1:
                product ^= a
            b >>= 1
            a <<= 1
            if a >> 128:
                a ^= self.modulus
        return product

    def inverse(self, a: int) -> int:
        assert a
        result, power, exponent = 1, a, (1 << 128) - 2  # a^(2^128 - 2) = a^-1
        while exponent:
            if exponent & 1:
                result = self.mul(result, power)
            power = self.mul(power, power)
            exponent >>= 1
        return result

    # -- shares: two halves, big-endian elements, x = the share number --

    def split_half(self, half: bytes, coefficients: list[bytes], numbers: list[int]) -> list[bytes]:
        terms = [int.from_bytes(half, "big")] + [int.from_bytes(c, "big") for c in coefficients]
        shares = []
        for j in numbers:
            value, power = 0, 1
            for coefficient in terms:
                value ^= self.mul(coefficient, power)
                power = self.mul(power, j)
            shares.append(value.to_bytes(16, "big"))
        return shares

    def combine_half(self, points: list[tuple[int, bytes]]) -> bytes:
        secret = 0
        for i, (x_i, y_i) in enumerate(points):
            term = int.from_bytes(y_i, "big")
            for m, (x_m, _y) in enumerate(points):
                if m != i:
                    term = self.mul(term, self.mul(x_m, self.inverse(x_m ^ x_i)))
            secret ^= term
        return secret.to_bytes(16, "big")

    def combine(self, shares: list[tuple[int, bytes]]) -> bytes:
        return (self.combine_half([(j, s[:16]) for j, s in shares])
                + self.combine_half([(j, s[16:]) for j, s in shares]))

    # -- text --

    @staticmethod
    def base32(data: bytes) -> str:
        return base64.b32encode(data).decode("ascii").rstrip("=")

    def check(self, number: int, text: str, count: int) -> str:
        digest = blake3.blake3(self.CONTEXT + number.to_bytes(2, "big") + text.encode("ascii")).digest()
        bits = "".join(f"{byte:08b}" for byte in digest)[: 5 * count]  # most significant bit first
        return "".join(self.ALPHABET[int(bits[5 * i : 5 * i + 5], 2)] for i in range(count))

    def lines(self, code: bytes) -> list[str]:
        text = self.base32(code)
        return [f"{text[s:s + 16]} {self.check(n, text[s:s + 16], 2)}"
                for n, s in enumerate(range(0, len(text), 16), start=1)]

    def qr(self, code: bytes) -> str:
        text = self.base32(code)
        return f"BACKUPCTL1:{text}:{self.check(0, text, 4)}"

    @staticmethod
    def decode(text: str) -> bytes:
        return base64.b32decode(text + "=" * (-len(text) % 8))


def test_recovery_code_vector_from_the_prose():
    prose, vector = ProseRecoveryCode(), _hand_vectors()["recovery-code"]
    code = vector["code"]
    assert code == b"\x01" + vector["repository_id"] + vector["master"] and len(code) == 49
    lines = [vector[f"line{n}"] for n in range(1, 6)]
    assert prose.lines(code) == lines and "line6" not in vector
    assert len(prose.base32(code)) == 79 and len(lines[-1]) == 15 + 3
    assert prose.qr(code) == vector["qr"]
    # The QR text holds no per-line check characters: it is the bare text and 4 of its own.
    assert vector["qr"] == "BACKUPCTL1:" + "".join(line[:-3] for line in lines) + ":" + vector["qr"][-4:]
    assert prose.decode(vector["qr"].split(":")[1]) == code


def test_recovery_code_vector_is_what_the_agent_prints_and_reads():
    from agent.crypto import paper

    vector = _hand_vectors()["recovery-code"]
    code = paper.RecoveryCode(vector["repository_id"], vector["master"])
    assert code.payload() == vector["code"]
    printed = paper.lines(code)
    assert [f"{groups.replace(' ', '')} {check}" for groups, check in printed] == \
        [vector[f"line{n}"] for n in range(1, 6)]
    assert all(groups.count(" ") == 3 for groups, _check in printed[:-1])  # four groups of four
    assert paper.qr_text(code) == vector["qr"]
    assert paper.parse(vector["qr"]) == code
    typed = "\n".join(f"{n}: {line.lower()}" for n, line in enumerate(
        (vector[f"line{n}"] for n in range(1, 6)), start=1))
    assert paper.parse(typed) == code


def test_share_vector_from_the_prose_and_the_agent(monkeypatch):
    from Crypto.Protocol import SecretSharing

    from agent.crypto import paper, shares

    prose, vector = ProseRecoveryCode(), _hand_vectors()["recovery-code-shares"]
    master, repository_id, k, n = vector["master"], vector["repository_id"], vector["threshold"], vector["count"]
    assert (k, n) == (2, 3)
    numbers = list(range(1, n + 1))
    low = prose.split_half(master[:16], [vector["coefficient_low"]], numbers)
    high = prose.split_half(master[16:], [vector["coefficient_high"]], numbers)
    codes = [vector[f"share{j}"] for j in numbers]
    assert codes == [bytes((2, k, j)) + repository_id + low[j - 1] + high[j - 1] for j in numbers]
    for pair in ((1, 2), (1, 3), (2, 3)):
        assert prose.combine([(j, codes[j - 1][19:]) for j in pair]) == master
        assert shares.combine([(j, codes[j - 1][19:]) for j in pair], k) == master
    assert prose.qr(codes[1]) == vector["qr2"]
    assert paper.master_secret([paper.parse(vector["qr2"]), paper.parse(prose.qr(codes[2]))]) == \
        (repository_id, master)
    # The agent's split, given the vector's coefficients as its random draws, gives the vector.
    draws = iter([vector["coefficient_low"], vector["coefficient_high"]])
    monkeypatch.setattr(SecretSharing, "rng", lambda size: next(draws))
    assert shares.split(master, k, n) == [(j, codes[j - 1][19:]) for j in numbers]


def test_random_shares_of_the_library_recombine_by_the_prose_and_back():
    from agent.crypto import shares

    prose = ProseRecoveryCode()
    for k, n in ((2, 2), (3, 5), (4, 7)):
        secret = secrets.token_bytes(32)
        made = shares.split(secret, k, n)
        for _ in range(3):
            chosen = [made[i] for i in sorted(secrets.SystemRandom().sample(range(n), k))]
            assert prose.combine(chosen) == secret
        numbers = list(range(1, n + 1))
        coefficients = [[secrets.token_bytes(16) for _ in range(k - 1)] for _half in range(2)]
        low = prose.split_half(secret[:16], coefficients[0], numbers)
        high = prose.split_half(secret[16:], coefficients[1], numbers)
        ours = [(j, low[j - 1] + high[j - 1]) for j in numbers]
        assert shares.combine(ours[-k:], k) == secret
        assert shares.combine(ours[:k - 1] + ours[-1:], k) == secret


def test_check_characters_of_random_codes_from_the_prose():
    from agent.crypto import paper

    prose = ProseRecoveryCode()
    for _ in range(50):
        code = paper.RecoveryCode(secrets.token_bytes(16), secrets.token_bytes(32), threshold=3,
                                  share_number=1 + secrets.randbelow(255))
        payload = code.payload()
        assert len(prose.base32(payload)) == 82
        assert [f"{g.replace(' ', '')} {c}" for g, c in paper.lines(code)] == prose.lines(payload)
        assert paper.qr_text(code) == prose.qr(payload)


def _small_kdf():
    from agent.crypto.kdf import KdfParams

    return KdfParams(memory_kib=8192, iterations=1)


def _prose_repository_id(objects: dict[str, bytes], master: bytes, code_repository_id: bytes) -> bytes | None:
    """Section 3.2.1, "Which repository id": the code's id, then each key file's, once each;
    the one the config opens with and names."""
    enc_key = blake3.blake3(master, derive_key_context="backupctl 2026-11 encryption key").digest()
    candidates = [code_repository_id] + [bytes.fromhex(json.loads(objects[name])["repository_id"])
                                         for name in sorted(objects) if name.startswith("keys/")]
    tried = set()
    for candidate in candidates:
        if candidate in tried:
            continue
        tried.add(candidate)
        try:
            plain = SpecReader.open_envelope(enc_key, objects["config"],
                                             b"backupctl\x00" + candidate + bytes((1,)))
        except Exception:
            continue
        if bytes.fromhex(json.loads(SpecReader.payload(plain))["repository_id"]) == candidate:
            return candidate
    return None


def test_a_sheet_of_one_disk_opens_another_disk_of_the_set():
    from agent.crypto.keys import MasterKey
    from agent.errors import WrongPassphrase
    from agent.repo.repository import Repository
    from agent.storage.memory import MemoryStorage

    text = _flat(_section("### 3.2.1"))
    assert "tries the `repository_id` of each key file in the repository" in text
    assert "the disks of a rotated set (section 2) share the master secret but each has its own repository id" in text
    master = MasterKey.generate()
    disk_a, disk_b, other = MemoryStorage(), MemoryStorage(), MemoryStorage()
    a = Repository.init(disk_a, PASSPHRASE, cipher="xchacha20-poly1305", compression_level=1,
                        kdf_params=_small_kdf(), master=master)
    b = Repository.init(disk_b, PASSPHRASE, cipher="aes-256-gcm", compression_level=1,
                        kdf_params=_small_kdf(), master=master)
    Repository.init(other, PASSPHRASE, cipher="xchacha20-poly1305", compression_level=1, kdf_params=_small_kdf())
    id_a, id_b = a.config.repository_id, b.config.repository_id
    assert id_a != id_b
    # The sheet printed from disk A names A's id; on disk B the key file gives B's.
    assert _prose_repository_id(dict(disk_b.objects), master.secret, id_a) == id_b
    assert _prose_repository_id(dict(disk_a.objects), master.secret, id_a) == id_a
    assert _prose_repository_id(dict(other.objects), master.secret, id_a) is None
    assert Repository.open_with_master(disk_b, master, id_a).config.repository_id == id_b
    with pytest.raises(WrongPassphrase):
        Repository.open_with_master(other, master, id_a)


# ---- section 5: the compression level a repository gets by default -------------------------------


def test_documented_default_compression_level_is_what_init_writes(tmp_path):
    from agent import config as config_module
    from agent.repo.repository import Repository
    from agent.storage.memory import MemoryStorage

    match = re.search(r"`compression_level`: default level `(\d+)`", _flat(_section("## 5. Compression byte")))
    assert match, "section 5 states the default level"
    documented = int(match.group(1))
    path = tmp_path / "config.toml"
    path.write_text('[agent]\nstate_dir = "/var/lib/backupctl"\n[source]\npaths = ["/srv/cabinet"]\n'
                    '[repositories.main]\nurl = "file:///mnt/backup/repo"\n'
                    '[key]\npassphrase_file = "/etc/backupctl/passphrase"\n', encoding="utf-8")
    (settings,) = config_module.load(str(path)).repositories
    assert settings.zstd_level == documented == config_module.RepositorySettings.compression_level
    storage = MemoryStorage()
    Repository.init(storage, PASSPHRASE, cipher=settings.cipher, compression_level=settings.zstd_level,
                    kdf_params=_small_kdf())
    assert Repository.open(storage, PASSPHRASE).config.compression_level == documented


# ---- section 7: tree blobs are as large as their folder's listing ---------------------------------


def _file_node(name: str, chunks: int):
    from agent.repo.tree import FILE, Node

    return Node(name=name.encode(), type=FILE, mode=0o640, uid=1000, gid=1000, user="cabinet", group="cabinet",
                mtime_ns=1_767_547_800_123_456_789, size=123_456, sha256=secrets.token_hex(32),
                chunks=[secrets.token_bytes(32) for _ in range(chunks)])


def test_tree_blob_size_per_entry_and_per_chunk_is_as_documented():
    from agent.repo.tree import encode_tree

    text = _flat(_section("## 7. Packs"))
    match = re.search(r"by about (\d+) bytes of JSON per entry plus the entry's name, and (\d+) more bytes per "
                      r"chunk of a file: about (\d+) bytes for a small file of one chunk", text)
    assert match, "section 7 states the size of a tree blob"
    per_entry, per_chunk, small_file = map(int, match.groups())
    empty = len(encode_tree([]))
    for name in ("a.txt", "lettre-dupont.odt", "2026-01-05 compte rendu de consultation.odt"):
        one = len(encode_tree([_file_node(name, 1)])) - empty
        assert abs(one - small_file) <= small_file * 0.15, (name, one)  # "about"
        assert abs(one - per_chunk - len(name) - per_entry) <= per_entry * 0.1, (name, one)
        assert len(encode_tree([_file_node(name, 3)])) - empty - one == 2 * per_chunk


def test_a_tree_blob_is_not_bounded_by_the_chunk_size(tmp_path):
    """Section 7: one folder is one tree blob, larger than 8 MiB if its listing is; the writer
    stores it and the reader written from the document reads it."""
    from agent.repo.chunker import MAX_SIZE
    from agent.repo.pack import BLOB_TREE
    from agent.repo.repository import Repository
    from agent.repo.tree import encode_tree
    from agent.storage.memory import MemoryStorage

    text = _flat(_section("## 7. Packs"))
    assert "(at most 8 MiB plus overhead)" not in text
    assert "MUST NOT rely on the 16 MiB target or on the 8 MiB of a chunk for trees" in text
    storage = MemoryStorage()
    repo = Repository.init(storage, PASSPHRASE, cipher="xchacha20-poly1305", compression_level=None,
                           kdf_params=_small_kdf())
    listing = encode_tree([_file_node(f"courrier-{i:06d}.odt", 1) for i in range(32_000)], repo.config.format_version)
    assert len(listing) > MAX_SIZE
    tree_id, _stored = repo.store_blob(BLOB_TREE, listing)
    repo.flush()
    reader = SpecReader(dict(storage.objects), PASSPHRASE)
    _pack, kind, _offset, length, raw_length = reader.index[tree_id]
    assert kind == 1 and raw_length == len(listing) and length > MAX_SIZE + 42
    assert reader.load_blob(tree_id) == listing


# ---- sections 9 and 10: the root's database dumps and the summary ---------------------------------


def test_root_tree_database_dumps_and_every_summary_member_are_documented(tmp_path):
    from agent.engine.backup import BackupEngine, BackupOptions
    from agent.engine.source.dumps import DatabaseSettings, Dump
    from agent.engine.walk import load_tree
    from agent.repo.repository import Repository
    from agent.storage.memory import MemoryStorage

    source = tmp_path / "srv" / "cabinet"
    source.mkdir(parents=True)
    (source / "lettre.txt").write_bytes(b"Bonjour\n")
    database = tmp_path / "agenda.db"
    with sqlite3.connect(database) as connection:
        connection.execute("create table rdv (jour text)")
    dumps = [Dump(DatabaseSettings(name="agenda", type="sqlite", path=str(database)), str(tmp_path / "state")),
             Dump(DatabaseSettings(name="perdue", type="sqlite", path=str(tmp_path / "absent.db")),
                  str(tmp_path / "state"))]
    storage = MemoryStorage()
    repo = Repository.init(storage, PASSPHRASE, cipher="xchacha20-poly1305", compression_level=1,
                           kdf_params=_small_kdf())
    report = run_locked(BackupEngine(repo, BackupOptions(paths=[str(source)], dumps=dumps)))
    snapshot = report.snapshot

    # Section 10: the summary's members are exactly the documented ones.
    documented = re.findall(r"^\| `summary\.(\w+)` \| ", _section("## 10. Snapshots"), re.M)
    assert len(documented) == len(set(documented))
    (stored,) = SpecReader(dict(storage.objects), PASSPHRASE).snapshots()
    assert set(stored["summary"]) == set(documented) == set(snapshot.summary)
    assert stored["summary"]["databases_dumped"] == ["/backupctl-databases/sqlite/agenda.sqlite"]
    assert stored["summary"]["database_failures"] == 1
    assert stored["summary"]["partial"] is True and stored["summary"]["warnings"] == 1

    # Section 9: the root holds the path to the source and the dumps' folder, as documented.
    text = _flat(_section("## 9. Trees"))
    assert "a node `backupctl-databases`" in text and "folders mode `0700`, files mode `0600`" in text
    root = {node.name: node for node in load_tree(repo, snapshot.tree)}
    top_of_source = os.fsencode(str(tmp_path)).split(b"/")[1]
    assert set(root) == {top_of_source, b"backupctl-databases"}
    folder = root[b"backupctl-databases"]
    (kind,) = load_tree(repo, folder.subtree)
    (dump,) = load_tree(repo, kind.subtree)
    assert (kind.name, dump.name) == (b"sqlite", b"agenda.sqlite")
    moment_ns = int(snapshot.time.timestamp()) * 10**9 + snapshot.time.microsecond * 1000
    for node, mode in ((folder, 0o700), (kind, 0o700), (dump, 0o600)):
        assert (node.mode, node.uid, node.gid) == (mode, os.getuid(), os.getgid())
        assert abs(node.mtime_ns - moment_ns) < 1000
    assert dump.hardlink is None and not dump.sparse


# ---- sections 9 and 14: what restore does, on snapshots made to show it ---------------------------


def _made_snapshot(nodes_of, *, time: dt.datetime | None = None):
    """A repository holding one snapshot whose root tree is `nodes_of(store)`, where
    store(content) -> chunk id; returns (storage, repository, snapshot)."""
    from agent.repo.pack import BLOB_DATA, BLOB_TREE
    from agent.repo.repository import Repository
    from agent.repo.snapshot import Snapshot
    from agent.repo.tree import encode_tree
    from agent.storage.memory import MemoryStorage

    storage = MemoryStorage()
    repo = Repository.init(storage, PASSPHRASE, cipher="xchacha20-poly1305", compression_level=1,
                           kdf_params=_small_kdf())
    root = repo.store_blob(BLOB_TREE, encode_tree(nodes_of(lambda data: repo.store_blob(BLOB_DATA, data)[0])))[0]
    repo.flush()
    snapshot = Snapshot(time=time or dt.datetime(2026, 1, 5, 2, tzinfo=dt.timezone.utc), host="cabinet",
                        user="root", paths=["/"], tree=root)
    repo.save_snapshot(snapshot)
    return storage, Repository.open(storage, PASSPHRASE), snapshot


def _file(name: bytes, contents: list[bytes], store, **extra):
    import hashlib

    from agent.repo.tree import FILE, Node

    whole = b"".join(contents)
    return Node(name=name, type=FILE, mode=extra.pop("mode", 0o644), uid=extra.pop("uid", 0), gid=extra.pop("gid", 0),
                mtime_ns=1_767_547_800_000_000_000, size=len(whole), sha256=hashlib.sha256(whole).hexdigest(),
                chunks=[store(c) for c in contents], **extra)


def test_hard_links_only_between_names_of_the_same_sha256(tmp_path):
    """Section 9: a later node of the same `hardlink` is a link to the first only when its
    sha256 is the first's; one that changed is a file of its own, and a third is compared
    with the first only. Restore and the section-14 reader agree."""
    from agent.engine.restore import RestoreEngine

    def nodes(store):
        return [_file(b"a.txt", [b"version one\n"], store, hardlink="64769:1234"),
                _file(b"b.txt", [b"version one\n"], store, hardlink="64769:1234"),
                _file(b"c.txt", [b"version two, longer\n"], store, hardlink="64769:1234"),
                _file(b"d.txt", [b"version two, longer\n"], store, hardlink="64769:1234")]

    storage, repo, snapshot = _made_snapshot(nodes)
    agent_out, reader_out = tmp_path / "agent", tmp_path / "reader"
    report = RestoreEngine(repo, repo.snapshots()[0], str(agent_out)).run()
    assert not report.failures and report.verified == 4 and report.hardlinks == 1
    reader_out.mkdir()
    reader = SpecReader(dict(storage.objects), PASSPHRASE)
    reader.restore(reader.latest(), bytes(reader_out))
    for out in (agent_out, reader_out):
        ino = {name: (out / name).stat().st_ino for name in ("a.txt", "b.txt", "c.txt", "d.txt")}
        assert ino["a.txt"] == ino["b.txt"] and len({ino["a.txt"], ino["c.txt"], ino["d.txt"]}) == 3, out
        assert (out / "b.txt").read_bytes() == b"version one\n"
        assert (out / "c.txt").read_bytes() == (out / "d.txt").read_bytes() == b"version two, longer\n"


def test_owner_first_then_mode_special_bits_only_when_asked(tmp_path):
    """Sections 9 and 14: as root, the owner is set before the mode (chown clears setuid and
    setgid); special bits are dropped unless asked for. Restore and the reader agree."""
    from agent.engine.restore import RestoreEngine
    from agent.repo.tree import DIR, Node

    assert os.geteuid() == 0, "this test runs as root (the suite does)"

    def nodes(store):
        return [_file(b"programme", [b"#!/bin/sh\necho bonjour\n"], store, mode=0o4755, uid=1234, gid=1234),
                _file(b"partage", [b"groupe\n"], store, mode=0o2775, uid=1234, gid=4321),
                Node(name=b"depot", type=DIR, mode=0o1777, uid=1234, gid=1234, mtime_ns=1_767_547_800_000_000_000)]

    storage, repo, _snapshot = _made_snapshot(nodes)
    expected = {"programme": (0o4755, 1234, 1234), "partage": (0o2775, 1234, 4321), "depot": (0o1777, 1234, 1234)}

    def modes(out: Path) -> dict:
        return {name: (stat.S_IMODE((out / name).lstat().st_mode), (out / name).lstat().st_uid,
                       (out / name).lstat().st_gid) for name in expected}

    kept = tmp_path / "kept"
    assert not RestoreEngine(repo, repo.snapshots()[0], str(kept), keep_special_bits=True).run().failures
    assert modes(kept) == expected
    dropped = tmp_path / "dropped"
    assert not RestoreEngine(repo, repo.snapshots()[0], str(dropped)).run().failures
    assert modes(dropped) == {name: (mode & 0o777, uid, gid) for name, (mode, uid, gid) in expected.items()}
    reader = SpecReader(dict(storage.objects), PASSPHRASE)
    for keep, out in ((True, tmp_path / "reader-kept"), (False, tmp_path / "reader-dropped")):
        out.mkdir()
        reader.restore(reader.latest(), bytes(out), keep_special_bits=keep)
        assert modes(out) == (expected if keep else modes(dropped)), out


def test_sparse_holes_are_the_zero_64_kib_blocks_of_each_chunk(tmp_path):
    """Section 9: holes are left where a whole 64 KiB block, counted from its chunk's start,
    is zero; a shorter zero remainder is written. The first data after the hole is where
    the prose says, not where "every all-zero chunk is a hole" would put it."""
    from agent.engine.restore import RestoreEngine

    match = re.search(r"in blocks of (\d+) KiB counted from \*\*the chunk's own start\*\*",
                      _flat(_section("## 9. Trees")))
    assert match, "section 9 states the restore's block"
    block = int(match.group(1)) * 1024
    head, zeros, tail = b"D" * 100, bytes(4 * block + 44 * 1024), b"T" * 50

    def nodes(store):
        return [_file(b"disque.img", [head, zeros, tail], store, sparse=True),
                _file(b"plein.img", [head, zeros, tail], store)]

    _storage, repo, _snapshot = _made_snapshot(nodes)
    out = tmp_path / "out"
    assert not RestoreEngine(repo, repo.snapshots()[0], str(out)).run().failures
    fs_block = os.statvfs(out).f_bsize
    skipped_from, written_from = len(head), len(head) + 4 * block  # the prose's skipped range
    with open(out / "disque.img", "rb") as handle:
        assert handle.read() == head + zeros + tail
        first_hole = -(-skipped_from // fs_block) * fs_block
        assert os.lseek(handle.fileno(), first_hole, os.SEEK_HOLE) == first_hole
        assert os.lseek(handle.fileno(), first_hole, os.SEEK_DATA) == written_from // fs_block * fs_block
    with open(out / "plein.img", "rb") as handle:  # not sparse: written in full
        assert os.lseek(handle.fileno(), 0, os.SEEK_HOLE) == len(head + zeros + tail)


# ---- section 10: "latest" is by instant, ties by id ----------------------------------------------


def test_latest_compares_instants_not_text_and_breaks_ties_by_id(tmp_path):
    from agent.cli.common import find_snapshot
    from agent.engine.browse import snapshot_at
    from agent.repo.repository import Repository
    from agent.repo.snapshot import Snapshot

    storage, repo, first = _made_snapshot(lambda store: [], time=dt.datetime.fromisoformat("2026-03-29T03:30:00+02:00"))
    tree = first.tree
    later = Snapshot(time=dt.datetime.fromisoformat("2026-03-29T02:00:00+00:00"), host="cabinet", user="root",
                     paths=["/"], tree=tree)
    # A time without an offset (backupctl never writes one) is read as UTC: 01:45Z, in between.
    naive = Snapshot(time=dt.datetime(2026, 3, 29, 1, 45), host="cabinet", user="root", paths=["/"], tree=tree)
    for snapshot in (later, naive):
        repo.save_snapshot(snapshot)
    assert "2026-03-29T03:30:00+02:00" > "2026-03-29T02:00:00+00:00"  # the text would say the other
    assert "`2026-03-29T03:30:00+02:00` is earlier than `2026-03-29T02:00:00+00:00`" in _flat(_doc())
    assert "reads a `time` without an offset (which it never writes) as UTC" in _flat(_doc())
    repo = Repository.open(storage, PASSPHRASE)
    assert [s.id for s in repo.snapshots()] == [first.id, naive.id, later.id]
    assert find_snapshot(repo, "latest").id == later.id
    reader = SpecReader(dict(storage.objects), PASSPHRASE)
    assert [s["time"] for s in reader.snapshots()] == \
        ["2026-03-29T03:30:00+02:00", "2026-03-29T01:45:00", "2026-03-29T02:00:00+00:00"]

    # The same instant written with two offsets: the greater id is the later, whatever the
    # order in which the storage lists them (here: the greater id listed first).
    twins = [Snapshot(time=dt.datetime.fromisoformat(text), host="cabinet", user="root", paths=["/"], tree=tree)
             for text in ("2026-03-29T05:00:00+02:00", "2026-03-29T03:00:00+00:00")]
    for twin in twins:
        repo.save_snapshot(twin)
    greater = max(twins, key=lambda s: s.id)
    names = sorted((n for n in storage.objects if n.startswith("snapshots/")), reverse=True)
    storage.objects = {**{n: d for n, d in storage.objects.items() if not n.startswith("snapshots/")},
                       **{n: storage.objects[n] for n in names}}
    repo = Repository.open(storage, PASSPHRASE)
    assert find_snapshot(repo, "latest").id == greater.id
    assert snapshot_at(repo.snapshots(), dt.datetime(2026, 3, 29, 4, tzinfo=dt.timezone.utc)).id == greater.id
    reader = SpecReader(dict(storage.objects), PASSPHRASE)
    assert [s["time"] for s in reader.snapshots()][:3] == \
        ["2026-03-29T03:30:00+02:00", "2026-03-29T01:45:00", "2026-03-29T02:00:00+00:00"]
    assert reader.latest()["time"] == greater.time.isoformat()
    assert reader.latest()["time"] != min(twins, key=lambda s: s.id).time.isoformat()


# ---- section 11: the chunker's release is pinned ------------------------------------------------


def test_pyfastcdc_is_pinned_to_the_release_the_format_names():
    from importlib.metadata import version

    named = re.search(r"as implemented by pyfastcdc (\d+\.\d+\.\d+)", _flat(_section("## 11. Chunking"))).group(1)
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    (pin,) = [d for d in dependencies if d.startswith("pyfastcdc")]
    assert pin == f"pyfastcdc=={named}"
    for lock in ("requirements.lock", "requirements-test.lock"):
        assert re.search(rf"^pyfastcdc=={re.escape(named)} ", (ROOT / lock).read_text(encoding="utf-8"), re.M), lock
    assert version("pyfastcdc") == named
    assert f"`pyfastcdc=={named}`" in _doc()

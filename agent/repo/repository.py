"""The repository facade: the only way engines read and write stored objects.

It enforces the write order that keeps every snapshot restorable: blobs go into packs,
packs are written and indexed, and only then may a snapshot that references them be
saved (`save_snapshot` refuses while anything is pending). An interrupted backup leaves
packs and index files that a rerun reuses, never a snapshot pointing at missing data.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
import socket
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import chain as _chain
from collections.abc import Callable, Mapping
from typing import Any, Iterable, Iterator, Sequence, TypeVar, cast

from agent import clock
from agent.crypto import aead, ids
from agent.crypto.kdf import DEFAULT_KDF_PARAMS, KdfParams
from agent.crypto.keys import MAX_KEY_FILE_SIZE, MAX_KEY_FILES_TRIED, KeyFile, MasterKey, wrap_master_key
from agent.errors import (
    ForeignObject,
    IntegrityError,
    KeyFileError,
    NoKeyFile,
    ObjectExists,
    ObjectNotFound,
    RepositoryExists,
    RepositoryNotFound,
    StorageError,
    TransientStorageError,
    UnsupportedFormat,
    WrongPassphrase,
)
from agent.repo import compression, layout
from agent.repo.cache import CacheRoot, MetadataCache
from agent.repo.chunker import Chunker, ChunkerParams
from agent.repo.index import BlobLocation, MasterIndex, PackEntries, decode_index, encode_index
from agent.repo.layout import ChunkId, IndexId, PackId, SnapshotId
from agent.repo.sealing import AAD_PREFIX, BlobSealer
from agent.repo.pack import (
    BLOB_TREE,
    TARGET_PACK_SIZE,
    TRAILER_PLAIN,
    TRAILER_PLAIN_V5,
    TRAILER_SIZE,
    TRAILER_SIZE_V5,
    PackBuilder,
    PackEntry,
    decode_header_entries,
    encode_header_entries,
    header_body,
    pad,
    split_pack,
    split_trailer,
    unpad,
)
from agent.repo.snapshot import Snapshot, chronological
from agent.repo.tree import check_tree_version, with_version
from agent.repo.versions import FORMAT_VERSION, PADDED_FORMAT, VERSIONED_FORMAT, check_version
from agent.storage.base import NetworkStorage, ObjectInfo, ObjectLocking, ServerClock, Storage

_Item = TypeVar("_Item")  # what _read_all reads each of
_Read = TypeVar("_Read")  # what a read gives

# FORMAT_VERSION (5), what each version adds and which structures say their own version:
# agent.repo.versions. The associated data's prefix lives with the blob sealer that
# worker processes share (agent.repo.sealing).
# Room in a pack's buffer beyond its target size: the last part added may be a whole
# chunk of the chunker's maximum size (8 MiB, padded by at most 1/16), sealed in place.
PACK_SLACK = 9 * 1024 * 1024
# An index file is written after this many packs, so an interrupted backup loses at
# most this much upload work (the packs themselves stay, prune collects them).
PACKS_PER_INDEX = 8
# A complete index (written by prune) is split into files of at most this many packs,
# so no single index object grows without bound (4096 packs: about 64 GiB of data).
PACKS_PER_INDEX_FILE = 4096

# The largest object of each kind read whole. Anyone who can add objects to the storage
# (object lock stops deleting, not adding) could otherwise plant a junk object of any size
# that every command reads into memory: a 1.2 GB index file cost every backup and restore
# 1.2 GB, a 3 GB one would have had each nightly backup killed by MemoryMax=3G. A larger
# object is refused from its size, unread, as a foreign object (exit 13); one under index/
# or snapshots/ is named among the damaged ones and the others are still used.
# Packs are never read whole except by `check --read-data` and repair (their headers are
# bounded by pack.MAX_HEADER_SIZE); blobs are read by range.
MAX_CONFIG_SIZE = 1024 * 1024        # a few hundred bytes of settings
MAX_LOCK_SIZE = 1024 * 1024          # a few hundred bytes: host, pid, user, time
MAX_SNAPSHOT_SIZE = 16 * 1024 * 1024  # paths, tags, excludes and a summary: KiB, not MiB
MAX_REPORT_SIZE = 64 * 1024 * 1024    # a restore-test report with its HTML (tens of KiB)
MAX_RESCUE_RECORD_SIZE = 64 * 1024    # a rescue kit's name, size and SHA-256
# An index file lists 45 bytes per blob. Backup writes one per PACKS_PER_INDEX packs and
# prune splits a complete index at PACKS_PER_INDEX_FILE packs and at
# MAX_INDEX_ENTRIES_PER_FILE blobs, so the largest file the writer can make is
# 8 packs x (16 MiB / 43-byte smallest envelope) x 45 bytes = under 150 MB even at the absurd
# limit of packs full of empty blobs (a real one: 8 packs of ~16 chunks, about 6 KB). The cap
# is well above that; a legitimate file near it would hold ~6 million blobs, which the agent
# could not keep in memory under MemoryMax anyway. docs/FORMAT.md section 8.
MAX_INDEX_ENTRIES_PER_FILE = 1_000_000
MAX_INDEX_FILE_SIZE = 256 * 1024 * 1024
# Packs are read whole only by `check --read-data` and `repair`. A pack closes past 16 MiB of
# blobs, so it exceeds that by one blob: a chunk (8 MiB at most) or a folder listing, whose
# size grows with the folder (about 200 bytes per entry: a million files in one folder is
# about 200 MiB). Far above both, and far below MemoryMax: an object planted in data/ that
# claims to be a 3 GiB pack is named, not read.
MAX_PACK_SIZE = 1024 * 1024 * 1024


@dataclass(frozen=True)
class StoredConfig:
    """The repository's own settings, stored encrypted in `config`."""

    repository_id: bytes
    cipher: str
    compression_level: int | None
    chunker: ChunkerParams
    created: str
    pack_target_size: int = TARGET_PACK_SIZE
    format_version: int = FORMAT_VERSION

    def encode(self) -> bytes:
        return json.dumps(
            {
                "format_version": self.format_version,
                "repository_id": self.repository_id.hex(),
                "created": self.created,
                "cipher": self.cipher,
                "compression": {"algorithm": "zstd" if self.compression_level is not None else "none",
                                "level": self.compression_level},
                "chunker": self.chunker.as_dict(),
                "pack_target_size": self.pack_target_size,
                "chunk_id": "blake3-keyed-256",
                "file_fingerprint": "sha256",
                "kdf": "argon2id",
            },
            indent=1,
        ).encode("utf-8")

    @classmethod
    def decode(cls, data: bytes) -> "StoredConfig":
        try:
            doc = json.loads(data)
            version = doc["format_version"]
            if version > FORMAT_VERSION:
                raise UnsupportedFormat(
                    f"repository format version {version} is newer than this program's ({FORMAT_VERSION})"
                )
            chunker = doc["chunker"]
            if not isinstance(version, int) or version < 1:
                raise IntegrityError(f"repository config has an invalid format version {version!r}")
            if doc["cipher"] not in aead.CIPHER_IDS:
                raise UnsupportedFormat(f"repository config names an unknown cipher {doc['cipher']!r}")
            if not 1024 <= int(doc["pack_target_size"]) <= 1 << 30:
                raise IntegrityError("repository config has an impossible pack_target_size")
            return cls(
                repository_id=bytes.fromhex(doc["repository_id"]),
                cipher=doc["cipher"],
                compression_level=doc["compression"]["level"],
                chunker=ChunkerParams(chunker["algorithm"], chunker["min_size"],
                                      chunker["avg_size"], chunker["max_size"]),
                created=doc["created"],
                pack_target_size=int(doc["pack_target_size"]),
                format_version=version,
            )
        except (ValueError, KeyError, TypeError, RecursionError, OverflowError) as exc:
            raise IntegrityError(f"repository config is malformed ({exc})") from None


class Repository:
    def __init__(self, storage: Storage, master: MasterKey, config: StoredConfig) -> None:
        self.storage = storage
        self.master = master
        self.config = config
        self._enc_key = master.encryption_key
        self._id_key = master.chunk_id_key
        self.index = MasterIndex()
        self._index_loaded = False
        self.index_problems: list[str] = []  # index files that could not be read
        self.snapshot_problems: list[str] = []  # snapshots `snapshots()` could not read
        self._write_lock = threading.Lock()
        self.sealer = BlobSealer(self._enc_key, self._id_key, config.repository_id, config.cipher,
                                 config.compression_level, config.format_version)
        self._builders: dict[int, PackBuilder] = {}
        self._pending_ids: set[bytes] = set()
        self._unindexed: dict[PackId, list[PackEntry]] = {}
        self.bytes_added = 0  # stored bytes written by this process (packs only)
        self.kdf_params: KdfParams | None = None  # of the key file the passphrase opened (reports)
        self.key_id: bytes | None = None  # that key file's id (None: opened with the recovery code)
        # The local copy of this repository's metadata (agent.repo.cache), for a network
        # repository only: on a local disk the cache would be a second copy on the same disk.
        self.cache: MetadataCache | None = None
        # Listings started while opening, alongside the key and config reads (one round
        # trip for all), each used once by the first reader that wants it (see _listing).
        self._prefetched: dict[str, Future[list[ObjectInfo]]] = {}
        self._opening_key: bytes | None = None  # the key file's bytes while opening (for the cache)

    # ---- creating and opening -------------------------------------------------

    @classmethod
    def init(
        cls,
        storage: Storage,
        passphrase: bytes,
        *,
        cipher: str,
        compression_level: int | None,
        kdf_params: KdfParams = DEFAULT_KDF_PARAMS,
        master: MasterKey | None = None,
        format_version: int = FORMAT_VERSION,
    ) -> "Repository":
        """A new repository; `master` lets several repositories share one master key
        (the disks of a rotated set), each with its own repository id. `format_version`
        is for tests that need an older layout; `init` always writes the current one."""
        if not 1 <= format_version <= FORMAT_VERSION:
            raise ValueError(f"no format version {format_version}")
        if storage.exists(layout.CONFIG) or any(True for _ in storage.list(layout.KEYS_PREFIX)):
            raise RepositoryExists(f"a repository already exists at {storage.describe()}")
        master = master or MasterKey.generate()
        repository_id = os.urandom(16)
        created = clock.now().isoformat()
        config = StoredConfig(repository_id, cipher, compression_level, ChunkerParams(), created,
                              format_version=format_version)
        repo = cls(storage, master, config)
        repo.kdf_params = kdf_params
        key_id = repo.key_id = os.urandom(16)
        storage.write(
            layout.key_name(key_id),
            wrap_master_key(master, passphrase, repository_id=repository_id, key_id=key_id,
                            params=kdf_params, created=created, host=socket.gethostname()),
            exclusive=True, random_name=True,
        )
        # Not a random name: another `init` may claim the same place. An object found there
        # is never taken for ours, nor deleted (the storage's "stored altered, write again").
        try:
            storage.write(layout.CONFIG, repo._seal_metadata(layout.KIND_CONFIG, b"", config.encode()),
                          exclusive=True)
        except ObjectExists:
            # Another `init` created the repository between our check and this write: it is
            # theirs. Our key file wraps another master secret for another repository id:
            # left there it would be tried, and fail, at every opening of theirs.
            try:
                storage.delete(layout.key_name(key_id))
            except StorageError:
                pass
            raise RepositoryExists(f"a repository was created at {storage.describe()} while this one "
                                   f"was being initialised (its config is another init's)") from None
        return repo

    @classmethod
    def open(cls, storage: Storage, passphrase: bytes, *, try_first: Iterable[bytes] = (),
             cache: CacheRoot | None = None) -> "Repository":
        """Open with a passphrase: the key files named in `try_first` (the key that opened
        this repository last time on this machine) first, then the others in name order,
        running Argon2id on at most MAX_KEY_FILES_TRIED of them (see that constant).

        Over a network (a storage that runs several requests at once) the listing of keys/,
        the config and the listing of snapshots/ are requested together: one round trip
        instead of three (_OpeningReads). With `cache` (a network repository's
        local metadata, agent.repo.cache) the key file of `try_first` is taken from its
        local copy: no key file is read at all. That copy is unwrapped by the passphrase
        like any and must still be listed in keys/ (a removed key opens nothing)."""
        try_first = list(try_first)
        reads = _OpeningReads(storage)
        try:
            repo = None
            if cache is not None:
                repo = cls._open_with_cached_key(storage, passphrase, try_first, cache, reads)
            if repo is None:
                repo = cls._open_with_key_files(storage, passphrase, try_first, reads)
                if cache is not None and repo.key_id is not None and repo._opening_key is not None:
                    repo.cache = cache.repository(repo.config.repository_id)
                    repo.cache.put(layout.key_name(repo.key_id), repo._opening_key)
            repo._opening_key = None
            if repo.cache is not None:  # a key file removed meanwhile leaves the cache too
                repo.cache.keep_only(layout.KEYS_PREFIX, reads.keys())
            repo._prefetched = reads.listings()
            return repo
        finally:
            reads.close()

    @classmethod
    def _open_with_cached_key(cls, storage: Storage, passphrase: bytes, try_first: list[bytes], cache: CacheRoot,
                              reads: "_OpeningReads") -> "Repository | None":
        """The repository opened with the cached copy of a key of `try_first`, or None (no
        copy, a damaged one, a passphrase it does not take, a key no longer listed): the key
        files in the storage then decide, exactly as without a cache."""
        for key_id in dict.fromkeys(try_first):
            name = layout.key_name(key_id)
            for repository_id, raw in cache.key_files(name):
                local = cache.repository(repository_id)
                try:
                    candidate = KeyFile.parse(raw, name=name)
                    if layout.key_name(candidate.key_id) != name or candidate.repository_id != repository_id:
                        raise KeyFileError(f"the cached copy of key file {name} names another key")
                except KeyFileError:
                    local.drop(name)
                    continue
                try:
                    master = candidate.unwrap(passphrase)  # Argon2id, while the opening reads are in flight
                except (WrongPassphrase, KeyFileError):
                    # Another passphrase (`key passwd` writes a new key file), or a copy
                    # altered here: the storage's key files are tried as without a cache.
                    continue
                if name not in reads.keys():  # removed by `key remove`: it must open nothing
                    local.drop(name)
                    continue
                repo = cls._with_config(storage, master, candidate, reads)
                repo.cache = local
                return repo
        return None

    @classmethod
    def _open_with_key_files(cls, storage: Storage, passphrase: bytes, try_first: list[bytes],
                             reads: "_OpeningReads") -> "Repository":
        sizes = reads.keys()
        key_names = sorted(sizes)
        if not key_names and not reads.config_exists():
            raise RepositoryNotFound(f"no repository at {storage.describe()}")
        if not key_names:
            raise NoKeyFile(f"the repository at {storage.describe()} has no key file (keys/ is empty)")
        listed = set(key_names)
        first = [name for name in dict.fromkeys(layout.key_name(k) for k in try_first) if name in listed]
        order = first + [name for name in key_names if name not in first]
        master = None
        key_file = None
        opening_key = None
        problems: list[WrongPassphrase | KeyFileError] = []
        tried = 0
        skipped = 0
        for position, name in enumerate(order):
            if tried == MAX_KEY_FILES_TRIED:
                skipped = len(order) - position
                break
            try:
                # Checks that cost no Argon2id come first: an object too large to be a key
                # file (refused from its listed size, unread), a malformed key file, or one
                # asking for more than backupctl ever writes, is refused for one small read
                # at most. Only a file that would run a derivation is read again until two
                # reads agree (see _agreed_read): junk files cost one read each.
                if sizes[name] > MAX_KEY_FILE_SIZE:
                    raise KeyFileError(f"key file {name} is {sizes[name]} bytes, larger than any key file "
                                       f"({MAX_KEY_FILE_SIZE}): not read")
                raw, candidate = _key_file(storage, name)
                agreed = _agreed_read(storage, name, first=raw) if layout.key_name(candidate.key_id) == name else raw
                if agreed != raw:
                    candidate = KeyFile.parse(agreed, name=name)
                if layout.key_name(candidate.key_id) != name:
                    raise KeyFileError(f"key file {name} does not carry its own id")
            except KeyFileError as exc:
                problems.append(exc)
                continue
            tried += 1
            try:
                master = candidate.unwrap(passphrase)
                key_file = candidate
                opening_key = agreed
                break
            except (WrongPassphrase, KeyFileError) as exc:
                problems.append(exc)
        if master is None or key_file is None:
            if skipped:
                raise WrongPassphrase(
                    f"the passphrase opens none of the {tried} key files tried at {storage.describe()}; "
                    f"{skipped} more were not tried (at most {MAX_KEY_FILES_TRIED} are tried per opening, "
                    f"so that key files added to the storage cannot stall every command)",
                    hint="open once with the recovery sheet (`backupctl recover --add-key`): this machine "
                         "then tries its own key first; or remove unused keys (`backupctl key remove`)")
            damaged = [p for p in problems if isinstance(p, KeyFileError)]
            if damaged and len(damaged) == len(problems):
                # Not a passphrase problem: no key file could even be tried.
                first_problem = damaged[0]
                raise KeyFileError(
                    f"{first_problem}" + (f" (and {len(damaged) - 1} other key file(s) are unusable too)"
                                          if len(damaged) > 1 else "")
                    + f": the repository at {storage.describe()} has no usable key file")
            # A wrapped key that was altered fails its authentication exactly as a wrong
            # passphrase does: the message says so rather than guess.
            also = (f"; {len(damaged)} other key file(s) are damaged and could not be tried ({damaged[0]})"
                    if damaged else "")
            raise WrongPassphrase(f"the passphrase opens none of the {len(key_names)} key(s) "
                                  f"of the repository at {storage.describe()} (wrong passphrase, "
                                  f"or a key file altered in storage){also}")
        repo = cls._with_config(storage, master, key_file, reads)
        repo._opening_key = opening_key
        return repo

    @classmethod
    def _with_config(cls, storage: Storage, master: MasterKey, key_file: KeyFile,
                     reads: "_OpeningReads") -> "Repository":
        """The repository whose config the master key opens (read from the storage each
        time: unlike the objects the cache keeps, it may be rewritten by an upgrade)."""
        try:
            raw_config = reads.config()
        except ObjectNotFound:
            raise IntegrityError(f"repository at {storage.describe()} has keys but no config object") from None
        probe = cls(storage, master, StoredConfig(key_file.repository_id, "xchacha20-poly1305", None,
                                                  ChunkerParams(), ""))
        try:
            plain_config = probe._open_metadata(layout.KIND_CONFIG, b"", raw_config, what="config")
        except IntegrityError:
            plain_config = probe._read_metadata(layout.CONFIG, layout.KIND_CONFIG, b"", MAX_CONFIG_SIZE)
        config = StoredConfig.decode(plain_config)
        if config.repository_id != key_file.repository_id:
            raise IntegrityError("the config object belongs to another repository than the key")
        repo = cls(storage, master, config)
        repo.kdf_params = key_file.params
        repo.key_id = key_file.key_id
        return repo

    @classmethod
    def open_with_master(cls, storage: Storage, master: MasterKey, repository_id: bytes) -> "Repository":
        """Open with the master secret itself (from the recovery sheet), no passphrase and
        no key file needed. The repository id of the sheet comes first; the ids named by
        the key files in storage are tried next (the disks of a set share one master
        secret, each with its own id). The authenticated config decides: a wrong secret
        or a sheet of another repository opens nothing."""
        if not storage.exists(layout.CONFIG):
            raise RepositoryNotFound(f"no repository at {storage.describe()}")
        raw_config = storage.read(layout.CONFIG, max_size=MAX_CONFIG_SIZE)
        # The sheet's own id is tried before any key file is read: planted key files then
        # cost the usual recovery nothing. Only for another disk of a set (its own id, the
        # same secret) are the key files read, each once and bounded in size.
        tried: set[bytes] = set()
        for candidate in _chain([repository_id], _key_repository_ids(storage)):
            if candidate in tried:
                continue
            tried.add(candidate)
            probe = cls(storage, master, StoredConfig(candidate, "xchacha20-poly1305", None, ChunkerParams(), ""))
            try:
                plain = probe._open_metadata(layout.KIND_CONFIG, b"", raw_config, what="config")
            except IntegrityError:
                continue
            config = StoredConfig.decode(plain)
            if config.repository_id == candidate:
                return cls(storage, master, config)
        raise WrongPassphrase(f"the recovery code does not open the repository at {storage.describe()}: "
                              f"it belongs to another repository, or a share is missing or wrong",
                              hint="check --url against the sheet, and that every share is the one of this "
                                   "repository (each line's check characters were verified)")

    # ---- reading through the local cache, listing, reading at once ----------------

    def _listing(self, prefix: str, *, fresh: bool = False) -> list[ObjectInfo]:
        """storage.list(prefix); a listing started earlier (while opening, or by a lock being
        taken) is used instead, once, unless `fresh`. Anything this process writes or
        deletes, and any lock it takes, drops those early listings (forget_listings)."""
        future = self._prefetched.pop(prefix, None)
        if future is not None and not fresh:
            try:
                return future.result()
            except StorageError:
                pass  # listed again below, where its error is said as usual
        return _listed(self.storage, prefix)

    def forget_listings(self) -> None:
        """Drop the listings started early: what is read from now on is listed anew. A lock
        calls it before it is written (a prune, a backup must see every snapshot saved
        before their lock, not the listing made when the repository was opened)."""
        self._prefetched.clear()

    def expect_listing(self, prefix: str, future: Future[list[ObjectInfo]]) -> None:
        """The next listing of `prefix` is `future`'s, which someone else completes (a
        restore's lock lists index/ as soon as it is written: agent.repo.lock)."""
        self._prefetched[prefix] = future

    def _read_all(self, read: Callable[[_Item], _Read], items: list[_Item]) -> list[_Read]:
        """[read(item) for item in items], as many at once as the storage runs requests:
        over a network the snapshots and index files come in one round trip, not one each."""
        workers = min(concurrency(self.storage), len(items))
        if workers <= 1:
            return [read(item) for item in items]
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="read") as pool:
            return list(pool.map(read, items))

    def _read_cached(self, name: str, max_size: int, open_: Callable[[bytes], bytes]) -> bytes:
        """open_(the object's bytes): from the local cache when it holds `name`, else from the
        storage (read again while it does not verify, see _verified_read) and then cached.
        A cached copy goes through the same open_ as one from the storage: a damaged or
        forged one fails it, is dropped and read from the storage; it is never fatal."""
        if self.cache is not None:
            cached = self.cache.get(name)
            if cached is not None:
                try:
                    return open_(cached)
                except IntegrityError:
                    self.cache.drop(name)
        kept: list[bytes] = []

        def read() -> bytes:
            data = self.storage.read(name, max_size=max_size)
            kept[:] = [data]
            return data

        plain = _verified_read(read, open_)
        if self.cache is not None:
            self.cache.put(name, kept[0])
        return plain

    def _cached_tree(self, chunk_id: bytes, location: BlobLocation) -> bytes | None:
        """A folder listing from the local cache, checked as one read from its pack (AEAD
        bound to its chunk id, the id recomputed from the plaintext), or None."""
        if self.cache is None or location.kind != BLOB_TREE:
            return None
        sealed = self.cache.get_tree(chunk_id)
        if sealed is None:
            return None
        try:
            return self.decode_blob(chunk_id, location.kind, sealed, location.raw_length,
                                    pack_name="the local cache", verify_id=True)
        except IntegrityError:
            self.cache.drop(MetadataCache.tree_name(chunk_id))
            return None

    def _keep_tree(self, chunk_id: bytes, location: BlobLocation, sealed: bytes | memoryview) -> None:
        if self.cache is not None and location.kind == BLOB_TREE:
            self.cache.put_tree(chunk_id, sealed)

    # ---- envelopes ------------------------------------------------------------

    def _aad(self, kind: int, object_id: bytes) -> bytes:
        return AAD_PREFIX + self.config.repository_id + bytes((kind,)) + object_id

    def _seal_metadata(self, kind: int, object_id: bytes, plain: bytes) -> bytes:
        level = self.config.compression_level
        payload = compression.compress(plain, level if level is not None else compression.DEFAULT_LEVEL)
        return aead.seal(self._enc_key, payload, self._aad(kind, object_id), cipher=self.config.cipher)

    def _read_metadata(self, name: str, kind: int, object_id: bytes, max_size: int) -> bytes:
        """Read and open a metadata object of at most `max_size` bytes (see `_verified_read`)."""
        return _verified_read(lambda: self.storage.read(name, max_size=max_size),
                              lambda envelope: self._open_metadata(kind, object_id, envelope, what=name))

    def _open_metadata(self, kind: int, object_id: bytes, envelope: bytes, *, what: str) -> bytes:
        payload = aead.open_envelope(self._enc_key, envelope, self._aad(kind, object_id), what=what)
        cipher = aead.envelope_cipher(envelope)
        # The config is read before the repository's cipher is known; everything else
        # must use the cipher the config names (no silent downgrade between the two).
        if kind != layout.KIND_CONFIG and cipher != self.config.cipher:
            raise IntegrityError(f"{what}: encrypted with {cipher}, repository uses {self.config.cipher}")
        return compression.decompress(payload, expected_size=None, what=what)

    # ---- chunking -------------------------------------------------------------

    @property
    def padded(self) -> bool:
        """Whether this repository uses the padded layout of versions 4 and 5 (docs/FORMAT.md
        section 7.2)."""
        return self.config.format_version >= PADDED_FORMAT

    @property
    def versioned(self) -> bool:
        """Whether every structure of this repository says its own format version (version 5,
        docs/FORMAT.md section 7.3)."""
        return self.config.format_version >= VERSIONED_FORMAT

    def new_chunker(self) -> Chunker:
        """A chunker keyed for this repository; not thread-safe, one per reader."""
        if self.padded:
            return Chunker(self.config.chunker, gear=ids.gear_table(self.master.secret))
        return Chunker(self.config.chunker, self.master.chunker_seed)

    def chunk_id(self, data: bytes | memoryview) -> ChunkId:
        return self.sealer.chunk_id(data)

    # ---- index ----------------------------------------------------------------

    def load_index(self, *, keep_missing_packs: bool = False, reload: bool = False,
                   for_reading: bool = False) -> None:
        """Read every index file into memory (once per process).

        By default a pack listed in an index but absent from the storage is left out, so
        its blobs count as absent and the next backup stores them again instead of
        pointing new snapshots at missing data. `check` keeps such packs
        (`keep_missing_packs=True`), after the existing ones, so it can name what they
        held while a blob stored again elsewhere still resolves to its existing copy.
        `reload=True` reads the storage again even if the index was loaded before.
        `for_reading=True` (restore) over a network: data/ is not listed. A pack that is
        missing is then an error when its blobs are read, which a restore reports as it
        reports damage; listing data/ cost a round trip per thousand packs for nothing.
        On a local disk the listing is cheap, and kept.

        Over a network the index files are read as many at once as the storage allows,
        and a network repository's index files come from its local cache (agent.repo.cache).
        """
        if self._index_loaded and not reload:
            return
        self.index = MasterIndex()
        self.index_problems = []
        listed = [i for i in (layout.index_id_from_name(info.name)
                              for info in self._listing(layout.INDEX_PREFIX, fresh=reload)) if i is not None]
        if self.cache is not None:
            self.cache.keep_only(layout.INDEX_PREFIX, [layout.index_name(i) for i in listed])

        def read(index_id: IndexId) -> tuple[dict[PackId, PackEntries], list[IndexId]] | Exception:
            try:
                return self.read_index_file(index_id)
            except (IntegrityError, ObjectNotFound) as exc:
                # One damaged index must not stop every restore: the blobs it listed are
                # then "missing", and restore and check name the files that need them.
                return exc

        files = {}
        for index_id, result in zip(listed, self._read_all(read, listed), strict=True):  # one result each
            if isinstance(result, Exception):
                self.index_problems.append(str(result))
            else:
                files[index_id] = result
        superseded = {old for _packs, replaced in files.values() for old in replaced}
        current = [packs for index_id, (packs, _replaced) in files.items() if index_id not in superseded]
        everything_stored = for_reading and concurrency(self.storage) > 1
        stored = set() if everything_stored else {layout.pack_id_from_name(name) for name in self.list_pack_names()}
        missing = []
        for packs in current:
            for pack_id, entries in packs.items():
                if everything_stored or pack_id in stored:
                    self.index.add_pack(pack_id, entries)
                else:
                    missing.append((pack_id, entries))
        for pack_id, entries in missing:
            if keep_missing_packs:
                self.index.add_pack(pack_id, entries)
            else:
                self.index_problems.append(f"pack {layout.pack_name(pack_id)} is listed in an index "
                                           f"but missing from the storage")
        if self.cache is not None and not self.index_problems:  # listings no index holds any more: gone
            self.cache.trim_trees(lambda chunk_id: chunk_id in self.index)
        self._index_loaded = True

    def read_index_file(self, index_id: IndexId) -> tuple[dict[PackId, PackEntries], list[IndexId]]:
        name = layout.index_name(index_id)
        if self.padded:
            plain = self._read_cached(name, MAX_INDEX_FILE_SIZE,
                                      lambda envelope: self._open_padded_index(index_id, envelope, what=name))
        else:
            plain = self._read_cached(name, MAX_INDEX_FILE_SIZE, lambda envelope: self._open_metadata(
                layout.KIND_INDEX, index_id, envelope, what=name))
        return decode_index(plain, what=name, format_version=self.config.format_version)

    def _open_padded_index(self, index_id: IndexId, envelope: bytes, *, what: str) -> bytes:
        """Versions 4 and 5: an index file is an ordinary envelope (clear `01` and cipher bytes,
        section 4) whose plaintext is padded, so its size does not count the blobs."""
        plain = aead.open_envelope(self._enc_key, envelope, self._aad(layout.KIND_INDEX_V4, index_id), what=what)
        if aead.envelope_cipher(envelope) != self.config.cipher:
            raise IntegrityError(f"{what}: encrypted with {aead.envelope_cipher(envelope)}, "
                                 f"repository uses {self.config.cipher}")
        return compression.decompress(unpad(plain, what=what), expected_size=None, what=what)

    def list_index_ids(self) -> list[IndexId]:
        found = (layout.index_id_from_name(i.name) for i in self.storage.list(layout.INDEX_PREFIX))
        return [i for i in found if i is not None]

    def has_blob(self, chunk_id: bytes) -> bool:
        return chunk_id in self.index or chunk_id in self._pending_ids

    # ---- writing blobs ----------------------------------------------------------

    def store_blob(self, kind: int, data: bytes | memoryview, chunk_id: ChunkId | None = None) -> tuple[ChunkId, int]:
        """Store a blob unless known; returns (id, stored bytes added). Thread-safe.

        Compression and encryption run outside the lock (both release the GIL), so
        several threads keep the cores busy; only the pack bookkeeping is serialized.
        """
        if kind == BLOB_TREE and self.versioned:
            # Every tree this repository stores says its format version, whoever encoded it
            # (docs/FORMAT.md section 9); its id is that of the document as stored.
            tree = bytes(data)  # a tree is encoded as bytes: the same object, no copy
            stamped = with_version(tree, self.config.format_version)
            if stamped is not tree and chunk_id is not None:
                raise ValueError("a tree's id is that of its document with its format version")
            data = stamped
        if chunk_id is None:
            chunk_id = self.chunk_id(data)
        with self._write_lock:
            if self.has_blob(chunk_id):
                return chunk_id, 0
            self._pending_ids.add(chunk_id)
        return chunk_id, self._seal_into_pack(kind, chunk_id, data)

    def _seal_into_pack(self, kind: int, chunk_id: ChunkId, data: bytes | memoryview) -> int:
        """Compress, encrypt and append a blob already marked pending; write the pack
        when full. Returns the stored size. Compression and encryption run outside the
        lock (both release the GIL), encryption straight into the pack's buffer."""
        builder = None
        try:
            plaintext = self.sealer.blob_plaintext(data)
            length = self.sealer.part_length(len(plaintext))
            with self._write_lock:
                builder = self._open_builder(kind)
                place = builder.reserve(kind, chunk_id, length, len(data))
                if builder.is_full(self.config.pack_target_size):
                    builder.closed = True
                    del self._builders[kind]
            try:
                self.sealer.seal_blob_into(kind, chunk_id, plaintext, place)
            finally:
                place.release()
        except BaseException:
            with self._write_lock:
                self._pending_ids.discard(chunk_id)
                if builder is not None:
                    # Its place holds no sealed part: that pack is never written, and its
                    # blobs are no longer pending, so they are stored again if met again.
                    builder.failed = True
                    builder.done_writing()
                    if self._builders.get(kind) is builder:
                        del self._builders[kind]
                    for entry in builder.entries:
                        self._pending_ids.discard(entry.chunk_id)
            raise
        with self._write_lock:
            builder.done_writing()
            ready = builder.closed and not builder.writers and not builder.failed
        if ready:
            self._write_pack(builder)
        return length

    def _open_builder(self, kind: int) -> PackBuilder:
        """The pack being filled with blobs of this kind (under the write lock)."""
        builder = self._builders.get(kind)
        if builder is None:
            builder = self._builders[kind] = PackBuilder(self.config.pack_target_size + PACK_SLACK)
        return builder

    def store_sealed_blobs(self, kind: int, parts: list[tuple[bytes, bytes | memoryview, int]]) -> int:
        """Add blobs that a worker process sealed with this repository's `sealer` (same id,
        compression and envelope as `store_blob`), as (chunk id, part, plaintext length),
        leaving out those already known; returns the stored bytes added. Thread-safe."""
        added = 0
        full = []
        with self._write_lock:
            for chunk_id, part, raw_length in parts:
                if self.has_blob(chunk_id):
                    continue
                builder = self._open_builder(kind)
                builder.add(kind, ChunkId(chunk_id), part, raw_length)
                self._pending_ids.add(chunk_id)
                added += len(part)
                if builder.is_full(self.config.pack_target_size):
                    builder.closed = True
                    del self._builders[kind]
                    if not builder.writers:
                        full.append(builder)
        for builder in full:
            self._write_pack(builder)
        return added

    def _blob_kind(self, blob_type: int) -> int:
        return self.sealer.blob_kind(blob_type)

    def _seal_part(self, kind: int, object_id: bytes, payload: bytes) -> bytes | memoryview:
        return self.sealer.seal_part(kind, object_id, payload)

    def _open_part(self, kind: int, object_id: bytes, stored: bytes | memoryview, *, what: str) -> bytes:
        """The payload (compression byte and data) of a part sealed by `_seal_part`."""
        if not self.padded:
            payload = aead.open_envelope(self._enc_key, stored, self._aad(kind, object_id), what=what)
            if aead.envelope_cipher(stored) != self.config.cipher:
                raise IntegrityError(f"{what}: encrypted with {aead.envelope_cipher(stored)}, "
                                     f"the repository uses {self.config.cipher}")
            return payload
        # One copy (join takes the pack's memoryview), not two (bytes(), then +): on a
        # restore this runs under the interpreter lock for every byte restored.
        envelope = b"".join((self._implied_header, stored))
        return unpad(aead.open_envelope(self._enc_key, envelope, self._aad(kind, object_id), what=what), what=what)

    @property
    def _implied_header(self) -> bytes:
        return bytes((aead.ENVELOPE_VERSION, aead.CIPHER_IDS[self.config.cipher]))

    def _write_pack(self, builder: PackBuilder) -> None:
        header_payload = compression.compress(encode_header_entries(builder.entries), compression.DEFAULT_LEVEL)
        if self.padded:
            header = bytes(self._seal_part(layout.KIND_PACK_HEADER_V4, b"", header_payload))
            # The trailer's plaintext is its 4 bytes alone (version 5: 8, the format version
            # first): no compression byte, no padding.
            trailer_plain = (TRAILER_PLAIN_V5.pack(self.config.format_version, len(header)) if self.versioned
                             else TRAILER_PLAIN.pack(len(header)))
            trailer = aead.seal(self._enc_key, trailer_plain,
                                self._aad(layout.KIND_PACK_TRAILER_V4, b""), cipher=self.config.cipher)[2:]
            pack_id, data = builder.finish_v4(header, trailer)
        else:
            header = aead.seal(self._enc_key, header_payload, self._aad(layout.KIND_PACK_HEADER, b""),
                               cipher=self.config.cipher)
            pack_id, data = builder.finish(header)
        # A memoryview of the pack's buffer is written without a copy: every storage takes any
        # buffer, though Storage.write is declared for bytes.
        self.storage.write(layout.pack_name(pack_id), cast(bytes, data))
        if self.cache is not None:  # the folder listings just written, for the next restore
            view = memoryview(data)
            for entry in builder.entries:
                if entry.kind == BLOB_TREE:
                    self.cache.put_tree(entry.chunk_id, view[entry.offset:entry.offset + entry.length])
        index_now = None
        with self._write_lock:
            self.bytes_added += len(data)
            self.index.add_pack(pack_id, builder.entries)
            for entry in builder.entries:
                self._pending_ids.discard(entry.chunk_id)
            self._unindexed[pack_id] = builder.entries
            if len(self._unindexed) >= PACKS_PER_INDEX:
                index_now, self._unindexed = self._unindexed, {}
        if index_now:
            self._write_index(index_now)

    def _write_index(self, packs: Mapping[PackId, Sequence[PackEntry]], superseded: Iterable[IndexId] = ()) -> IndexId:
        index_id = IndexId(os.urandom(16))
        plain = encode_index(packs, superseded, format_version=self.config.format_version)
        if self.padded:
            level = self.config.compression_level
            payload = compression.compress(plain, level if level is not None else compression.DEFAULT_LEVEL)
            envelope = aead.seal(self._enc_key, pad(payload), self._aad(layout.KIND_INDEX_V4, index_id),
                                 cipher=self.config.cipher)
        else:
            envelope = self._seal_metadata(layout.KIND_INDEX, index_id, plain)
        self.forget_listings()
        self.storage.write(layout.index_name(index_id), envelope)
        if self.cache is not None:  # a backup fills the cache as it writes
            self.cache.put(layout.index_name(index_id), envelope)
        return index_id

    def flush(self) -> None:
        """Write every partly filled pack, then an index for all unindexed packs."""
        with self._write_lock:
            builders = [b for b in self._builders.values() if b.entries and not b.failed]
            self._builders = {}
        for builder in builders:
            self._write_pack(builder)
        with self._write_lock:
            pending, self._unindexed = self._unindexed, {}
        if pending:
            self._write_index(pending)

    # ---- reading blobs ----------------------------------------------------------

    def locate(self, chunk_id: bytes) -> BlobLocation | None:
        return self.index.lookup(ChunkId(chunk_id))

    def load_blob(self, chunk_id: bytes) -> bytes:
        location = self.index.lookup(ChunkId(chunk_id))
        if location is None:
            raise IntegrityError(f"chunk {chunk_id.hex()[:16]} is not in any index (data missing)")
        cached = self._cached_tree(chunk_id, location)
        if cached is not None:
            return cached
        name = layout.pack_name(location.pack_id)
        read: list[bytes] = []

        def read_range() -> bytes:
            read[:] = [self.storage.read_range(name, location.offset, location.length)]
            return read[0]

        data = _verified_read(read_range, lambda envelope: self.decode_blob(chunk_id, location.kind, envelope,
                                                                            location.raw_length, pack_name=name))
        self._keep_tree(chunk_id, location, read[0])
        return data

    def load_blobs(self, chunk_ids: Iterable[bytes]) -> dict[bytes, bytes | Exception]:
        """Several blobs at once: the ones that are neighbours in a pack (at most
        NEAR_BLOBS_GAP apart, NEAR_BLOBS_RANGE in all) come in one ranged read. Over a
        WAN each read is a round trip: a snapshot's folder listings read one by one cost
        one per folder (about 200 round trips, 10 s at 50 ms, for 20,000 letters in
        200 folders), read this way about one per level of the tree. Each blob is
        checked as load_blob checks it (and read again alone before being declared
        damaged); a blob that cannot be had maps to its exception."""
        out: dict[bytes, bytes | Exception] = {}
        by_pack: dict[PackId, list[tuple[int, bytes, BlobLocation]]] = {}
        for chunk_id in dict.fromkeys(chunk_ids):
            location = self.index.lookup(ChunkId(chunk_id))
            if location is None:
                out[chunk_id] = IntegrityError(f"chunk {chunk_id.hex()[:16]} is not in any index (data missing)")
                continue
            cached = self._cached_tree(chunk_id, location)
            if cached is not None:
                out[chunk_id] = cached
                continue
            by_pack.setdefault(location.pack_id, []).append((location.offset, chunk_id, location))
        for pack_id, items in by_pack.items():
            items.sort(key=lambda item: item[0])
            name = layout.pack_name(pack_id)
            group: list[tuple[int, bytes, BlobLocation]] = []
            for item in items:
                if group:
                    first, last = group[0][2], group[-1][2]
                    if (item[0] - (last.offset + last.length) <= NEAR_BLOBS_GAP
                            and item[0] + item[2].length - first.offset <= NEAR_BLOBS_RANGE):
                        group.append(item)
                        continue
                    self._load_near(name, group, out)
                group = [item]
            if group:
                self._load_near(name, group, out)
        return out

    def _load_near(self, name: str, group: list[tuple[int, bytes, BlobLocation]],
                   out: dict[bytes, bytes | Exception]) -> None:
        start = group[0][2].offset
        end = group[-1][2].offset + group[-1][2].length
        try:
            data: bytes | None = self.storage.read_range(name, start, end - start)
        except StorageError:
            data = None  # each blob read alone below: its own error, its own retries
        for _offset, chunk_id, location in group:
            try:
                if data is None:
                    raise IntegrityError("read again alone")
                envelope = memoryview(data)[location.offset - start : location.offset - start + location.length]
                out[chunk_id] = self.decode_blob(chunk_id, location.kind, envelope, location.raw_length,
                                                 pack_name=name)
                self._keep_tree(chunk_id, location, envelope)
            except IntegrityError:
                try:
                    out[chunk_id] = self.load_blob(chunk_id)
                except (IntegrityError, StorageError) as exc:
                    out[chunk_id] = exc

    def decode_blob(self, chunk_id: bytes, kind: int, envelope: bytes | memoryview, raw_length: int, *, pack_name: str,
                    verify_id: bool = True) -> bytes:
        """Decrypt and decompress one blob. The AEAD tag already binds it to `chunk_id`;
        recomputing the keyed BLAKE3 id also catches a writer that sealed the wrong
        plaintext. Restore skips that (`verify_id=False`) because it checks every
        file's SHA-256, which catches the same thing; check keeps it."""
        what = f"chunk {chunk_id.hex()[:16]} in pack {pack_name}"
        payload = self._open_part(self._blob_kind(kind), chunk_id, envelope, what=what)
        data = compression.decompress(payload, expected_size=raw_length, what=what)
        if verify_id and self.chunk_id(data) != chunk_id:
            raise IntegrityError(f"{what}: content does not match its id")
        if kind == BLOB_TREE:
            check_tree_version(data, self.config.format_version, what=f"tree {chunk_id.hex()[:16]} in pack {pack_name}")
        return data

    def read_pack(self, pack_id: PackId) -> tuple[bytes, list[PackEntry]]:
        """Read a whole pack, verify its SHA-256 name and decrypt its header."""
        name = layout.pack_name(pack_id)

        def verified(data: bytes) -> bytes:
            if hashlib.sha256(data).digest() != pack_id:
                raise IntegrityError(f"pack {name}: SHA-256 of its bytes does not match its name")
            return data

        data = _verified_read(lambda: self.storage.read(name, max_size=MAX_PACK_SIZE), verified)
        return data, self.pack_header_entries(data, name)

    def pack_header_entries(self, data: bytes, name: str) -> list[PackEntry]:
        """The blob list of a pack's bytes (its authenticated header); repair also uses it
        on a pack whose bytes no longer match its name, to find the blobs still intact."""
        if self.padded:
            trailer_format, trailer_size = ((TRAILER_PLAIN_V5, TRAILER_SIZE_V5) if self.versioned
                                            else (TRAILER_PLAIN, TRAILER_SIZE))
            trailer = self._implied_header + split_trailer(data, what=name, trailer_size=trailer_size)
            opened = aead.open_envelope(self._enc_key, trailer, self._aad(layout.KIND_PACK_TRAILER_V4, b""),
                                        what=f"{name} trailer")
            if len(opened) != trailer_format.size:
                raise IntegrityError(f"{name} trailer: {len(opened)} bytes instead of {trailer_format.size}")
            if self.versioned:
                pack_version, header_length = TRAILER_PLAIN_V5.unpack(opened)
                check_version(pack_version, self.config.format_version, what=f"{name} trailer")
            else:
                (header_length,) = TRAILER_PLAIN.unpack(opened)
            header, _start = header_body(data, header_length, what=name, trailer_size=trailer_size)
            payload = self._open_part(layout.KIND_PACK_HEADER_V4, b"", header, what=f"{name} header")
        else:  # versions 1-3, read exactly as before
            header, _start = split_pack(data, what=name)
            payload = aead.open_envelope(self._enc_key, header, self._aad(layout.KIND_PACK_HEADER, b""),
                                         what=f"{name} header")
        plain = compression.decompress(payload, expected_size=None, what=f"{name} header")
        return decode_header_entries(plain, what=name)

    def adopt_pack(self, pack_id: PackId) -> int:
        """Index a pack that no index lists (left complete by an interrupted backup): its
        SHA-256 checked against its name, its blob list taken from its own authenticated
        header (as repair does), listed in the next index file this process writes (flush).
        A blob already indexed in another pack keeps that location; the pack's copy is then
        unused, and prune frees it. Returns the number of blobs it holds."""
        _data, entries = self.read_pack(pack_id)
        with self._write_lock:
            self.index.add_pack(pack_id, entries)
            self._unindexed[pack_id] = entries
        return len(entries)

    def list_pack_names(self) -> dict[str, int]:
        return {info.name: info.size for info in self.storage.list(layout.DATA_PREFIX)}

    # ---- snapshots ----------------------------------------------------------------

    def save_snapshot(self, snapshot: Snapshot) -> SnapshotId:
        with self._write_lock:
            if self._unindexed or any(b.entries for b in self._builders.values()) or self._pending_ids:
                raise RuntimeError("save_snapshot called before flush(): data would be unreferenced")
        snapshot_id = SnapshotId(os.urandom(16))
        sealed = self._seal_metadata(layout.KIND_SNAPSHOT, snapshot_id, snapshot.encode(self.config.format_version))
        self.forget_listings()
        self.storage.write(layout.snapshot_name(snapshot_id), sealed, exclusive=True, random_name=True)
        if self.cache is not None:
            self.cache.put(layout.snapshot_name(snapshot_id), sealed)
        snapshot.id = snapshot_id
        return snapshot_id

    def list_snapshot_ids(self) -> list[SnapshotId]:
        found = [i for i in (layout.snapshot_id_from_name(info.name) for info in self._listing(layout.SNAPSHOTS_PREFIX))
                 if i is not None]
        if self.cache is not None:  # snapshots forgotten meanwhile leave the cache too
            self.cache.keep_only(layout.SNAPSHOTS_PREFIX, [layout.snapshot_name(i) for i in found])
        return found

    def load_snapshot(self, snapshot_id: SnapshotId) -> Snapshot:
        name = layout.snapshot_name(snapshot_id)
        plain = self._read_cached(name, MAX_SNAPSHOT_SIZE, lambda envelope: self._open_metadata(
            layout.KIND_SNAPSHOT, snapshot_id, envelope, what=name))
        return Snapshot.decode(plain, snapshot_id, self.config.format_version)

    def delete_snapshot(self, snapshot_id: SnapshotId) -> None:
        self.forget_listings()
        if self.cache is not None:
            self.cache.drop(layout.snapshot_name(snapshot_id))
        self.storage.delete(layout.snapshot_name(snapshot_id))

    # ---- locks (agent.repo.lock) ------------------------------------------------------

    def write_lock_object(self, lock_id: bytes, plain: bytes) -> None:
        # Ephemeral: a lock is a coordination object that lives minutes. Under an object lock
        # a released lock would stay in the bucket for lock_days. Its upload is not verified:
        # the write comes before the listing of the other locks, so a verification would add
        # a round trip to every command's start over a WAN, and would buy nothing. A lock
        # stored damaged reads as an unreadable lock, which prune takes for a foreign exclusive
        # one and waits for (the safe side); its holder rewrites it every few minutes and
        # deletes it at the end (agent/repo/lock.py).
        self.storage.write(layout.lock_name(lock_id), self._seal_metadata(layout.KIND_LOCK, lock_id, plain),
                           ephemeral=True)

    def read_lock_object(self, lock_id: bytes) -> bytes:
        return self._read_metadata(layout.lock_name(lock_id), layout.KIND_LOCK, lock_id, MAX_LOCK_SIZE)

    def delete_lock_object(self, lock_id: bytes) -> None:
        self.storage.delete(layout.lock_name(lock_id), ephemeral=True)  # never locked: no need to ask

    def list_lock_ids(self) -> list[bytes]:
        found = (layout.lock_id_from_name(i.name) for i in self.storage.list(layout.LOCKS_PREFIX))
        return [i for i in found if i is not None]

    # ---- key files: several passphrases for one master secret ---------------------------

    def add_key(self, passphrase: bytes, *, params: KdfParams = DEFAULT_KDF_PARAMS, host: str | None = None) -> bytes:
        """A new key file wrapping the master secret under `passphrase`; no data changes."""
        key_id = os.urandom(16)
        self.storage.write(layout.key_name(key_id),
                           wrap_master_key(self.master, passphrase, repository_id=self.config.repository_id,
                                           key_id=key_id, params=params, created=clock.now().isoformat(),
                                           host=host or socket.gethostname()),
                           exclusive=True, random_name=True)
        return key_id

    def list_keys(self) -> list[KeyFile]:
        """The key files of this repository (unreadable ones are left out)."""
        keys = []
        for info in self.storage.list(layout.KEYS_PREFIX):
            if info.size > MAX_KEY_FILE_SIZE:
                continue
            try:
                key = _key_file(self.storage, info.name)[1]
            except KeyFileError:
                continue
            if key.repository_id == self.config.repository_id and layout.key_name(key.key_id) == info.name:
                keys.append(key)
        return sorted(keys, key=lambda k: k.created)

    def remove_key(self, key_id: bytes) -> None:
        self.storage.delete(layout.key_name(key_id))

    # ---- restore-test reports (format version 3) ------------------------------------------

    def save_report(self, report_id: bytes, plain: bytes) -> None:
        """Keep a restore-test report (agent.reports) encrypted beside the data it proves,
        so the proof is off-site with the backups. Written once, never rewritten."""
        self.storage.write(layout.report_name(report_id),
                           self._seal_metadata(layout.KIND_REPORT, report_id, plain), exclusive=True,
                           random_name=True)

    def load_report(self, report_id: bytes) -> bytes:
        return self._read_metadata(layout.report_name(report_id), layout.KIND_REPORT, report_id, MAX_REPORT_SIZE)

    def list_report_ids(self) -> list[bytes]:
        found = (layout.report_id_from_name(i.name) for i in self.storage.list(layout.REPORTS_PREFIX))
        return [i for i in found if i is not None]

    # ---- the rescue kit's record (agent/repo/rescue_kit.py) ---------------------------

    def save_rescue_record(self, version: str, plain: bytes) -> None:
        """Seal the record of a kit: bound to the kit's name (the associated data), so
        nobody without the key can write one, nor move one to another kit."""
        kit = layout.rescue_kit_file(version).encode()
        self.storage.write(layout.rescue_record_name(version),
                           self._seal_metadata(layout.KIND_RESCUE_RECORD, kit, plain))

    def load_rescue_record(self, version: str) -> bytes:
        kit = layout.rescue_kit_file(version).encode()
        return self._read_metadata(layout.rescue_record_name(version), layout.KIND_RESCUE_RECORD, kit,
                                   MAX_RESCUE_RECORD_SIZE)

    # ---- object lock (S3) ----------------------------------------------------------

    def clock_skew(self) -> _dt.timedelta | None:
        """How far this computer's clock is from the storage server's (a timedelta,
        positive when the server is ahead), or None when the storage has no clock."""
        return self.storage.clock_skew() if isinstance(self.storage, ServerClock) else None

    @property
    def object_lock_enabled(self) -> bool:
        """Whether objects are written under an S3 object lock."""
        return isinstance(self.storage, ObjectLocking) and self.storage.object_lock_enabled

    def extend_lock(self, name: str, until: _dt.datetime) -> None:
        """Keep object `name` (a name from agent.repo.layout) locked until at least `until`."""
        if not isinstance(self.storage, ObjectLocking):
            raise StorageError(f"{self.storage.describe()} has no object lock to extend")
        self.storage.extend_retention(name, until)

    @property
    def over_network(self) -> bool:
        """Whether the storage is reached over a network (S3): its requests wait on round
        trips, and its client is not to be used in a forked process."""
        return isinstance(self.storage, NetworkStorage)

    @property
    def request_concurrency(self) -> int:
        """How many requests the storage runs at once (see `concurrency` below)."""
        return concurrency(self.storage)

    # ---- rewriting (prune) ----------------------------------------------------------

    def store_blob_again(self, kind: int, chunk_id: ChunkId, data: bytes) -> None:
        """Store a blob again although the index knows it (prune moves the blobs still
        used out of mostly empty packs). The new copy is indexed by `flush` like any."""
        with self._write_lock:
            if chunk_id in self._pending_ids:
                return
            self._pending_ids.add(chunk_id)
        self._seal_into_pack(kind, chunk_id, data)

    def write_index_files(self, packs: dict[PackId, Sequence[PackEntry]], *, supersede: list[IndexId]) -> list[IndexId]:
        """Write a complete index of `packs` in several files, the last of which
        supersedes `supersede`: until it is written, the old index files stay the
        current ones, so a crash at any point leaves every pack indexed."""
        groups: list[dict[PackId, Sequence[PackEntry]]] = [{}]
        entries = 0
        for pack_id, pack_entries in packs.items():
            if groups[-1] and (len(groups[-1]) == PACKS_PER_INDEX_FILE
                               or entries + len(pack_entries) > MAX_INDEX_ENTRIES_PER_FILE):
                groups.append({})
                entries = 0
            groups[-1][pack_id] = pack_entries
            entries += len(pack_entries)
        written = [self._write_index(group) for group in groups[:-1]]
        written.append(self._write_index(groups[-1], superseded=[*supersede]))
        return written

    def delete_index_file(self, index_id: IndexId) -> None:
        self.forget_listings()
        if self.cache is not None:
            self.cache.drop(layout.index_name(index_id))
        self.storage.delete(layout.index_name(index_id))

    def delete_pack(self, pack_id: PackId) -> None:
        self.storage.delete(layout.pack_name(pack_id))

    def snapshots(self) -> list[Snapshot]:
        """All readable snapshots, oldest first (snapshot.chronological: by instant, then
        id; the last is "latest"). One that does not decrypt (damaged, or an
        object put there by someone without the key) is left out and named in
        `snapshot_problems`: it must not stop a restore of the others."""
        found = []
        self.snapshot_problems = []

        def read(snapshot_id: SnapshotId) -> Snapshot | IntegrityError:
            try:
                return self.load_snapshot(snapshot_id)
            except IntegrityError as exc:
                return exc

        listed = self.list_snapshot_ids()
        for snapshot_id, result in zip(listed, self._read_all(read, listed), strict=True):  # one result each
            if isinstance(result, IntegrityError):
                self.snapshot_problems.append(f"snapshot {snapshot_id.hex()} cannot be read ({result})")
            else:
                found.append(result)
        return sorted(found, key=chronological)


# Bytes altered on the wire (a bad proxy, a flaky link) must not pass for damage at
# rest, nor be restored: an object that fails verification is read again, up to this
# many reads in all, before it is declared damaged.
READ_ATTEMPTS = 3
# load_blobs: blobs of a pack this close are read together (the gap read and dropped).
NEAR_BLOBS_GAP = 256 * 1024
NEAR_BLOBS_RANGE = 16 * 1024 * 1024


def _verified_read(read: Callable[[], bytes], verify: Callable[[bytes], _Read]) -> _Read:
    """verify(read()), reading again while verification fails (IntegrityError). An object
    refused unread (ForeignObject: not a file, too large) would be refused again: not retried."""
    for _attempt in range(READ_ATTEMPTS - 1):
        try:
            return verify(read())
        except ForeignObject:
            raise
        except IntegrityError:
            continue
    return verify(read())  # the last attempt: its error is the one raised


def _key_file(storage: Storage, name: str) -> tuple[bytes, KeyFile]:
    """One bounded read of key file `name`: its bytes and their parse; anything wrong with it is a KeyFileError
    naming it (a missing file, a FIFO or link on a disk, an oversize object, bad content)."""
    raw = _key_bytes(storage, name)
    return raw, KeyFile.parse(raw, name=name)


_KEY_FILE_NAME = re.compile(re.escape(layout.KEYS_PREFIX) + "[0-9a-f]{32}")  # layout.key_name


def _key_bytes(storage: Storage, name: str) -> bytes:
    try:
        return storage.read(name, max_size=MAX_KEY_FILE_SIZE)
    except ObjectNotFound:
        if not _KEY_FILE_NAME.fullmatch(name):
            # Listed, not there, and not a name backupctl writes: the listing itself was
            # altered on its way (a byte flipped inside a name), not a key file removed.
            raise TransientStorageError(f"{storage.describe()}: the listing of keys/ named {name!r}, which is not "
                                        f"there: the listing was altered on its way") from None
        raise KeyFileError(f"key file {name} disappeared while being read") from None
    except ForeignObject as exc:
        raise KeyFileError(str(exc)) from None


def _key_repository_ids(storage: Storage) -> Iterator[bytes]:
    """The repository ids named by the readable key files, read lazily (open_with_master)."""
    for info in storage.list(layout.KEYS_PREFIX):
        if info.size > MAX_KEY_FILE_SIZE:
            continue
        try:
            yield _key_file(storage, info.name)[1].repository_id
        except KeyFileError:
            continue


def _agreed_read(storage: Storage, name: str, *, first: bytes, reads: int = 5) -> bytes:
    """A key file's bytes, read until two reads agree (`first` is the read already made).
    Key files are plain JSON (their secret part is authenticated, the parameters only by
    plausibility checks): a copy altered in transit would otherwise look like a wrong
    passphrase. Used only for a file about to run Argon2id, which costs far more than the
    read; junk files are read once."""
    seen: list[bytes] = [first]
    for _ in range(reads - 1):
        data = _key_bytes(storage, name)
        if data in seen:
            return data
        seen.append(data)
    return seen[-1]


def concurrency(storage: Storage) -> int:
    """How many requests the storage runs at once: a network store's `max_concurrency`
    (S3's); 1 for a local disk, whose reads are not worth threads."""
    return max(1, storage.max_concurrency) if isinstance(storage, NetworkStorage) else 1


def _listed(storage: Storage, prefix: str) -> list[ObjectInfo]:
    return list(storage.list(prefix))


class _OpeningReads:
    """The requests an opening makes that depend on nothing: the listing of keys/ and the
    config, and for what follows (the snapshot to use) the listing of snapshots/. Over a
    network they are issued at once, one round trip for all. On a local disk each runs when
    first wanted, in the order of old (and snapshots/ when read). index/ is not listed here:
    it is read under the lock of whoever reads it, as of that lock (a prune may run before)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        workers = concurrency(storage)
        self._pool = ThreadPoolExecutor(max_workers=min(workers, 4), thread_name_prefix="open") if workers > 1 else None
        self._futures: dict[str, Future[Any]] = {}
        if self._pool is not None:
            self._futures[layout.KEYS_PREFIX] = self._pool.submit(_listed, storage, layout.KEYS_PREFIX)
            self._futures[layout.CONFIG] = self._pool.submit(storage.read, layout.CONFIG, max_size=MAX_CONFIG_SIZE)
            self._futures[layout.SNAPSHOTS_PREFIX] = self._pool.submit(_listed, storage, layout.SNAPSHOTS_PREFIX)

    def _get(self, name: str, read: Callable[[], object]) -> object:
        future = self._futures.get(name)
        if future is None:
            future = self._futures[name] = Future()
            try:
                future.set_result(read())
            except BaseException as exc:
                future.set_exception(exc)
        return future.result()

    def keys(self) -> dict[str, int]:
        listed = self._get(layout.KEYS_PREFIX, lambda: _listed(self.storage, layout.KEYS_PREFIX))
        return {info.name: info.size for info in listed}  # type: ignore[attr-defined]

    def config(self) -> bytes:
        return self._get(layout.CONFIG, lambda: self.storage.read(layout.CONFIG, max_size=MAX_CONFIG_SIZE))  # type: ignore[return-value]

    def config_exists(self) -> bool:
        if self._pool is None:
            return self.storage.exists(layout.CONFIG)
        try:
            self.config()
        except ObjectNotFound:
            return False
        except (StorageError, ForeignObject):
            return True
        return True

    def listings(self) -> dict[str, Future[list[ObjectInfo]]]:
        """The listing of snapshots/ started here (none on a local disk)."""
        return {prefix: self._futures[prefix] for prefix in (layout.SNAPSHOTS_PREFIX,) if prefix in self._futures}

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)  # what is in flight finishes; its result stays in its future

"""A local copy of a network repository's metadata, exactly as stored (ciphertext).

    <state_dir>/cache/<repository id hex>/repository/     (folders 0700, files 0600)
        keys/<key id hex>      the key file that opened the repository on this machine
        snapshots/<id hex>     snapshot objects
        index/<id hex>         index files
        trees/<chunk id hex>   folder listings: the sealed part as it sits in its pack

Over a WAN every object read is a round trip: a one-file restore read the key file (twice),
every snapshot and index file one after the other, and a folder listing per level of the
path. Snapshots, index files and key files are never rewritten under the same name (their
names are random or content ids), nor are tree parts (named by their chunk id), so a copy
kept here is the object itself for as long as the repository lists its name. Like restic's
local cache (internal/cache), only those immutable-by-name objects are kept; the config may
change (a format upgrade), so it is always read from the storage, in the same round trip as
the listings of keys/ and snapshots/ (Repository.open).

Why the cache adds no trust (an attacker who can edit this folder, or the bucket, gains
nothing): everything read from here goes through the very checks an object read from the
storage goes through. Each object is opened with the master key under associated data that
binds it to its repository, its kind and its own id (a snapshot's bytes put under another
snapshot's name, or a listing under another chunk id, fail authentication); a folder
listing's chunk id is recomputed from its plaintext; a key file still has to be unwrapped by
the passphrase and be listed in the repository's keys/ (a removed key opens nothing). What
fails is dropped from here and read from the storage, never fatal. Nothing secret is kept:
the files are the repository's ciphertext, and the folder can be deleted at any time (the
next command reads the storage again and fills it).

Entries whose names the repository no longer lists (removed by forget or prune) are dropped
at the next listing; folder listings are bounded in size (MAX_TREE_BYTES, oldest first).
Every failure to write here is ignored: the cache only ever costs or saves time.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
from typing import Callable, Iterable

# Folder listings kept at most (sealed bytes). A listing costs about 200 bytes per entry:
# 100,000 files in 1,000 folders are about 20 MB of listings, so a practice's whole tree of
# several snapshots fits many times; past this the oldest written are dropped.
MAX_TREE_BYTES = 256 * 1024 * 1024
# The largest entry read back (a snapshot is at most 16 MiB, an index file 256 MiB).
MAX_ENTRY_SIZE = 256 * 1024 * 1024

_DIR_MODE = 0o700
_FILE_MODE = 0o600
_NAME = re.compile(r"^((keys|snapshots|index)/[0-9a-f]{32}|trees/[0-9a-f]{64})$")
_TMP_PREFIX = ".tmp-"


class CacheRoot:
    """The folder of every repository's cache (`<state_dir>/cache`, from the state layout:
    agent/state/layout.py), holding one MetadataCache per repository id."""

    def __init__(self, path: str) -> None:
        self.path = path

    def repository(self, repository_id: bytes) -> "MetadataCache":
        return MetadataCache(os.path.join(self.path, repository_id.hex(), "repository"))

    def key_files(self, name: str) -> list[tuple[bytes, bytes]]:
        """(repository id, bytes) of every cached copy of key file `name` (keys/<id hex>).
        The key ids are random: in practice one repository holds it."""
        found = []
        try:
            entries = list(os.scandir(self.path))
        except OSError:
            return []
        for entry in entries:
            try:
                repository_id = bytes.fromhex(entry.name)
            except ValueError:
                continue
            if len(repository_id) != 16:
                continue
            data = self.repository(repository_id).get(name)
            if data is not None:
                found.append((repository_id, data))
        return found


class MetadataCache:
    def __init__(self, path: str) -> None:
        self.path = path

    def _file(self, name: str) -> str:
        if not _NAME.match(name):  # names come from agent.repo.layout; anything else is a bug
            raise ValueError(f"not a cacheable object name: {name!r}")
        return os.path.join(self.path, *name.split("/"))

    def get(self, name: str) -> bytes | None:
        """The bytes cached for `name`, or None. Opened without following links, and only a
        regular file: the state directory is ours, but a planted FIFO must not block."""
        try:
            fd = os.open(self._file(name), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            return None
        try:
            with os.fdopen(fd, "rb") as handle:
                status = os.fstat(handle.fileno())
                if not _is_regular(status.st_mode) or status.st_size > MAX_ENTRY_SIZE:
                    return None
                return handle.read(MAX_ENTRY_SIZE + 1)
        except OSError:
            return None

    def put(self, name: str, data: bytes | memoryview) -> None:
        """Keep `data` under `name`, atomically (a crash leaves the old entry or the new)."""
        final = self._file(name)
        directory = os.path.dirname(final)
        tmp = os.path.join(directory, _TMP_PREFIX + secrets.token_hex(8))
        try:
            _make_dirs(self.path, directory)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, _FILE_MODE)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, final)
        except OSError:
            _unlink(tmp)

    def drop(self, name: str) -> None:
        _unlink(self._file(name))

    def names(self, prefix: str) -> list[str]:
        """The names cached under `prefix` ("snapshots/", "index/", "keys/", "trees/")."""
        try:
            return [prefix + e.name for e in os.scandir(os.path.join(self.path, prefix.rstrip("/")))
                    if not e.name.startswith(_TMP_PREFIX)]
        except OSError:
            return []

    def keep_only(self, prefix: str, listed: Iterable[str]) -> None:
        """Drop what the repository no longer lists under `prefix` (forget, prune)."""
        keep = set(listed)
        for name in self.names(prefix):
            if name not in keep:
                _unlink(os.path.join(self.path, *name.split("/")))

    # ---- folder listings ----------------------------------------------------------

    @staticmethod
    def tree_name(chunk_id: bytes) -> str:
        return "trees/" + chunk_id.hex()

    def get_tree(self, chunk_id: bytes) -> bytes | None:
        return self.get(self.tree_name(chunk_id))

    def put_tree(self, chunk_id: bytes, sealed: bytes | memoryview) -> None:
        self.put(self.tree_name(chunk_id), sealed)

    def trim_trees(self, still_indexed: Callable[[bytes], bool], *, limit: int = MAX_TREE_BYTES) -> None:
        """Drop listings no index lists any more, then the oldest written past `limit` bytes."""
        kept: list[tuple[float, int, str]] = []
        try:
            entries = list(os.scandir(os.path.join(self.path, "trees")))
        except OSError:
            return
        for entry in entries:
            try:
                chunk_id = bytes.fromhex(entry.name)
                status = entry.stat(follow_symlinks=False)
            except (ValueError, OSError):
                _unlink(entry.path)
                continue
            if not still_indexed(chunk_id):
                _unlink(entry.path)
            else:
                kept.append((status.st_mtime, status.st_size, entry.path))
        total = sum(size for _mtime, size, _path in kept)
        for _mtime, size, path in sorted(kept):
            if total <= limit:
                break
            _unlink(path)
            total -= size


def _is_regular(mode: int) -> bool:
    return stat.S_ISREG(mode)


def _make_dirs(root: str, directory: str) -> None:
    """The cache's folders, made 0700 (<state_dir>/cache, the repository's, ours, the kind's)."""
    repository_dir = os.path.dirname(root)
    for path in (os.path.dirname(repository_dir), repository_dir, root, directory):
        if not os.path.isdir(path):
            os.makedirs(path, mode=_DIR_MODE, exist_ok=True)
            os.chmod(path, _DIR_MODE)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass

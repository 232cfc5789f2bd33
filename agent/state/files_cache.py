"""The files cache: unchanged files are not read again (SQLite in the state dir).

A file is "unchanged" when its size, mtime, ctime, inode and device all match the
previous backup; its chunk list and SHA-256 are then reused, after checking that every
chunk is still in the repository's index. ctime is included because tools that
preserve mtime (restoring, `touch -r`) still change ctime.

New entries are committed only after the snapshot is saved; a crashed backup leaves
the previous cache intact.

The walk reads the cache one folder at a time (`folder`: one range query over the
path key, the subfolders' entries skipped inside SQLite), marks a folder's files seen
with one statement (`touch_folder`, which then drops the ones that vanished or changed)
and records new contents in batches (`record_many`): one query, or one UPDATE, per file
measured as the walk's largest cost on 100,000 small files (issue 19). A first backup,
with the cache empty, queries nothing.

Folders (issue 19 point 6): for each folder stored whole, the tree id and a signature of
what the tree was made of (agent.engine.backup, BackupEngine._signature: every entry's name and
lstat, each subfolder's tree id). A folder whose signature is the same on the next run
gets the same tree without building it; every entry is still lstat-ed to compute it.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

from agent import run_as
from agent.errors import StateDirError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path BLOB PRIMARY KEY,
    size INTEGER, mtime_ns INTEGER, ctime_ns INTEGER, inode INTEGER, device INTEGER,
    sha256 TEXT, chunks BLOB, run INTEGER
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER);
CREATE TABLE IF NOT EXISTS folders (path BLOB PRIMARY KEY, signature BLOB, tree BLOB, run INTEGER);
CREATE TABLE IF NOT EXISTS seen (folder BLOB PRIMARY KEY, run INTEGER);
"""


def _parent(path: bytes) -> bytes:
    """The folder of a cached path, as the walk names it (b"/srv/a" for b"/srv/a/x.txt")."""
    return path[: path.rfind(b"/")] or b"/"



# A row of `FilesCache.folder`: size, mtime_ns, ctime_ns, inode, device, sha256 (hex), chunks
# (the chunk ids end to end).
CachedRow = tuple[int, int, int, int, int, str, bytes]


@dataclass(frozen=True)
class CachedFile:
    unchanged: bool
    sha256: str
    chunks: list[bytes]


class FilesCache:
    def __init__(self, path: str) -> None:
        try:
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level="DEFERRED")
            self._db.create_function("parent_folder", 1, _parent, deterministic=True)
            self._db.executescript(_SCHEMA)
            # Prove now that the cache is writable: failing mid-walk would waste the run.
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('probe', 1)")
            self._db.commit()
            row = self._db.execute("SELECT value FROM meta WHERE key='run'").fetchone()
            self._empty = self._db.execute("SELECT 1 FROM files LIMIT 1").fetchone() is None
        except (OSError, sqlite3.Error) as exc:
            # SQLite says only "unable to open database file": name the owner and mode.
            problem = run_as.access_problem(path, write=True)
            if problem is not None:
                raise problem from None
            raise StateDirError(f"the files cache {path} cannot be written ({exc})") from None
        self.run = (row[0] if row else 0) + 1

    @property
    def empty(self) -> bool:
        """Nothing cached when this run began (a first backup): the walk need not ask."""
        return self._empty

    @staticmethod
    def _children(folder: bytes) -> tuple[bytes, bytes, int]:
        """(low, high, start): paths P of direct children satisfy low < P < high and have
        no "/" from byte `start` (1-based, SQLite's substr) on."""
        prefix = folder if folder.endswith(b"/") else folder + b"/"
        return prefix, prefix[:-1] + b"0", len(prefix) + 1  # "0" follows "/" in byte order

    def folder(self, folder: bytes) -> dict[bytes, CachedRow]:
        """The cached entries of the files directly in `folder`, by name (one query)."""
        if self._empty:
            return {}
        low, high, start = self._children(folder)
        rows = self._db.execute(
            "SELECT substr(path, ?), size, mtime_ns, ctime_ns, inode, device, sha256, chunks FROM files "
            "WHERE path > ? AND path < ? AND instr(substr(path, ?), x'2f') = 0",
            (start, low, high, start),
        ).fetchall()
        return {row[0]: row[1:] for row in rows}

    @staticmethod
    def check(row: CachedRow, st: os.stat_result) -> CachedFile:
        """Whether a row of `folder` still describes the file with this stat, and its content."""
        return CachedFile(FilesCache.unchanged(row, st), row[5], FilesCache.chunks(row))

    @staticmethod
    def unchanged(row: CachedRow, st: os.stat_result) -> bool:
        """Whether a row of `folder` still describes the file with this stat."""
        return row[:5] == (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)

    @staticmethod
    def chunks(row: CachedRow) -> list[bytes]:
        """The chunk ids of a row of `folder` (32 bytes each, stored end to end)."""
        blob = row[6]
        if len(blob) == 32:  # most files: one chunk
            return [blob]
        return [blob[i : i + 32] for i in range(0, len(blob), 32)]

    def touch_folder(self, folder: bytes, forget: Iterable[bytes] = ()) -> None:
        """Mark every cached file of `folder` seen by this run with one row for the folder
        (`commit` keeps the files of the folders seen), then drop the ones named in
        `forget` (vanished or changed: a changed file is recorded again once read). One
        UPDATE per file was a tenth of a weekly backup of 100,000 letters, and one UPDATE
        of the folder's rows still 0.2 s (issue 19)."""
        self._db.execute("INSERT OR REPLACE INTO seen VALUES (?, ?)", (folder, self.run))
        prefix = self._children(folder)[0]
        self._db.executemany("DELETE FROM files WHERE path=?", ((prefix + name,) for name in forget))

    def folder_tree(self, folder: bytes) -> tuple[bytes, bytes] | None:
        """(signature, tree id) recorded for `folder` by the previous run, or None."""
        if self._empty:
            return None
        row = self._db.execute("SELECT signature, tree FROM folders WHERE path=?", (folder,)).fetchone()
        return (bytes(row[0]), bytes(row[1])) if row else None

    def record_folder(self, folder: bytes, signature: bytes, tree: bytes) -> None:
        self._db.execute("INSERT OR REPLACE INTO folders VALUES (?,?,?,?)", (folder, signature, tree, self.run))

    def touch_folder_tree(self, folder: bytes) -> None:
        self._db.execute("UPDATE folders SET run=? WHERE path=?", (self.run, folder))

    def record_many(self, entries: list[tuple[bytes, os.stat_result, str, list[bytes]]]) -> None:
        """`record` for (path, stat, sha256, chunks) entries, in one call."""
        self._db.executemany(
            "INSERT OR REPLACE INTO files VALUES (?,?,?,?,?,?,?,?,?)",
            ((path, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev, sha256, b"".join(chunks),
              self.run)
             for path, st, sha256, chunks in entries),
        )

    def lookup(self, path: bytes, st: os.stat_result) -> "CachedFile | None":
        """None if the path was never seen; else whether it is unchanged, and its content."""
        row = self._db.execute(
            "SELECT size, mtime_ns, ctime_ns, inode, device, sha256, chunks FROM files WHERE path=?",
            (path,),
        ).fetchone()
        return None if row is None else self.check(row, st)

    def record(self, path: bytes, st: os.stat_result, sha256: str, chunks: list[bytes]) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO files VALUES (?,?,?,?,?,?,?,?,?)",
            (path, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev,
             sha256, b"".join(chunks), self.run),
        )

    def previous_totals(self) -> tuple[int, int] | None:
        """(files, bytes) the previous run saw (commit keeps only its entries), or None
        before any run: a progress estimate, cheap and local. Called before the walk."""
        count, size = self._db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM files").fetchone()
        return (int(count), int(size)) if count else None

    def touch(self, path: bytes) -> None:
        self._db.execute("UPDATE files SET run=? WHERE path=?", (self.run, path))

    def commit(self) -> None:
        """Keep what this run saw (files recorded or touched, and the files of the folders
        seen); forget files that no longer exist."""
        self._db.execute("DELETE FROM files WHERE run <> ? AND parent_folder(path) NOT IN "
                         "(SELECT folder FROM seen WHERE run = ?)", (self.run, self.run))
        self._db.execute("DELETE FROM seen WHERE run <> ?", (self.run,))
        self._db.execute("DELETE FROM folders WHERE run <> ?", (self.run,))
        self._db.execute("INSERT OR REPLACE INTO meta VALUES ('run', ?)", (self.run,))
        self._db.commit()

    def close(self) -> None:
        self._db.close()

"""Backup: walk the sources, store new chunks and trees, save a snapshot.

Pipeline: the walking thread lists directories, checks the files cache and hands
each changed file to the worker pool, which reads it, computes its SHA-256, cuts it
into chunks and stores them (keyed BLAKE3 id, zstd, encryption: all release the GIL,
so every core works). Files larger than the chunker's max_size, and declared
databases, are read by one streaming thread that feeds the fingerprint to its own
thread and the chunks to the pool in batches. A semaphore bounds the tasks in flight,
so memory stays flat whatever the file sizes (docs/BENCHMARKS.md has the measurements).

Directories are not waited for: when the walk leaves a directory, its tree is queued
and stored once its files are done (children before parents, in walk order), so the
workers never drain at a directory boundary while the walk goes on (a queue of
finished directories is bounded by MAX_DIRS_PENDING).

The files cache is read once per folder (FilesCache.folder), not once per file, and
not at all on a first backup; new entries are written in one call per stored folder.
Files of at most the chunker's minimum size (one chunk: most letters) go to the workers
in batches (SMALL_BATCH_FILES), one task per batch rather than one per file; from
PROCESS_MIN_FILES small files on, to worker processes (agent.engine.small_files) that
read, fingerprint and seal a whole batch outside this process's GIL and hand the sealed
blobs back through a shared spool.

A folder whose signature (every entry's lstat, its subfolders' trees: FOLDER_RULE) is the
one the files cache recorded with its tree gets that tree again without building it.

Whatever happens to one file (unreadable, vanished, changed while read) is recorded
as a warning and the backup goes on; the snapshot is then marked partial.
"""

from __future__ import annotations

import datetime as _dt
import fnmatch
import grp
import hashlib
import marshal
import mmap
import multiprocessing
import operator
import os
import pwd
import re
import socket
import stat
import sys
import tempfile
import threading
import time
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO, Any, BinaryIO, Iterable, Protocol

from agent import __version__, clock
from agent.engine.source.dumps import DUMP_FOLDER, Dump, DumpError
from agent.state.files_cache import CachedRow, FilesCache
from agent.engine.source.holes import HoleSkippingReader, is_sparse
from agent.engine.alarm import SUSPECT_TAG, AlarmThresholds, Tally, judge
from agent.engine.alarm_scan import compare_trees
from agent.engine.progress import Progress, SilentProgress
from agent.engine.small_files import (SealedPart, SmallFileResult, Stamp, open_nofollow, read_small, seal_small_files,
                                      worker_init)
from agent.errors import BackupctlError, IntegrityError, ObjectNotFound, SourceError
from agent.repo import layout
from agent.repo.chunker import DEFAULT_DATABASE_CHUNK_SIZE, Chunker
from agent.repo.lock import RepositoryLock, list_locks, require_lock
from agent.repo.pack import BLOB_DATA, BLOB_TREE
from agent.repo.repository import Repository
from agent.repo.layout import SnapshotId
from agent.repo.snapshot import Snapshot
from agent.repo.tree import DIR, FILE, SYMLINK, Node, encode_tree

# Frames for the deepest walk PATH_MAX allows ("a/" repeated: 2,048 levels, 3 frames each).
WALK_RECURSION_LIMIT = 3 * (os.pathconf("/", "PC_PATH_MAX") // 2) + 1_000

# One worker per core. Two per core measured 16 % slower on the initial backup of the
# benchmark data (and 40 MiB more peak RSS): the threads' Python parts contend for the
# GIL, and the handoffs cost more than a pack write's fsync leaves idle. Tasks in
# flight bound memory (a task holds a file of at most max_size, or a 1 MiB batch).
WORKERS = os.cpu_count() or 2
MAX_CHUNKS_IN_FLIGHT = 2 * WORKERS  # tasks in flight: a file, a chunk or a batch of blocks
BATCH_BYTES = 1024 * 1024
# Files of at most the chunker's minimum size (one chunk each) travel to the workers in
# batches of at most this many files or BATCH_BYTES: one task, one future and one
# semaphore round per small file kept the walking thread busier than both workers on
# 100,000 letters of 0.4-8 KiB (issue 19).
SMALL_BATCH_FILES = 256
# Once a backup has met this many small files, their batches go to worker processes
# (agent.engine.small_files), which read, fingerprint and seal them outside this
# process's GIL; before that, to the worker threads. Starting the processes costs
# about 0.1 CPU-s each (an interpreter importing the crypto modules): a weekly backup
# that reads a few hundred changed letters does not pay it.
PROCESS_MIN_FILES = 4096
# Room in the spool (a file mapped by the backup and its worker processes) for one batch's
# sealed parts: a batch holds at most BATCH_BYTES plus one file of at most the chunker's
# minimum size, and sealing adds at most 1/16 (Padme) plus 560 bytes per file (padding
# floor, envelope). A part that does not fit travels through the result pipe instead.
SPOOL_SLOT = 2 * 1024 * 1024
# Directories walked but not yet stored (their files still in the workers). Beyond
# this the walk waits for the oldest one, so a slow file cannot make the queue grow
# without bound while the walk goes through a million unchanged files.
MAX_DIRS_PENDING = 256
# Files of walked directories whose trees are not stored yet (each holds its Node, stat
# and pending result, about a kilobyte): beyond this the walk waits for the oldest
# directory too. 256 folders of 200 letters held 51,200 of them; this bound is about
# eight batches per worker ahead of the workers.
MAX_FILES_PENDING = 4096
# FOLDER_RULE (issue 19 point 6): a folder's tree is taken whole from the previous run,
# without building its nodes, only when the signature of what it is made of is the one
# recorded with that tree (agent.state.files_cache, table folders): the name, type,
# mode, owner (ids and names), size, mtime, ctime, inode, device, link count
# and allocated blocks of every entry, lstat-ed on this run, each subfolder's tree id,
# and the options that decide what is kept; and when every file of it is unchanged in
# the files cache with all its chunks still in the repository, and the tree itself is
# in the repository. The folder's own mtime is not relied on: a file rewritten in place
# leaves it as it was, but changes the file's ctime. A folder with a warning (an entry
# unreadable, skipped, or changed while read) is never recorded, so never taken whole.
FOLDER_SIGNATURE_VERSION = 2  # 2: marshal-encoded (1 was the repr of the rows)
# The lstat fields of an entry in its folder's signature. The link count itself, not only
# whether it is above one: it changes only with the entry's ctime, which is signed too.
_SIGNED_STAT = operator.attrgetter("st_mode", "st_uid", "st_gid", "st_size", "st_mtime_ns", "st_ctime_ns",
                                   "st_ino", "st_dev", "st_nlink", "st_blocks")


@dataclass(frozen=True)
class BackupOptions:
    paths: list[str]
    excludes: list[str] = field(default_factory=list)
    one_file_system: bool = False
    databases: list[str] = field(default_factory=list)  # patterns, as excludes
    database_chunk_size: int = DEFAULT_DATABASE_CHUNK_SIZE
    tags: list[str] = field(default_factory=list)
    time: _dt.datetime | None = None  # None means now
    host: str | None = None
    dumps: list[Dump] = field(default_factory=list)  # streamed into /backupctl-databases
    # Snapshot ids (hex), newest first, that may be this machine's previous backup (its
    # ledger): when the files cache is empty, the progress total comes from their summary.
    previous_snapshots: list[str] = field(default_factory=list)


# Unindexed packs one backup adopts at most (each is read whole, up to a pack's size): an
# interrupted backup leaves fewer than PACKS_PER_INDEX plus its last partial packs; after a
# lost index file, the next backups adopt the rest, or `repair` indexes them all at once.
MAX_PACKS_ADOPTED = 16


@dataclass
class BackupReport:
    snapshot: Snapshot | None = None
    files_new: int = 0
    files_changed: int = 0
    files_unchanged: int = 0
    dirs: int = 0
    bytes_total: int = 0
    bytes_read: int = 0
    bytes_added: int = 0
    duration_s: float = 0.0
    warnings: list[tuple[str, str]] = field(default_factory=list)
    databases_dumped: list[str] = field(default_factory=list)  # paths in the snapshot
    database_failures: int = 0
    packs_adopted: int = 0  # complete packs an interrupted backup left unindexed, indexed by this one
    folders_reused: int = 0  # folders whose tree was the previous run's, unchanged (FOLDER_RULE)
    # The ransomware alarm (agent.engine.alarm): the comparison with the parent snapshot
    # (counts, signs, folder names, "suspect"), None when there was no parent to compare with.
    alarm: dict[str, Any] | None = None

    @property
    def suspect(self) -> bool:
        return bool(self.alarm and self.alarm.get("suspect"))

    @property
    def partial(self) -> bool:
        return bool(self.warnings)

    def as_dict(self) -> dict[str, Any]:  # a JSON document (--json), and the snapshot's summary
        return {
            "snapshot_id": self.snapshot.id.hex() if self.snapshot and self.snapshot.id else None,
            "time": self.snapshot.time.isoformat() if self.snapshot else None,
            "files_new": self.files_new,
            "files_changed": self.files_changed,
            "files_unchanged": self.files_unchanged,
            "dirs": self.dirs,
            "bytes_total": self.bytes_total,
            "bytes_read": self.bytes_read,
            "bytes_added": self.bytes_added,
            "duration_s": round(self.duration_s, 3),
            "partial": self.partial,
            "databases_dumped": self.databases_dumped,
            "database_failures": self.database_failures,
            "packs_adopted": self.packs_adopted,
            "warnings": [{"path": p, "problem": m} for p, m in self.warnings],
            "alarm": self.alarm,
        }


@dataclass
class _FileResult:
    sha256: str
    size: int
    after: os.stat_result | Stamp  # fstat once read: tells whether the file changed meanwhile
    chunk_ids: list[bytes] | None = None  # whole files read by a worker
    chunk_futures: list[Future[list[bytes]]] | None = None  # streamed files: each future gives a list of ids


# What a worker answers for one file: what it read, or the OSError that kept it from reading.
_FileOutcome = _FileResult | OSError


class _SmallBatch:
    """Small files read by one worker task: the future gives a _FileResult or an
    OSError per path, in order. No future until submitted."""

    __slots__ = ("paths", "sizes", "size", "future", "slot")

    def __init__(self) -> None:
        self.paths: list[bytes] = []
        self.sizes: list[int] = []  # as walked: each read asks for this plus one byte
        self.size = 0
        self.future: Future[list[_FileOutcome]] | None = None
        self.slot = -1  # its slot of the spool, while a worker process has it


@dataclass
class _PendingFile:
    node: Node
    future: Future[_FileResult] | None  # None for a file of a batch
    path: bytes
    st: os.stat_result
    is_new: bool
    batch: _SmallBatch | None = None
    slot: int = 0  # its place in the batch

    def done(self) -> bool:
        future = self.future if self.batch is None else self.batch.future
        return future is not None and future.done()

    def result(self) -> _FileResult:
        if self.batch is None:
            assert self.future is not None  # a file read alone is submitted with its future
            return self.future.result()
        assert self.batch.future is not None  # a batch is submitted before its files are waited for
        result = self.batch.future.result()[self.slot]
        if isinstance(result, OSError):
            raise result
        return result


class _TreeRef:
    """The id of a directory's tree, known once the directory is stored."""

    __slots__ = ("id",)

    def __init__(self) -> None:
        self.id: bytes | None = None


# The entries of a folder for its signature: (name, lstat, subfolder's tree or None).
_Signed = list[tuple[bytes, os.stat_result, _TreeRef | None]]
# An entry of the folder being walked: (name, path, lstat).
_Entry = tuple[bytes, bytes, os.stat_result]
# The folders above the sources, component by component; None marks a source.
_Trie = dict[bytes, "_Trie | None"]


class _Digest(Protocol):
    """The running SHA-256 of a streamed file (hashlib's object)."""

    def update(self, data: bytes | memoryview, /) -> None: ...


@dataclass
class _DirJob:
    """A walked directory waiting for its files before its tree can be stored."""

    nodes: list[Node]
    files: list[_PendingFile]
    ref: _TreeRef
    # For the files cache's folder record: the folder, and its signature, or what it is
    # made of (subfolders by their _TreeRef) when a subfolder's tree was not known yet.
    folder: bytes | None = None
    signed: bytes | _Signed | None = None
    # Its subfolders' nodes, whose tree ids are set once known (before this tree is encoded).
    subdirs: list[tuple[Node, _TreeRef]] = field(default_factory=list)


class _Names:
    """uid/gid -> name, cached (a tree has few distinct owners)."""

    def __init__(self) -> None:
        self._users: dict[int, str] = {}
        self._groups: dict[int, str] = {}
        self._owners: dict[tuple[int, int], tuple[str, str]] = {}

    def owner(self, uid: int, gid: int) -> tuple[str, str]:
        """(user, group) names: one lookup per node instead of two calls."""
        found = self._owners.get((uid, gid))
        if found is None:
            found = self._owners[(uid, gid)] = (self.user(uid), self.group(gid))
        return found

    def user(self, uid: int) -> str:
        if uid not in self._users:
            try:
                self._users[uid] = pwd.getpwuid(uid).pw_name
            except KeyError:
                self._users[uid] = ""
        return self._users[uid]

    def group(self, gid: int) -> str:
        if gid not in self._groups:
            try:
                self._groups[gid] = grp.getgrgid(gid).gr_name
            except KeyError:
                self._groups[gid] = ""
        return self._groups[gid]


def _display(path: bytes) -> str:
    return os.fsdecode(path)


class BackupEngine:
    def __init__(
        self,
        repo: Repository,
        options: BackupOptions,
        *,
        files_cache: FilesCache | None = None,
        progress: Progress | None = None,
        alarm: AlarmThresholds | None = None,
    ) -> None:
        self.repo = repo
        self.options = options
        self.alarm = alarm  # None: no comparison with the parent snapshot
        self.cache = files_cache
        self.progress = progress or SilentProgress()
        self.report = BackupReport()
        self._names = _Names()
        self._chunker = repo.new_chunker()
        self._slots = threading.BoundedSemaphore(MAX_CHUNKS_IN_FLIGHT)
        self._pool: ThreadPoolExecutor | None = None
        self._hasher: ThreadPoolExecutor | None = None
        self._streamer: ThreadPoolExecutor | None = None
        self._root_devices: dict[bytes, int] = {}
        # Files of the directory being walked that are still in the pool, and walked
        # directories waiting for their files (oldest first: children before parents).
        self._pending: list[_PendingFile] = []
        self._subdirs: list[tuple[Node, _TreeRef]] = []  # the walked directory's subfolders, as _pending
        self._dir_jobs: deque[_DirJob] = deque()
        self._files_pending = 0  # files of the queued directories (MAX_FILES_PENDING)
        self.max_files_pending_seen = 0  # the most there were at once (tests)
        self._local = threading.local()  # one chunker per worker (FastCDC is not thread-safe)
        self._root_extra: list[Node] = []  # the database dumps' folder, added to the snapshot's root
        self._lock: RepositoryLock | None = None  # this backup's, while it runs
        self._batch = _SmallBatch()  # small files not yet handed to the workers
        self._small_files = 0  # small files met so far: processes from PROCESS_MIN_FILES on
        self._processes: ProcessPoolExecutor | None = None
        self._spool: mmap.mmap | None = None  # shared with the worker processes
        self._spool_path = ""
        self._spool_slots: list[int] = []  # free slots (one per task in flight at most)
        self._min_size = self._chunker.params.min_size
        self._exclude_matcher = _Matcher(options.excludes)
        self._options_key = (sorted(options.excludes), sorted(options.databases), options.one_file_system,
                             options.database_chunk_size)
        self._database_matcher = _Matcher(options.databases)

    # ---- entry point ----------------------------------------------------------

    def _adopt_unindexed_packs(self) -> None:
        """Index the complete packs an interrupted backup left in no index (docs/FORMAT.md
        section 12): their blobs are then reused instead of stored again, and `check` has
        nothing to say about them. Only when no other live lock is held: a pack that another
        running backup wrote and has not indexed yet is that backup's to index. Packs are
        listed before the locks, so a writer that starts after the listing wrote none of
        them. A pack that does not read back whole under this repository's key is left for
        prune, which deletes every pack no index lists."""
        lock = self._lock
        indexed = {layout.pack_name(pack_id) for pack_id in self.repo.index.pack_ids()}
        orphans = sorted(name for name in self.repo.list_pack_names() if name not in indexed)
        if not orphans or lock is None:
            return
        now = clock.now()
        if any(other.lock_id != lock.lock_id and not other.is_stale(now) for other in list_locks(self.repo)):
            return
        for name in orphans[:MAX_PACKS_ADOPTED]:
            pack_id = layout.pack_id_from_name(name)
            if pack_id is None:
                continue
            try:
                self.repo.adopt_pack(pack_id)
            except (IntegrityError, ObjectNotFound):
                continue
            self.report.packs_adopted += 1

    def run(self) -> BackupReport:
        # A shared lock, written: other backups may run, a prune may not (agent.repo.lock); its
        # id tells this backup's packs from another's (_adopt_unindexed_packs).
        self._lock = require_lock(self.repo, "backup", written=True)
        # The walk recurses once per folder level (three frames each). A local user who can
        # write in a backed-up folder could otherwise stop every backup with a folder 400
        # levels deep (Python's default limit is 1,000 frames). Paths are at most PATH_MAX
        # bytes, so a walk is at most PATH_MAX / 2 levels deep (deeper entries are reported
        # unreadable); since Python 3.11 a call between Python functions uses no C stack, so
        # a limit that covers that depth is safe.
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(limit, WALK_RECURSION_LIMIT))
        try:
            return self._run()
        finally:
            sys.setrecursionlimit(limit)

    def _run(self) -> BackupReport:
        started = time.monotonic()
        # The snapshot is dated when reading starts: it shows the data as of then.
        snapshot_time = self.options.time or clock.now()
        sources = self._check_sources()
        self.repo.load_index(reload=True)  # as of now, under the lock: a prune may just have run
        self._adopt_unindexed_packs()
        self.progress.start("backup")
        expected = self._previous_totals(sources)
        if expected is not None:
            self.progress.expect(files=expected[0], bytes_total=expected[1])
        with ThreadPoolExecutor(WORKERS, thread_name_prefix="backup") as pool, \
                ThreadPoolExecutor(1, thread_name_prefix="fingerprint") as hasher, \
                ThreadPoolExecutor(1, thread_name_prefix="stream") as streamer:
            self._pool = pool
            self._hasher = hasher
            self._streamer = streamer
            try:
                if self.options.dumps:
                    self._root_extra = self._store_dumps(snapshot_time)
                if b"/" in sources:  # the whole system (rule S5): everything else is inside it
                    self._root_devices[b"/"] = os.lstat(b"/").st_dev
                    root_ref = self._directory(b"/", self._root_devices[b"/"])
                else:
                    root_ref = self._virtual_dir(b"/", _path_trie(sources))
                self.progress.walk_done()  # every file is known now: the total is exact
                self._store_ready_dirs(drain=True)
            finally:
                self._stop_processes()
        root_tree = root_ref.id
        assert root_tree is not None  # every tree is stored once drained
        self.repo.flush()  # packs, then index: only now may a snapshot reference them
        self.progress.finish()
        snapshot = Snapshot(
            time=snapshot_time,
            host=self.options.host or socket.gethostname(),
            user=self._names.user(os.getuid()),
            paths=[_display(p) for p in sources],
            tree=root_tree,
            tags=list(self.options.tags),
            excludes=list(self.options.excludes),
            program=f"backupctl {__version__}",
        )
        if self.alarm is not None:  # counted in the backup's duration
            self._judge_alarm(snapshot)
        self.report.bytes_added = self.repo.bytes_added
        self.report.duration_s = time.monotonic() - started
        snapshot.summary = {k: v for k, v in self.report.as_dict().items()
                            if k not in ("snapshot_id", "time", "warnings", "packs_adopted", "alarm")}
        snapshot.summary["warnings"] = len(self.report.warnings)
        if self.report.suspect:  # the mark any reader of the repository sees (docs/FORMAT.md)
            snapshot.tags.append(SUSPECT_TAG)
            snapshot.summary["alarm"] = {k: v for k, v in (self.report.alarm or {}).items() if k != "suspect"}
        self.repo.save_snapshot(snapshot)
        if self.cache is not None:
            self.cache.commit()
        self.report.snapshot = snapshot
        return self.report

    def _judge_alarm(self, snapshot: Snapshot) -> None:
        """Compare the new tree with the parent snapshot's (the newest earlier one of this
        host and these paths) and judge it (agent.engine.alarm): counts, never file names."""
        assert self.alarm is not None
        paths = sorted(snapshot.paths)
        earlier = [s for s in self.repo.snapshots()
                   if s.host == snapshot.host and sorted(s.paths) == paths and s.time <= snapshot.time]
        if not earlier:
            return  # a first backup has nothing to be compared with
        parent = earlier[-1]
        assert parent.id is not None  # read from the repository
        tally = Tally(files_before=sum(int(parent.summary.get(k, 0) or 0)
                                       for k in ("files_new", "files_changed", "files_unchanged")))
        try:
            compare_trees(self.repo, parent.tree, snapshot.tree, tally)
        except BackupctlError as exc:
            # A parent that cannot be read (damaged, or a tree missing) must not cost the
            # practice its backup: saved without a verdict, and said (check tells the rest).
            self.report.alarm = {"suspect": False, "parent": parent.id.hex(),
                                 "skipped": f"the previous snapshot could not be compared: {exc.one_line()}"}
            return
        verdict = judge(tally.counts(), self.alarm)
        # The last snapshot before the alarm: the parent, or, when the parent is suspect
        # itself (the attack goes on), the one its own alarm named.
        last_good = (parent.summary.get("alarm", {}).get("last_good") if SUSPECT_TAG in parent.tags
                     else parent.id.hex())
        self.report.alarm = {"suspect": verdict.suspect, "parent": parent.id.hex(),
                             **verdict.as_summary(last_good=last_good)}

    # Snapshots read at most to find the previous run's totals (one small object each).
    MAX_PREVIOUS_READ = 3

    def _previous_totals(self, sources: list[bytes]) -> tuple[int, int] | None:
        """(files, bytes) of the previous backup of these sources to this repository, for
        the progress total: the files cache (local, what the last run saw), else the
        summary of the newest snapshot of this host and these paths."""
        if self.cache is not None:
            totals = self.cache.previous_totals()
            if totals is not None:
                return totals
        host = self.options.host or socket.gethostname()
        paths = sorted(_display(p) for p in sources)
        for hex_id in self.options.previous_snapshots[: self.MAX_PREVIOUS_READ]:
            try:
                snapshot = self.repo.load_snapshot(SnapshotId(bytes.fromhex(hex_id)))
            except (BackupctlError, ValueError):
                continue  # only an estimate: check reports what is wrong with a snapshot
            summary = snapshot.summary
            if snapshot.host != host or sorted(snapshot.paths) != paths or "bytes_total" not in summary:
                continue
            files = sum(int(summary.get(k, 0)) for k in ("files_new", "files_changed", "files_unchanged"))
            return files, int(summary["bytes_total"])
        return None

    def _check_sources(self) -> list[bytes]:
        if not self.options.paths:
            raise SourceError("no source paths are configured")
        sources = []
        for text in self.options.paths:
            path = os.path.abspath(os.fsencode(text))
            try:
                st = os.lstat(path)
            except OSError as exc:
                raise SourceError(f"source path {text} cannot be read: {exc.strerror}") from None
            if not stat.S_ISDIR(st.st_mode) and not stat.S_ISREG(st.st_mode):
                raise SourceError(f"source path {text} is neither a directory nor a file")
            self._root_devices[path] = st.st_dev
            sources.append(path)
        return sources

    # ---- trees ------------------------------------------------------------------

    def _queue_tree(self, nodes: list[Node], files: list[_PendingFile], folder: bytes | None = None,
                    signed: bytes | _Signed | None = None,
                    subdirs: list[tuple[Node, _TreeRef]] | None = None) -> _TreeRef:
        """Queue the tree of the directory just walked; stored once its files are done.
        With `signed`, the files cache records the folder's signature with its tree."""
        ref = _TreeRef()
        self._dir_jobs.append(_DirJob(nodes, files, ref, folder, signed, subdirs or []))
        self._files_pending += len(files)
        self.max_files_pending_seen = max(self.max_files_pending_seen, self._files_pending)
        self._store_ready_dirs()
        return ref

    def _store_ready_dirs(self, *, drain: bool = False) -> None:
        """Store queued trees, oldest first, while their files are done; waits for them
        when the queue is too long, or for every one if `drain`."""
        while self._dir_jobs:
            job = self._dir_jobs[0]
            must_wait = (drain or len(self._dir_jobs) > MAX_DIRS_PENDING
                         or self._files_pending > MAX_FILES_PENDING)
            if not must_wait and not all(f.done() for f in job.files):
                return
            if must_wait:
                self._submit_small_batch()  # its files may be the ones waited for
            self._dir_jobs.popleft()
            self._files_pending -= len(job.files)
            warnings = len(self.report.warnings)
            dropped = self._resolve_files(job.files)
            nodes = [n for n in job.nodes if id(n) not in dropped]
            for node, subtree in job.subdirs:  # queued, so stored, earlier
                node.subtree = subtree.id
            job.ref.id, _added = self.repo.store_blob(BLOB_TREE, encode_tree(nodes))
            if job.signed is not None and len(self.report.warnings) == warnings:
                # Every file read as walked: the next run may take this tree as it is. The
                # signature was computed by the walk when its subfolders' trees were known.
                assert self.cache is not None and job.folder is not None  # signed only with a cache
                signature = job.signed if isinstance(job.signed, bytes) else self._signature(
                    [(n, st, ref.id if ref is not None else None) for n, st, ref in job.signed])
                self.cache.record_folder(job.folder, signature, job.ref.id)

    def _virtual_dir(self, path: bytes, trie: _Trie) -> _TreeRef:
        """The tree of a directory above the sources: only the components leading to them."""
        nodes = []
        outer_pending, self._pending = self._pending, []  # a source may be a file
        outer_subdirs, self._subdirs = self._subdirs, []
        try:
            for name, child in sorted(trie.items()):
                child_path = os.path.join(path, name)
                st = os.lstat(child_path)
                if child is None:  # a source itself
                    node = self._node_for(child_path, name, st, root_dev=st.st_dev)
                    if node is not None:
                        nodes.append(node)
                else:
                    node = self._base_node(name, DIR, st)
                    self._subdirs.append((node, self._virtual_dir(child_path, child)))
                    nodes.append(node)
            return self._queue_tree(self._with_root_extra(path, nodes), self._pending, subdirs=self._subdirs)
        finally:
            self._pending = outer_pending
            self._subdirs = outer_subdirs

    def _with_root_extra(self, path: bytes, nodes: list[Node]) -> list[Node]:
        if path != b"/" or not self._root_extra:
            return nodes
        names = {n.name for n in nodes}
        for extra in self._root_extra:
            if extra.name in names:
                self._warn(b"/" + extra.name, "a source folder has this name: the database dumps are not saved")
                continue
            nodes = nodes + [extra]
        return nodes

    def _directory(self, path: bytes, root_dev: int) -> _TreeRef:
        self.report.dirs += 1
        outer_pending, self._pending = self._pending, []  # this directory's files
        outer_subdirs, self._subdirs = self._subdirs, []  # and subfolders
        try:
            try:
                names = sorted(os.listdir(path))  # bytes names, without "." and ".."
            except OSError as exc:
                self._warn(path, f"directory cannot be read ({exc.strerror}); saved as empty")
                return self._queue_tree([], [])
            return self._walk_entries(path, names, root_dev)
        finally:
            self._pending = outer_pending
            self._subdirs = outer_subdirs

    def _walk_entries(self, path: bytes, names: list[bytes], root_dev: int) -> _TreeRef:
        # The files cache's entries of this folder, read at once; names found unchanged.
        cache = self.cache
        cached = cache.folder(path) if cache is not None else None
        warnings = len(self.report.warnings)
        entries: list[_Entry] = []
        subfolders: dict[bytes, tuple[Node, _TreeRef]] = {}
        prefix = path if path == b"/" else path + b"/"  # os.path.join's result, without its call per entry
        excluded = self._exclude_matcher
        lstat = os.lstat
        for name in names:
            child = prefix + name
            if excluded(child, name):
                continue
            try:
                st = lstat(child)
            except OSError as exc:
                self._warn(child, f"vanished or unreadable ({exc.strerror})")
                continue
            entries.append((name, child, st))
            if stat.S_ISDIR(st.st_mode):  # walked first: the folder's signature has their trees
                subfolders[name] = self._dir_node(child, name, st, root_dev=root_dev)
        # Whether this folder may be taken whole from the previous run (FOLDER_RULE). Its
        # signature is computed once: here when every subfolder's tree is known (a leaf
        # folder, or subfolders taken whole), else when its tree is stored.
        signed: bytes | _Signed | None = None
        if cache is not None and path != b"/" and len(self.report.warnings) == warnings:
            rows: _Signed = [(name, st, subfolders[name][1] if name in subfolders else None)
                             for name, _child, st in entries]
            signed = rows
            if all(subtree.id is not None for _node, subtree in subfolders.values()):
                signed = self._signature([(n, st, sub.id if sub is not None else None) for n, st, sub in rows])
                reused = self._reuse_folder(cache, path, entries, cached, signed)
                if reused is not None:
                    return reused
            # else a subfolder's tree is still waiting for its files: it changed, so this
            # folder's tree cannot be the recorded one either.
        nodes = []
        seen: set[bytes] = set()
        for name, child, st in entries:
            subfolder = subfolders.get(name)
            if subfolder is not None:
                node: Node | None = subfolder[0]
            else:
                node = (self._file(child, name, st, cached, seen) if stat.S_ISREG(st.st_mode)  # most entries
                        else self._node_for(child, name, st, root_dev=root_dev, cached=cached, seen=seen))
            if node is not None:
                nodes.append(node)
        if cache is not None and cached:
            # Every cached file of the folder seen in one statement; those not found
            # unchanged (changed: recorded again once read; vanished) are dropped.
            cache.touch_folder(path, forget=[name for name in cached if name not in seen])
        if len(self.report.warnings) != warnings:
            signed = None  # an entry left out or not readable: never taken whole next time
        return self._queue_tree(self._with_root_extra(path, nodes), self._pending, path, signed, self._subdirs)

    def _signature(self, signed: list[tuple[bytes, os.stat_result, bytes | None]]) -> bytes:
        """What a folder's tree is made of, hashed: every entry's name, lstat fields, and
        subfolder's tree id; the owner names of the ids met; the options that decide what
        is kept. An unchanged signature gives an unchanged tree (FOLDER_RULE).

        Encoded with marshal version 0, which writes values only: versions from 1 on
        mark interned strings and from 3 on shared references, so their output would
        depend on how this process built the objects. repr() of the rows cost 0.3 s of
        a weekly backup of 100,000 letters (issue 19)."""
        fields = _SIGNED_STAT
        rows = [(name, fields(st), subtree) for name, st, subtree in signed]
        names = self._names
        users = [(uid, names.user(uid)) for uid in sorted({row[1][1] for row in rows})]
        groups = [(gid, names.group(gid)) for gid in sorted({row[1][2] for row in rows})]
        encoded = marshal.dumps((FOLDER_SIGNATURE_VERSION, self._options_key, users, groups, rows), 0)
        return hashlib.blake2b(encoded, digest_size=32).digest()

    def _reuse_folder(self, cache: FilesCache, path: bytes, entries: list[_Entry],
                      cached: dict[bytes, CachedRow] | None, signature: bytes) -> _TreeRef | None:
        """The previous run's tree of this folder if nothing in it changed: same
        signature, every file unchanged in the files cache with its chunks still in the
        repository, every subfolder's tree known now, the tree itself in the repository."""
        record = cache.folder_tree(path)
        if record is None or signature != record[0] or not self.repo.has_blob(record[1]):
            return None
        files = size = 0
        has_blob = self.repo.has_blob
        unchanged, chunks_of = cache.unchanged, cache.chunks
        for name, _child, st in entries:
            if stat.S_ISREG(st.st_mode):
                row = cached.get(name) if cached else None
                if row is None or not unchanged(row, st):
                    return None
                for chunk_id in chunks_of(row):
                    if not has_blob(chunk_id):
                        return None
                files += 1
                size += st.st_size
        if cached:
            cache.touch_folder(path)
        cache.touch_folder_tree(path)
        self.report.files_unchanged += files
        self.report.bytes_total += size
        self.report.folders_reused += 1
        self.progress.discovered(files=files, bytes_total=size)
        self.progress.advance(files=files, bytes_done=size)
        ref = _TreeRef()
        ref.id = record[1]
        return ref

    def _excluded(self, path: bytes, name: bytes) -> bool:
        return self._exclude_matcher(path, name)

    def _is_database(self, path: bytes) -> bool:
        return self._database_matcher(path, os.path.basename(path))


    def _base_node(self, name: bytes, node_type: str, st: os.stat_result) -> Node:
        uid, gid = st.st_uid, st.st_gid
        user, group = self._names.owner(uid, gid)
        return Node(name, node_type, st.st_mode & 0o7777, uid, gid, st.st_mtime_ns, user, group)

    def _dir_node(self, path: bytes, name: bytes, st: os.stat_result, *, root_dev: int) -> tuple[Node, _TreeRef]:
        """A subfolder of the directory being walked, and its tree (known once stored)."""
        node = self._base_node(name, DIR, st)
        if self.options.one_file_system and st.st_dev != root_dev:
            subtree = self._queue_tree([], [])  # a mount point: kept, not crossed
        else:
            subtree = self._directory(path, root_dev)
        self._subdirs.append((node, subtree))
        return node, subtree

    def _node_for(self, path: bytes, name: bytes, st: os.stat_result, *, root_dev: int,
                  cached: dict[bytes, CachedRow] | None = None, seen: set[bytes] | None = None) -> Node | None:
        if stat.S_ISDIR(st.st_mode):
            return self._dir_node(path, name, st, root_dev=root_dev)[0]
        if stat.S_ISLNK(st.st_mode):
            node = self._base_node(name, SYMLINK, st)
            try:
                node.target = os.readlink(path)
            except OSError as exc:
                self._warn(path, f"symbolic link cannot be read ({exc.strerror})")
                return None
            return node
        if stat.S_ISREG(st.st_mode):
            return self._file(path, name, st, cached, seen)
        self._warn(path, "special file (device, socket or pipe) skipped")
        return None

    # ---- files --------------------------------------------------------------------

    def _file(self, path: bytes, name: bytes, st: os.stat_result, cached: dict[bytes, CachedRow] | None = None,
              seen: set[bytes] | None = None) -> Node | None:
        """`cached`: the files cache's entries of the file's folder (by name), and `seen`
        the names found unchanged there; without them (a source that is a file), the
        cache is asked for this one path."""
        node = self._base_node(name, FILE, st)
        size = node.size = st.st_size
        node.sparse = st.st_blocks * 512 < size
        if st.st_nlink > 1:
            node.hardlink = f"{st.st_dev}:{st.st_ino}"
        self.report.bytes_total += size
        self.progress.discovered(files=1, bytes_total=size)
        is_new = True
        if cached is not None:
            row = cached.get(name)
            if row is not None:
                # The walk's commonest case, inline: unchanged, every chunk still stored.
                if FilesCache.unchanged(row, st):
                    chunks = FilesCache.chunks(row)
                    has_blob = self.repo.has_blob
                    if all(map(has_blob, chunks)):
                        node.sha256, node.chunks = row[5], chunks
                        assert seen is not None  # given with `cached`
                        seen.add(name)
                        self.report.files_unchanged += 1
                        self.progress.advance(files=1, bytes_done=size)
                        return node
                is_new = False  # in the cache, changed (or a chunk gone): read again
        elif self.cache is not None:
            cached_file = self.cache.lookup(path, st)
            if cached_file is not None and cached_file.unchanged and all(map(self.repo.has_blob, cached_file.chunks)):
                node.sha256, node.chunks = cached_file.sha256, cached_file.chunks
                self.cache.touch(path)
                self.report.files_unchanged += 1
                self.progress.advance(files=1, bytes_done=size)
                return node
            is_new = cached_file is None
        database = self._is_database(path)
        if st.st_size <= self._min_size and not database:
            # One chunk each: batched, a worker reads, hashes and stores many in one task.
            batch = self._batch
            self._pending.append(_PendingFile(node, None, path, st, is_new=is_new,
                                              batch=batch, slot=len(batch.paths)))
            batch.paths.append(path)
            batch.sizes.append(st.st_size)
            batch.size += st.st_size
            self._small_files += 1
            if len(batch.paths) >= SMALL_BATCH_FILES or batch.size >= BATCH_BYTES:
                self._submit_small_batch()
            return node
        if st.st_size <= self._chunker.params.max_size and not database:
            # Most files (letters, scans, images) fit in one read: a worker reads, hashes
            # and stores the whole file, so reading and SHA-256 run on both cores too.
            self._slots.acquire()
            assert self._pool is not None  # the executors are set while _run walks
            future = self._pool.submit(self._read_whole_file, path)
            future.add_done_callback(lambda _f: self._slots.release())
        else:
            # Large files and databases are cut by one streaming thread, so the walk
            # goes on through the other files meanwhile (a weekly backup rereads the
            # whole database while the walk checks thousands of unchanged letters).
            assert self._streamer is not None
            future = self._streamer.submit(self._stream_file, path, database=database)
        self._pending.append(_PendingFile(node, future, path, st, is_new=is_new))
        return node

    def _resolve_files(self, files: list[_PendingFile]) -> set[int]:
        """Collect the results of files read by workers, before their tree is stored.
        Returns the ids of the nodes of files that could not be read (left out)."""
        dropped: set[int] = set()
        records: list[tuple[bytes, os.stat_result, str, list[bytes]]] = []
        for pending in files:
            node, path, st = pending.node, pending.path, pending.st
            try:
                result = pending.result()
            except OSError as exc:
                self._warn(path, f"file cannot be read ({exc.strerror}); not in this snapshot")
                dropped.add(id(node))
                continue
            if result.chunk_ids is not None:
                node.chunks = result.chunk_ids
            else:
                assert result.chunk_futures is not None  # a streamed file
                node.chunks = [chunk_id for f in result.chunk_futures for chunk_id in f.result()]
            node.size = result.size  # exactly what the SHA-256 covers
            node.sha256 = result.sha256
            after = result.after
            if (after.st_size, after.st_mtime_ns, after.st_ctime_ns) != (st.st_size, st.st_mtime_ns, st.st_ctime_ns):
                # Keep what was read (it may still be the only copy) but say so, and do not
                # cache it: the next backup reads the file again.
                self._warn(path, "file changed while being read; the saved copy may be inconsistent")
                node.mtime_ns = after.st_mtime_ns
            elif self.cache is not None:
                records.append((path, st, node.sha256, node.chunks))
            self.report.bytes_read += result.size
            if pending.is_new:
                self.report.files_new += 1
            else:
                self.report.files_changed += 1
        if records and self.cache is not None:  # records are kept only with a cache
            self.cache.record_many(records)
        return dropped

    def _thread_chunker(self) -> Chunker:
        chunker: Chunker | None = getattr(self._local, "chunker", None)
        if chunker is None:
            chunker = self._local.chunker = self.repo.new_chunker()
        return chunker

    @staticmethod
    def _open(path: bytes) -> BinaryIO:
        return open(open_nofollow(path), "rb", buffering=0)

    def _submit_small_batch(self) -> None:
        batch = self._batch
        if not batch.paths:
            return
        self._batch = _SmallBatch()
        self._slots.acquire()
        if self._small_files < PROCESS_MIN_FILES:
            assert self._pool is not None  # the executors are set while _run walks
            batch.future = self._pool.submit(self._read_small_files, batch.paths, batch.sizes)
            batch.future.add_done_callback(lambda _f: self._slots.release())
            return
        if self._processes is None:
            self._start_processes()
        assert self._processes is not None
        batch.future = Future()
        batch.slot = self._spool_slots.pop()
        sealed = self._processes.submit(seal_small_files, self.repo.sealer, batch.paths, batch.sizes,
                                        self._min_size, self._spool_path, batch.slot * SPOOL_SLOT, SPOOL_SLOT)
        sealed.add_done_callback(lambda done: self._absorb_sealed(batch, done))

    def _start_processes(self) -> None:
        # Spawned, not forked: this process has threads (a fork would copy locks they
        # may hold), and spawned workers are this process's children, reaped at
        # shutdown, so their CPU time counts in the backup's (bench/run.py's wait4).
        # The spool is a private file (mode 0600) in memory when /dev/shm exists; it
        # holds sealed parts only (ciphertext), and is unlinked when the backup ends.
        directory = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
        directory = directory or tempfile.gettempdir()
        _remove_dead_spools(directory)
        fd, self._spool_path = tempfile.mkstemp(prefix=f"{SPOOL_PREFIX}{os.getpid()}-", dir=directory)
        try:
            os.ftruncate(fd, MAX_CHUNKS_IN_FLIGHT * SPOOL_SLOT)
            self._spool = mmap.mmap(fd, MAX_CHUNKS_IN_FLIGHT * SPOOL_SLOT)
        finally:
            os.close(fd)
        # One slot per task in flight: the semaphore `_slots` bounds them.
        self._spool_slots = list(range(MAX_CHUNKS_IN_FLIGHT))
        self._processes = ProcessPoolExecutor(WORKERS, mp_context=multiprocessing.get_context("spawn"),
                                              initializer=worker_init)

    def _stop_processes(self) -> None:
        if self._processes is not None:
            self._processes.shutdown(wait=True, cancel_futures=True)
            self._processes = None
        if self._spool is not None:
            self._spool.close()
            self._spool = None
            os.unlink(self._spool_path)

    def _absorb_sealed(self, batch: _SmallBatch,
                       done: Future[tuple[list[SmallFileResult], list[SealedPart]]]) -> None:
        """In the process pool's result thread: add the blobs a worker process sealed to
        the packs (unless already stored), and complete the batch with a _FileResult or
        an OSError per path, as `_read_small_files` does."""
        result = batch.future
        assert result is not None  # set before the batch went to the process
        try:
            items, placed = done.result()
            assert self._spool is not None  # mapped with the processes
            with memoryview(self._spool) as spool:
                # Copied from the spool straight into the pack's buffer.
                parts: list[tuple[bytes, bytes | memoryview, int]] = [
                    (p[0], spool[p[1] : p[1] + p[2]], p[3]) if len(p) == 4 else p for p in placed]
                self.repo.store_sealed_blobs(BLOB_DATA, parts)
                del parts
            result.set_result(self._tally(self._unseal_result(path, item)
                                          for path, item in zip(batch.paths, items, strict=True)))
        except BaseException as exc:  # a broken pool or a failed pack write fails the backup
            result.set_exception(exc)
        finally:
            self._spool_slots.append(batch.slot)  # copied out (or given up): free again
            self._slots.release()

    def _unseal_result(self, path: bytes, item: SmallFileResult) -> _FileOutcome:
        """A worker process's answer for one file (agent.engine.small_files) as a
        _FileResult, or the OSError that kept it from being read."""
        if type(item) is tuple:
            sha256, length, after_size, after_mtime, after_ctime, chunk_id = item
            return _FileResult(sha256, length, Stamp(after_size, after_mtime, after_ctime),
                               chunk_ids=[chunk_id] if chunk_id is not None else [])
        if isinstance(item, OSError):
            return item
        try:  # GREW past the minimum size meanwhile: the chunker decides
            return self._read_whole_file(path, progress=False)
        except OSError as exc:
            return exc

    def _tally(self, outcomes: Iterable[_FileOutcome]) -> list[_FileOutcome]:
        """The results of a batch of small files, in order (a _FileResult, or an OSError
        for a file that could not be read), counted once into the progress."""
        results: list[_FileOutcome] = []
        files = size = 0
        for outcome in outcomes:
            results.append(outcome)
            if not isinstance(outcome, OSError):
                files += 1
                size += outcome.size
        self.progress.advance(files=files, bytes_done=size)
        return results

    def _read_small_files(self, paths: list[bytes], sizes: list[int]) -> list[_FileOutcome]:
        """In a worker thread: `_read_small_file` for each path; an OSError in place of a
        result for a file that cannot be read (the others are still stored)."""
        return self._tally(self._read_small_or_error(path, walked) for path, walked in zip(paths, sizes, strict=True))

    def _read_small_or_error(self, path: bytes, walked: int) -> _FileOutcome:
        try:
            return self._read_small_file(path, walked=walked)
        except OSError as exc:
            return exc

    def _read_small_file(self, path: bytes, *, walked: int) -> _FileResult:
        """Read, fingerprint and store a file that was at most the chunker's minimum size
        when walked: one chunk, as the chunker would cut it (Chunker.chunks yields data of
        at most min_size whole), without its call. A file that grew past that meanwhile
        goes the general way."""
        fd = open_nofollow(path)
        try:
            data = read_small(fd, walked, self._min_size)
            if data is None:  # it grew: the chunker decides
                os.lseek(fd, 0, os.SEEK_SET)
                return self._read_whole_file(os.fdopen(os.dup(fd), "rb", buffering=0), progress=False)
            after = os.fstat(fd)
        finally:
            os.close(fd)
        chunk_ids: list[bytes] = [self.repo.store_blob(BLOB_DATA, data)[0]] if data else []
        return _FileResult(hashlib.sha256(data).hexdigest(), len(data), after, chunk_ids=chunk_ids)

    def _read_whole_file(self, path: bytes | BinaryIO, *, progress: bool = True) -> _FileResult:
        """In a worker: read, fingerprint and store a file of at most max_size bytes
        (`path`, or an open file, which is closed)."""
        digest = hashlib.sha256()
        chunk_ids: list[bytes] = []
        size = 0
        with self._open(path) if isinstance(path, bytes) else path as handle:
            for chunk in self._thread_chunker().chunks(handle, size_hint=os.fstat(handle.fileno()).st_size):
                digest.update(chunk)
                size += len(chunk)
                chunk_ids.append(self.repo.store_blob(BLOB_DATA, chunk)[0])
            after = os.fstat(handle.fileno())
        if progress:
            self.progress.advance(files=1, bytes_done=size)
        return _FileResult(digest.hexdigest(), size, after, chunk_ids=chunk_ids)

    def _stream_file(self, path: bytes, *, database: bool) -> _FileResult:
        """In the streaming thread: a large file is cut as a stream, its chunks stored by workers."""
        with self._open(path) as handle:
            sparse = is_sparse(os.fstat(handle.fileno()))
            sha256, size, futures = self._cut_stream(HoleSkippingReader(handle) if sparse else handle,
                                                     database=database)
            after = os.fstat(handle.fileno())
        return _FileResult(sha256, size, after, chunk_futures=futures)

    def _store_dumps(self, moment: _dt.datetime) -> list[Node]:
        """Stream each database dump into the repository (agent.engine.source.dumps); returns the
        /backupctl-databases folder for the snapshot's root, or nothing if none worked."""
        by_type: dict[bytes, list[Node]] = {}
        mtime_ns = int(moment.timestamp() * 1e9)
        for dump in self.options.dumps:
            try:
                with dump.open() as stream:
                    sha256, size, futures = self._cut_stream(stream, database=False)
                chunks = [chunk_id for f in futures for chunk_id in f.result()]
            except DumpError as exc:
                self._warn(b"/" + dump.path, str(exc))
                self.report.database_failures += 1
                continue
            folder, _type, name = dump.path.split(b"/")
            node = Node(name=name, type=FILE, mode=0o600, uid=os.getuid(), gid=os.getgid(), mtime_ns=mtime_ns,
                        user=self._names.user(os.getuid()), group=self._names.group(os.getgid()),
                        size=size, sha256=sha256, chunks=chunks)
            by_type.setdefault(_type, []).append(node)
            self.report.bytes_total += size
            self.report.bytes_read += size
            self.report.files_new += 1
            self.progress.discovered(files=1, bytes_total=size)  # known once streamed
            self.report.databases_dumped.append("/" + dump.path.decode())
        if not by_type:
            return []
        folders = []
        for kind, nodes in sorted(by_type.items()):
            folder_node = Node(name=kind, type=DIR, mode=0o700, uid=os.getuid(), gid=os.getgid(), mtime_ns=mtime_ns,
                               user=self._names.user(os.getuid()), group=self._names.group(os.getgid()))
            folder_node.subtree = self.repo.store_blob(BLOB_TREE, encode_tree(nodes))[0]
            folders.append(folder_node)
        top = Node(name=DUMP_FOLDER, type=DIR, mode=0o700, uid=os.getuid(), gid=os.getgid(), mtime_ns=mtime_ns,
                   user=self._names.user(os.getuid()), group=self._names.group(os.getgid()))
        top.subtree = self.repo.store_blob(BLOB_TREE, encode_tree(folders))[0]
        self.report.dirs += 1 + len(folders)
        return [top]

    def _cut_stream(self, handle: IO[bytes] | HoleSkippingReader, *,
                    database: bool) -> tuple[str, int, list[Future[list[bytes]]]]:
        """Cut a stream into chunks stored by the workers; returns (SHA-256, size, futures
        of the chunk ids). The SHA-256 is fed in order by a one-thread executor, so
        fingerprinting (which releases the GIL) overlaps with reading and cutting."""
        digest = hashlib.sha256()
        hashing: list[Future[None]] = []
        futures: list[Future[list[bytes]]] = []
        size = 0
        chunks = (self._chunker.fixed_chunks(handle, self.options.database_chunk_size) if database
                  else self._chunker.chunks(handle))
        batch: list[bytes | memoryview] = []
        batch_bytes = 0
        for chunk in chunks:
            size += len(chunk)
            batch.append(chunk)
            batch_bytes += len(chunk)
            # Small database blocks travel in batches of about a megabyte: one task
            # per 32 KiB block measured 30 % slower than one per batch.
            if batch_bytes >= BATCH_BYTES:
                futures.append(self._submit_batch(batch, digest, hashing))
                self.progress.advance(bytes_done=batch_bytes)
                batch, batch_bytes = [], 0
        if batch:
            futures.append(self._submit_batch(batch, digest, hashing))
            self.progress.advance(bytes_done=batch_bytes)
        assert self._hasher is not None  # the executors are set while _run walks
        sha256 = self._hasher.submit(digest.hexdigest).result()  # after every update, in order
        self.progress.advance(files=1)
        return sha256, size, futures

    def _submit_batch(self, batch: list[bytes | memoryview], digest: _Digest,
                      hashing: list[Future[None]]) -> Future[list[bytes]]:
        # The fingerprint is fed batch by batch, in order, by the one-thread executor.
        assert self._hasher is not None and self._pool is not None  # set while _run walks

        def fingerprint() -> None:
            for chunk in batch:
                digest.update(chunk)

        def store() -> list[bytes]:
            return [self.repo.store_blob(BLOB_DATA, chunk)[0] for chunk in batch]

        hashing.append(self._hasher.submit(fingerprint))
        if len(hashing) > MAX_CHUNKS_IN_FLIGHT:  # bound the data waiting to be hashed
            hashing.pop(0).result()
        self._slots.acquire()
        future = self._pool.submit(store)
        future.add_done_callback(lambda _f: self._slots.release())
        return future

    def _warn(self, path: bytes, message: str) -> None:
        self.report.warnings.append((_display(path), message))


SPOOL_PREFIX = "backupctl-spool-"


def _remove_dead_spools(directory: str) -> None:
    """Remove the spools of backups that were killed (SIGKILL, power cut of a tmpfs-less
    /tmp: nothing ran their cleanup): each is named after its backup's process id, and
    only those of a process that no longer exists, and owned by this user, are removed.
    A spool holds ciphertext only, but 8 MiB of memory each in /dev/shm."""
    try:
        names = [n for n in os.listdir(directory) if n.startswith(SPOOL_PREFIX)]
    except OSError:
        return
    for name in names:
        pid_text = name[len(SPOOL_PREFIX):].split("-", 1)[0]
        if not pid_text.isdigit():
            continue
        path = os.path.join(directory, name)
        try:
            if os.lstat(path).st_uid != os.getuid():
                continue
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            try:
                os.unlink(path)
            except OSError:
                pass
        except OSError:  # alive under another user (EPERM), or gone meanwhile
            continue


def _path_trie(sources: list[bytes]) -> _Trie:
    """{b"srv": {b"cabinet": None}} for [b"/srv/cabinet"]: None marks a source."""
    trie: _Trie = {}
    for source in sources:
        parts = [p for p in source.split(b"/") if p]
        node = trie
        for part in parts[:-1]:
            existing = node.get(part)
            if existing is None:
                if part in node:
                    break  # an ancestor is itself a source
                existing = node[part] = {}
            node = existing
        else:
            node[parts[-1]] = None
    return trie


class _Matcher:
    """`_matches_any` for fixed patterns, compiled once: one regular expression for the
    name patterns and one for the path patterns (fnmatch per pattern and per file was
    a tenth of the walk's time on 100,000 letters, issue 19)."""

    __slots__ = ("_name", "_path")

    def __init__(self, patterns: list[str]) -> None:
        names = [fnmatch.translate(p) for p in patterns if "/" not in p]
        paths = [fnmatch.translate(p) for p in patterns if "/" in p]
        self._name = re.compile("|".join(names)).match if names else None
        self._path = re.compile("|".join(paths)).match if paths else None

    def __call__(self, path: bytes, name: bytes) -> bool:
        if self._name is not None and self._name(os.fsdecode(name)):
            return True
        return self._path is not None and self._path(os.fsdecode(path)) is not None


def _matches_any(patterns: list[str], path: bytes, name: bytes) -> bool:
    """A pattern without "/" matches the name anywhere; one with "/" the full path."""
    if not patterns:
        return False
    text_name = os.fsdecode(name)
    text_path = os.fsdecode(path)
    for pattern in patterns:
        target = text_path if "/" in pattern else text_name
        if fnmatch.fnmatchcase(target, pattern):
            return True
    return False

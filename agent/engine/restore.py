"""Restore: bring a snapshot back, byte for byte, and prove it with SHA-256.

Every restored file's SHA-256 is computed over exactly the bytes written and compared
with the fingerprint recorded at backup time (rules C3, C5); any mismatch or unreadable
chunk is reported with the file's path and the restore exits non-zero, while every
other file is still restored.

Nothing existing is overwritten unless asked: the plan is checked against the target
before the first byte is written. The target itself is reached from "/" without following
a link another user controls (agent.engine.target.open_target). Nothing found in the
target is ever followed: every
write goes through agent.engine.target (folder descriptors, O_NOFOLLOW, O_EXCL), so a
symbolic link planted in the target cannot make root write or chown outside it.
Setuid, setgid and sticky bits are restored only with keep_special_bits.

Before the first write, too: every --include must name something (else UsageError naming
each one, with the snapshot's closest names), and the target's file system must have room
for the plan (else RestoreTargetError with both sizes). Ctrl-C stops the content workers at
their next blob (agent/engine/restore_files.py); what they left half written does not have
its recorded SHA-256, so --resume writes it again.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import os
import stat
import time
from dataclasses import dataclass, field
from collections import deque
from functools import partial
from typing import Any, Callable, Iterable, Iterator, TypeVar

from agent.crypto.ids import new_file_fingerprint
from agent.engine import browse
from agent.engine.expansion import Expansion
from agent.engine.patterns import Pattern, closest_names, compile_all, quoted
from agent.engine.progress import Progress, SilentProgress
from agent.engine.restore_files import SPARSE_BLOCK, Batch, ContentRestorer, FileTarget
from agent.engine.target import TargetTree, not_a_folder, permissions, target_error as _target_error
from agent.errors import RestoreTargetError, UsageError
from agent.repo.lock import PendingLock, overlapped_shared_lock
from agent.repo.repository import Repository
from agent.repo.snapshot import Snapshot
from agent.repo.tree import DIR, FILE, SYMLINK, Node

_T = TypeVar("_T")



CAP_CHOWN = 0  # linux/capability.h
# Room asked beyond the blocks the files and folders take: file-system metadata (inodes,
# extent trees, journal) is not in the count; a restore must not fill the disk to the last byte.
SPACE_MARGIN = 0.02
SPACE_SLACK = 1024 * 1024
# Files handed to the content workers at a time, and batches in flight: what a restore
# holds of its plan (about 1.5 KiB per file: the file's node, its pieces' places) is at
# most (MAX_BATCHES_IN_FLIGHT + 1) * BATCH_FILES files, whatever the snapshot's size.
BATCH_FILES = 4096
MAX_BATCHES_IN_FLIGHT = 2
# From this many files, one-chunk files are restored by worker processes (local
# repositories; agent/engine/restore_files.py): below, forking them costs more than it saves.
PROCESSES_FROM_FILES = 2000
# Folder listings kept decoded between the walks of a restore (the look before any
# write, then the restore), counted in entries (about 780 bytes each, 75 MiB in all):
# listings past it are read again by the next walk, so memory stays bounded.
KEEP_LISTED_ENTRIES = 100_000


class _Planned:
    """What the walk gathered for one batch: files for the workers, then the links
    restored once those files are done (a hard link needs its first name written)."""

    __slots__ = ("files", "links", "hardlinks", "size")

    def __init__(self) -> None:
        self.files: list[FileTarget] = []
        self.links: list[tuple[bytes, Node]] = []
        self.hardlinks: list[tuple[bytes, FileTarget]] = []
        self.size = 0  # entries of the three


def target_file_system(path: bytes | str) -> os.statvfs_result:
    """The file system that holds `path`, or its nearest existing parent when it does not
    exist yet (a restore target, a restore test's scratch folder)."""
    probe = os.path.abspath(os.fsencode(path))
    while not os.path.exists(probe) and probe != os.path.dirname(probe):
        probe = os.path.dirname(probe)
    return os.statvfs(probe)


def available_space(path: bytes | str) -> tuple[int, int]:
    """(bytes free for an unprivileged write, block size) where `path` is or would be made.
    Root may also use the reserved blocks; they are kept for the system, not counted."""
    stats = target_file_system(path)
    return stats.f_bavail * stats.f_frsize, stats.f_frsize or 4096


def mib(count: int) -> str:
    return f"{count / 2**20:.1f} MiB"


def can_set_owners() -> bool:
    """Whether restored files get their recorded owners: as root, or holding CAP_CHOWN (the
    installed server's /usr/local/bin/backupctl runs a restore as the service user with it,
    agent/service_install/wrapper.py)."""
    if os.geteuid() == 0:
        return True
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> CAP_CHOWN & 1)
    except (OSError, ValueError):
        pass
    return False

@contextlib.contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """Python's cycle collector off while restoring. A restore allocates several objects
    per file (its node, its place in the plan) that live until the file is written, and
    with the index and the listings alive the collector's full passes walked all of
    them again and again: a profile of 100,000 small files put a third of the main
    thread's time on the lines that allocate. A restore makes no reference cycles to
    speak of; whatever it leaves is collected when the collector is turned back on."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


@dataclass
class RestoreReport:
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    hardlinks: int = 0
    bytes: int = 0
    verified: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    duration_s: float = 0.0
    planned: list[str] = field(default_factory=list)
    skipped: int = 0  # files of an interrupted restore found already intact (--resume)
    space_needed: int = 0  # bytes the restore would take on the target's file system (margin included)
    space_available: int = 0

    def as_dict(self) -> dict[str, Any]:  # a JSON document (--json), read back by the commands
        return {
            "files": self.files, "dirs": self.dirs, "symlinks": self.symlinks,
            "hardlinks": self.hardlinks, "bytes": self.bytes,
            "sha256_verified": self.verified, "already_restored": self.skipped,
            "failures": [{"path": p, "problem": m} for p, m in self.failures],
            "duration_s": round(self.duration_s, 3),
            "space_needed": self.space_needed, "space_available": self.space_available,
        }


def _intact(fd: int, node: Node, *, owner_checked: bool) -> bool:
    """Is the file open on `fd` one an interrupted restore finished: a regular file with
    one name (a hard link to a file elsewhere is never trusted), owned by root or by the
    snapshot's owner (a user cannot plant a file root would then adopt), of the node's
    size and SHA-256, read from the descriptor?"""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or st.st_size != node.size:
        return False
    if owner_checked and st.st_uid not in (0, node.uid):
        return False
    digest = new_file_fingerprint()
    while block := os.read(fd, 1 << 20):
        digest.update(block)
    return digest.hexdigest() == node.sha256


class RestoreEngine:
    def __init__(
        self,
        repo: Repository,
        snapshot: Snapshot,
        target: str,
        *,
        includes: list[str] | None = None,
        excludes: list[str] | None = None,
        overwrite: bool = False,
        resume: bool = False,
        dry_run: bool = False,
        keep_special_bits: bool = False,
        expect_root: tuple[int, int] | None = None,
        require_empty: bool = False,
        progress: Progress | None = None,
    ) -> None:
        self.repo = repo
        self.snapshot = snapshot
        self.target = os.path.abspath(os.fsencode(target))
        # One rule with `find` (agent/engine/patterns.py): a bare name matches anywhere, a
        # pattern with "/" the path; a folder matched brings (or leaves out) its content.
        self.includes = compile_all(includes or [])
        self.excludes = compile_all(excludes or [])
        # Resuming an interrupted restore: files already there with the recorded SHA-256
        # are kept (and count as verified); anything else in the way is replaced.
        self.resume = resume
        self.overwrite = overwrite or resume
        self.dry_run = dry_run
        self.keep_special_bits = keep_special_bits
        # (st_dev, st_ino) the target folder must have (restore-test's fresh scratch folder).
        self.expect_root = expect_root
        # export --target: into a new or empty folder only (checked on the folder opened).
        self.require_empty = require_empty
        self.progress = progress or SilentProgress()
        self.report = RestoreReport()
        self._lock: PendingLock | None = None  # the shared lock being taken while run() reads
        self._same_owner = can_set_owners()
        self._files_bytes = 0  # what the files selected hold, for the progress bar
        self._files_count = 0

    # ---- plan ----------------------------------------------------------------

    def _selected(self, expansion: Expansion, unmatched: list[Pattern] | None = None) -> Iterator[tuple[bytes, Node]]:
        """The snapshot's entries this restore covers, depth-first, streamed: nothing of
        the walk is kept. `unmatched`: the --include patterns nothing matched yet (emptied
        as they match)."""
        def on_error(path: bytes, exc: Exception) -> None:
            if unmatched is not None:  # said once, by the first walk
                self.report.failures.append((os.fsdecode(path) or "/", f"directory listing unreadable: {exc}"))

        includes, excludes = self.includes, self.excludes
        for path, node in expansion.walk(on_error):
            if includes or excludes:
                text = os.fsdecode(path)
                if includes:
                    if not any(p.covers(text) for p in includes):
                        continue
                    if unmatched:
                        unmatched[:] = [p for p in unmatched if not p.covers(text)]
                if excludes and any(p.covers(text) for p in excludes):
                    continue
            yield path, node

    def _refuse_unmatched(self, unmatched: list[Pattern]) -> None:
        """Before anything is written: each --include that names nothing, with the closest
        names of the snapshot (for the person at the terminal; never logged)."""
        names = browse.names_in(self.repo, [self.snapshot])
        said = []
        for pattern in unmatched:
            close = closest_names(pattern.text, names)
            said.append(f"--include {quoted(pattern.text)} matches nothing"
                        + (f" (closest names: {', '.join(quoted(n) for n in close)})" if close else ""))
        raise UsageError(f"{'; '.join(said)} in snapshot {self.snapshot.short_id}",
                         hint="nothing was written; give a name shown, or search every snapshot with "
                              "`backupctl find -i '*part of the name*'`")

    def run(self) -> RestoreReport:
        # No prune meanwhile; the lock's round trips run while the index and listings are read.
        with overlapped_shared_lock(self.repo, "restore") as self._lock, _no_cycle_collection():
            return self._run()

    def _run(self) -> RestoreReport:
        started = time.monotonic()
        self.repo.load_index(for_reading=True)
        # The walk is streamed, twice (a look before anything is written, then the
        # restore): listings are kept only up to a budget, so a million files restore
        # in bounded memory (browse keeps them otherwise: one decoding, not two).
        expansion = Expansion(self.repo, self.snapshot.tree, keep_entries=KEEP_LISTED_ENTRIES)
        unmatched = list(self.includes)
        if self.dry_run:
            for path, node in self._selected(expansion, unmatched):
                self.report.planned.append(os.fsdecode(path))
                self._count(node)
            if unmatched:
                self._refuse_unmatched(unmatched)
            self._measure_space(self._selected(expansion), None)
            return self.report
        if target_file_system(self.target).f_flag & os.ST_RDONLY:  # said as such, not as "full"
            raise _target_error(OSError(errno.EROFS, os.strerror(errno.EROFS)), os.fsdecode(self.target))
        # Room is checked before the target folder is even made; files that --overwrite or
        # --resume would replace or keep count as room once the target is open (below).
        self._measure_space(self._selected(expansion, unmatched), None)
        if unmatched:
            self._refuse_unmatched(unmatched)
        replacing = self.overwrite and os.path.lexists(self.target)
        if not replacing:
            self._refuse_no_room()
        if self._lock is not None:
            self._lock.confirmed()  # before anything is written to the target
        with TargetTree(self.target, overwrite=self.overwrite, expect=self.expect_root,
                        require_empty=self.require_empty) as tree:
            self._refuse_existing(tree, self._selected(expansion))
            if replacing:
                self._measure_space(self._selected(expansion), tree)
                self._refuse_no_room()
            try:
                self._restore(tree, self._selected(expansion))
            except KeyboardInterrupt:
                # Ctrl-C: the workers have stopped (restore_files); the bar leaves the terminal
                # before the line that says how to go on (the command's, agent/cli/restore_cmd.py).
                self.progress.finish()
                raise
        self.report.duration_s = time.monotonic() - started
        return self.report

    def _refuse_no_room(self) -> None:
        if self.report.space_needed > self.report.space_available:
            raise RestoreTargetError(
                f"the restore target {os.fsdecode(self.target)} is too full: this restore needs about "
                f"{mib(self.report.space_needed)}, {mib(self.report.space_available)} are available",
                hint="nothing was written; free some space or choose another --target (or restore less "
                     "with --include)")

    def _measure_space(self, plan: Iterable[tuple[bytes, Node]], tree: TargetTree | None) -> None:
        """What the plan takes on the target's file system, before anything is written:
        every file rounded up to whole blocks, less the holes of sparse files (all-zero
        chunks), one block per folder and link, with a margin. With --overwrite or --resume,
        what sits at the files' names is replaced or kept: its blocks count as free."""
        available, block = available_space(self.target)
        zero_ids: dict[int, bytes] = {}
        links: set[str] = set()  # the names of one file after the first take no room
        needed = files_bytes = files = 0
        for path, node in plan:
            if node.type != FILE:
                needed += block
                continue
            if node.hardlink:
                if node.hardlink in links:
                    continue
                links.add(node.hardlink)
            files_bytes += node.size
            files += 1
            size = node.size - (self._holes(node, zero_ids) if node.sparse else 0)
            needed += -(-size // block) * block
            if tree is not None and self.overwrite:
                try:
                    st = tree.lstat(path)
                except RestoreTargetError:  # a link or file where a folder belongs: replaced later, no room
                    continue
                if st is not None and stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
                    available += st.st_blocks * 512
        self.report.space_needed = needed + int(needed * SPACE_MARGIN) + SPACE_SLACK
        self.report.space_available = available
        self._files_bytes, self._files_count = files_bytes, files

    def _holes(self, node: Node, zero_ids: dict[int, bytes]) -> int:
        """Bytes of a sparse file that restore leaves as holes: its all-zero chunks (a
        chunk's id is keyed by its content, so an all-zero chunk is recognised by the id of
        zeros of its length), less a block at each end that may be written."""
        holes = 0
        for chunk_id in node.chunks:
            location = self.repo.locate(chunk_id)
            if location is None or location.raw_length <= 2 * SPARSE_BLOCK:
                continue
            length = location.raw_length
            if length not in zero_ids:
                zero_ids[length] = self.repo.chunk_id(bytes(length))
            if zero_ids[length] == chunk_id:
                holes += length - 2 * SPARSE_BLOCK
        return holes

    def _restore(self, tree: TargetTree, plan: Iterable[tuple[bytes, Node]]) -> None:
        """Folders as the walk reaches them; files handed to the workers BATCH_FILES at a
        time, at most two batches in flight (the workers restore one while the walk plans
        the next); links once the batch before them is done. What is held does not grow
        with the snapshot: the batches, the folders (for their metadata, set last) and the
        first name of each hard-linked file."""
        self.progress.start("restore", self._files_bytes)
        made: list[tuple[bytes, Node, int]] = []
        known_dirs: set[bytes] = {b""}
        first_of_link: dict[str, FileTarget] = {}
        batch = _Planned()
        pending: deque[tuple[Batch, _Planned]] = deque()
        contents = ContentRestorer(self.repo, tree=tree, progress=self.progress, same_owner=self._same_owner,
                                   keep_special_bits=self.keep_special_bits,
                                   processes=self._files_count >= PROCESSES_FROM_FILES)
        with contents:
            for path, node in plan:
                if node.type == DIR:
                    made.append((path, node, self._guard(partial(tree.make_dir, path), path)))
                    known_dirs.add(path)
                    self.report.dirs += 1
                    continue
                # With --include a file may be selected without its folders: create them too.
                # (rpartition: a walk's paths are relative, one "/" between names; dirname's
                # generality cost a tenth of this loop.)
                parent = path.rpartition(b"/")[0]
                if parent not in known_dirs:
                    self._guard(partial(tree.make_dir, parent), parent)
                    known_dirs.add(parent)
                if node.type == SYMLINK:
                    batch.links.append((path, node))
                elif node.hardlink and node.hardlink in first_of_link \
                        and first_of_link[node.hardlink].node.sha256 == node.sha256:
                    batch.hardlinks.append((path, first_of_link[node.hardlink]))
                else:
                    # A link whose recorded content differs from its first name's (the file
                    # changed between reading the two) is restored as a file of its own.
                    file = FileTarget(path, node)
                    if node.hardlink and node.hardlink not in first_of_link:
                        first_of_link[node.hardlink] = file
                    batch.files.append(file)
                batch.size += 1
                if batch.size >= BATCH_FILES:
                    self._hand_over(tree, contents, batch, pending)
                    batch = _Planned()
            self._hand_over(tree, contents, batch, pending)
            while pending:
                self._done(tree, contents, *pending.popleft())
        self.report.files += contents.files
        self.report.bytes += contents.bytes
        self.report.verified += contents.verified
        self.report.failures.extend(contents.failures)
        for path, node, ino in reversed(made):  # deepest first: children no longer touch the mtime
            self._guard(partial(tree.set_dir_metadata, path, ino, uid=self._uid(node), gid=node.gid,
                                mode=self._mode(node), mtime_ns=node.mtime_ns), path)
        self.progress.finish()

    def _hand_over(self, tree: TargetTree, contents: ContentRestorer, planned: "_Planned",
                   pending: deque[tuple[Batch, "_Planned"]]) -> None:
        while len(pending) >= MAX_BATCHES_IN_FLIGHT:
            self._done(tree, contents, *pending.popleft())
        files = self._skip_already_restored(tree, planned.files) if self.resume else planned.files
        pending.append((contents.submit(files), planned))
        planned.files = []  # the workers hold them now; kept only as long as they do

    def _done(self, tree: TargetTree, contents: ContentRestorer, batch: Batch, planned: "_Planned") -> None:
        contents.wait(batch)
        for path, node in planned.links:
            self._guard(partial(tree.symlink, path, node.target or b"", uid=self._uid(node), gid=node.gid,
                                mtime_ns=node.mtime_ns), path)
            self.report.symlinks += 1
        for path, source in planned.hardlinks:
            self._restore_hardlink(tree, path, source)

    def _uid(self, node: Node) -> int | None:
        return node.uid if self._same_owner else None

    def _mode(self, node: Node) -> int:
        return permissions(node.mode, keep_special_bits=self.keep_special_bits)

    def _skip_already_restored(self, tree: TargetTree, files: list[FileTarget]) -> list[FileTarget]:
        """Files an interrupted restore already wrote and verified are left as they are;
        anything else at their name (a link, a FIFO, a hard link, another's file) is replaced."""
        remaining = []
        for file in files:
            fd = tree.open_existing(file.rel)
            if fd is None:
                remaining.append(file)
                continue
            try:
                if not _intact(fd, file.node, owner_checked=self._same_owner):
                    remaining.append(file)
                    continue
                file.ino = os.fstat(fd).st_ino
                node = file.node

                def metadata(fd: int = fd, node: Node = node) -> None:
                    if self._same_owner:
                        os.fchown(fd, node.uid, node.gid)
                    os.fchmod(fd, self._mode(node))
                    os.utime(fd, ns=(node.mtime_ns, node.mtime_ns))

                self._guard(metadata, file.rel)
            finally:
                os.close(fd)
            file.done = True
            file.verified = True
            self.report.files += 1
            self.report.bytes += file.node.size
            self.report.verified += 1
            self.report.skipped += 1
            self.progress.advance(files=1, bytes_done=file.node.size)
        return remaining

    def _count(self, node: Node) -> None:
        if node.type == DIR:
            self.report.dirs += 1
        elif node.type == SYMLINK:
            self.report.symlinks += 1
        else:
            self.report.files += 1
            self.report.bytes += node.size

    def _refuse_existing(self, tree: TargetTree, plan: Iterable[tuple[bytes, Node]]) -> None:
        """Before the first write: anything in the way is named, and nothing is written."""
        if self.overwrite or tree.was_empty:  # a new or empty target: nothing to look for
            return
        clashes = []
        absent: bytes | None = None  # a folder not in the target: nothing below it can clash
        for path, node in plan:
            if absent is not None and path.startswith(absent):
                continue
            st = tree.lstat(path)  # a parent that is not a real folder is refused here
            if st is None:
                if node.type == DIR:
                    absent = path + b"/"
            elif node.type == DIR:
                if not stat.S_ISDIR(st.st_mode):
                    raise not_a_folder(path, st)
            else:
                clashes.append(path)
        if clashes:
            raise RestoreTargetError(
                f"{len(clashes)} file(s) already exist in the target, e.g. {os.fsdecode(clashes[0])}",
                hint="restore into an empty directory, --resume an interrupted restore, or --overwrite to "
                     "replace them",
            )

    def _guard(self, action: Callable[[], _T], path: bytes) -> _T:
        # Callers in loops pass functools.partial (or defaults) rather than a closure over the loop
        # variables: the action is called at once here, but the binding then says so plainly.
        try:
            return action()
        except OSError as exc:
            raise _target_error(exc, os.fsdecode(path)) from None

    # ---- links ------------------------------------------------------------------------

    def _restore_hardlink(self, tree: TargetTree, path: bytes, source: FileTarget) -> None:
        display = os.fsdecode(path)
        if not source.ino or source.failed:  # the first link failed; its failure is already reported
            self.report.failures.append((display, "not restored: the file it is a hard link to failed"))
            return
        self._guard(lambda: tree.hardlink(source.rel, source.ino, path), path)
        self.report.hardlinks += 1
        self.report.files += 1
        if source.verified:  # the same inode as a file whose SHA-256 matched
            self.report.verified += 1
        else:
            self.report.failures.append((display, "hard link to a file that failed verification"))

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
"""

from __future__ import annotations

import fnmatch
import os
import stat
import time
from dataclasses import dataclass, field
from typing import Callable, TypeVar

from agent.crypto.ids import new_file_fingerprint
from agent.engine.expansion import Expansion
from agent.engine.progress import Progress, SilentProgress
from agent.engine.restore_files import ContentRestorer, FileTarget
from agent.engine.target import TargetTree, not_a_folder, permissions, target_error as _target_error
from agent.errors import RestoreTargetError
from agent.repo.lock import shared_lock_for_reading
from agent.repo.repository import Repository
from agent.repo.snapshot import Snapshot
from agent.repo.tree import DIR, FILE, SYMLINK, Node

_T = TypeVar("_T")



CAP_CHOWN = 0  # linux/capability.h


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

    def as_dict(self) -> dict:
        return {
            "files": self.files, "dirs": self.dirs, "symlinks": self.symlinks,
            "hardlinks": self.hardlinks, "bytes": self.bytes,
            "sha256_verified": self.verified, "already_restored": self.skipped,
            "failures": [{"path": p, "problem": m} for p, m in self.failures],
            "duration_s": round(self.duration_s, 3),
        }


def _matches(path: str, patterns: list[str]) -> bool:
    """A path is selected when a pattern matches it or one of its parent directories."""
    parts = path.split("/")
    for i in range(1, len(parts) + 1):
        prefix = "/".join(parts[:i])
        if any(fnmatch.fnmatchcase(prefix, p) for p in patterns):
            return True
    return False


def _excluded(path: str, patterns: list[str]) -> bool:
    """Like [source] exclude: a pattern without "/" matches a name anywhere, one with "/"
    the path or one of its parents; an excluded folder takes its content with it."""
    parts = path.split("/")
    for pattern in patterns:
        if "/" not in pattern and any(fnmatch.fnmatchcase(part, pattern) for part in parts):
            return True
        if "/" in pattern and _matches(path, [pattern]):
            return True
    return False


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
        self.includes = [p.lstrip("/") for p in (includes or [])]
        self.excludes = [p.lstrip("/") for p in (excludes or [])]
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
        self._same_owner = can_set_owners()
        self._verified: set[bytes] = set()  # paths (relative to the target) whose SHA-256 matched

    # ---- plan -----------------------------------------------------------------

    def _plan(self) -> list[tuple[bytes, Node]]:
        def on_error(path: bytes, exc: Exception) -> None:
            self.report.failures.append((os.fsdecode(path) or "/", f"directory listing unreadable: {exc}"))

        plan = []
        # Each listing read once, and a tree that would expand far beyond what is stored
        # (a crafted DAG) refused before anything is planned.
        for path, node in Expansion(self.repo, self.snapshot.tree).walk(on_error):
            if self.includes and not _matches(os.fsdecode(path), self.includes):
                continue
            if self.excludes and _excluded(os.fsdecode(path), self.excludes):
                continue
            plan.append((path, node))
        return plan

    def run(self) -> RestoreReport:
        with shared_lock_for_reading(self.repo, "restore"):  # no prune meanwhile
            return self._run()

    def _run(self) -> RestoreReport:
        started = time.monotonic()
        self.repo.load_index()
        plan = self._plan()
        if self.dry_run:
            self.report.planned = [os.fsdecode(p) for p, _ in plan]
            for _path, node in plan:
                self._count(node)
            return self.report
        with TargetTree(self.target, overwrite=self.overwrite, expect=self.expect_root,
                        require_empty=self.require_empty) as tree:
            self._refuse_existing(tree, plan)
            self._restore(tree, plan)
        self.report.duration_s = time.monotonic() - started
        return self.report

    def _restore(self, tree: TargetTree, plan: list[tuple[bytes, Node]]) -> None:
        self.progress.start("restore", sum(n.size for _, n in plan if n.type == FILE))
        dirs, files, links, hardlinks = [], [], [], []
        first_of_link: dict[str, FileTarget] = {}
        for path, node in plan:
            if node.type == DIR:
                dirs.append((path, node))
            elif node.type == SYMLINK:
                links.append((path, node))
            elif node.hardlink and node.hardlink in first_of_link \
                    and first_of_link[node.hardlink].node.sha256 == node.sha256:
                hardlinks.append((path, first_of_link[node.hardlink], node))
            else:
                # A link whose recorded content differs from its first name's (the file
                # changed between reading the two) is restored as a file of its own.
                file = FileTarget(path, node)
                if node.hardlink and node.hardlink not in first_of_link:
                    first_of_link[node.hardlink] = file
                files.append(file)
        plan.clear()  # a snapshot of a million files: held once from here, in `files` (the caller's list too)
        del first_of_link
        made = []
        for path, node in dirs:
            made.append((path, node, self._guard(lambda: tree.make_dir(path), path)))
            self.report.dirs += 1
        del dirs
        # With --include a file may be selected without its folders: create them too.
        parents = {os.path.dirname(f.rel) for f in files} | {os.path.dirname(p) for p, *_ in (*links, *hardlinks)}
        for parent in sorted(parents - {b""}):
            self._guard(lambda: tree.make_dir(parent), parent)
        if self.resume:
            files = self._skip_already_restored(tree, files)
        contents = ContentRestorer(self.repo, tree=tree, progress=self.progress, same_owner=self._same_owner,
                                   keep_special_bits=self.keep_special_bits)
        contents.run(files)
        self.report.files += contents.files
        self.report.bytes += contents.bytes
        self.report.verified += len(contents.verified)
        self.report.failures.extend(contents.failures)
        self._verified |= contents.verified
        for path, node in links:
            self._guard(lambda: tree.symlink(path, node.target or b"", uid=self._uid(node), gid=node.gid,
                                             mtime_ns=node.mtime_ns), path)
            self.report.symlinks += 1
        for path, source, node in hardlinks:
            self._restore_hardlink(tree, path, source)
        for path, node, ino in reversed(made):  # deepest first: children no longer touch the mtime
            self._guard(lambda: tree.set_dir_metadata(path, ino, uid=self._uid(node), gid=node.gid,
                                                      mode=self._mode(node), mtime_ns=node.mtime_ns), path)
        self.progress.finish()

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

                def metadata() -> None:
                    if self._same_owner:
                        os.fchown(fd, node.uid, node.gid)
                    os.fchmod(fd, self._mode(node))
                    os.utime(fd, ns=(node.mtime_ns, node.mtime_ns))

                self._guard(metadata, file.rel)
            finally:
                os.close(fd)
            file.done = True
            self.report.files += 1
            self.report.bytes += file.node.size
            self.report.verified += 1
            self.report.skipped += 1
            self._verified.add(file.rel)
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

    def _refuse_existing(self, tree: TargetTree, plan: list[tuple[bytes, Node]]) -> None:
        """Before the first write: anything in the way is named, and nothing is written."""
        if self.overwrite:
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
        if source.rel in self._verified:  # the same inode as a file whose SHA-256 matched
            self.report.verified += 1
        else:
            self.report.failures.append((display, "hard link to a file that failed verification"))

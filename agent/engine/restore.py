"""Restore: bring a snapshot back, byte for byte, and prove it with SHA-256.

Every restored file's SHA-256 is computed over exactly the bytes written and compared
with the fingerprint recorded at backup time (rules C3, C5); any mismatch or unreadable
chunk is reported with the file's path and the restore exits non-zero, while every
other file is still restored.

Nothing existing is overwritten unless asked: the plan is checked against the target
before the first byte is written.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import stat
import time
from dataclasses import dataclass, field

from agent.crypto.ids import new_file_fingerprint
from agent.engine.progress import Progress, SilentProgress
from agent.engine.restore_files import ContentRestorer, FileTarget
from agent.engine.walk import walk
from agent.errors import IntegrityError, RestoreTargetError
from agent.repo.lock import shared_lock_for_reading
from agent.repo.repository import Repository
from agent.repo.snapshot import Snapshot
from agent.repo.tree import DIR, FILE, SYMLINK, Node

_TARGET_ERRNOS = {errno.ENOSPC: "the restore target is full",
                  errno.EROFS: "the restore target is read-only",
                  errno.EACCES: "the restore target is not writable",
                  errno.EPERM: "the restore target is not writable",
                  errno.EDQUOT: "the disk quota of the restore target is exhausted"}


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


def _has_content(dest: bytes, node: Node) -> bool:
    """Is `dest` a regular file of the node's size and SHA-256?"""
    try:
        st = os.lstat(dest)
        if not stat.S_ISREG(st.st_mode) or st.st_size != node.size:
            return False
        digest = new_file_fingerprint()
        with open(dest, "rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
        return digest.hexdigest() == node.sha256
    except OSError:
        return False


def _target_error(exc: OSError, where: str) -> RestoreTargetError:
    reason = _TARGET_ERRNOS.get(exc.errno, f"cannot write to the restore target ({exc.strerror})")
    return RestoreTargetError(f"{reason}: {where}")


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
        self.progress = progress or SilentProgress()
        self.report = RestoreReport()
        self._same_owner = os.geteuid() == 0
        self._verified: set[bytes] = set()  # destinations whose SHA-256 matched

    # ---- plan -----------------------------------------------------------------

    def _plan(self) -> list[tuple[bytes, Node]]:
        def on_error(path: bytes, exc: IntegrityError) -> None:
            self.report.failures.append((os.fsdecode(path) or "/", f"directory listing unreadable: {exc}"))

        plan = []
        for path, node in walk(self.repo, self.snapshot.tree, on_error=on_error):
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
        self._refuse_existing(plan)
        self.progress.start("restore", sum(n.size for _, n in plan if n.type == FILE))
        try:
            os.makedirs(self.target, exist_ok=True)
        except OSError as exc:
            raise _target_error(exc, os.fsdecode(self.target)) from None
        dirs, files, links, hardlinks = [], [], [], []
        first_of_link: dict[str, tuple[bytes, str]] = {}
        for path, node in plan:
            dest = os.path.join(self.target, path)
            if node.type == DIR:
                dirs.append((dest, node))
            elif node.type == SYMLINK:
                links.append((dest, node))
            elif node.hardlink and node.hardlink in first_of_link \
                    and first_of_link[node.hardlink][1] == node.sha256:
                hardlinks.append((dest, first_of_link[node.hardlink][0], node))
            else:
                # A link whose recorded content differs from its first name's (the file
                # changed between reading the two) is restored as a file of its own.
                if node.hardlink and node.hardlink not in first_of_link:
                    first_of_link[node.hardlink] = (dest, node.sha256)
                files.append((dest, node))
        del plan  # a snapshot of a million files: its paths are in `dest` form from here on
        for dest, _node in dirs:
            self._guard(lambda: os.makedirs(dest, mode=0o700, exist_ok=True), dest)
            self.report.dirs += 1
        # With --include a file may be selected without its folders: create them too.
        parents = {os.path.dirname(dest) for dest, *_rest in (*files, *links, *hardlinks)}
        for parent in sorted(parents):
            self._guard(lambda: os.makedirs(parent, mode=0o700, exist_ok=True), parent)
        if self.resume:
            files = self._skip_already_restored(files)
        contents = ContentRestorer(self.repo, progress=self.progress, overwrite=self.overwrite,
                                   same_owner=self._same_owner, target_error=_target_error)
        contents.run([FileTarget(dest, node, os.fsdecode(os.path.relpath(dest, self.target)))
                      for dest, node in files])
        self.report.files += contents.files
        self.report.bytes += contents.bytes
        self.report.verified += len(contents.verified)
        self.report.failures.extend(contents.failures)
        self._verified |= contents.verified
        for dest, node in links:
            self._restore_symlink(dest, node)
        for dest, source, node in hardlinks:
            self._restore_hardlink(dest, source, node)
        for dest, node in reversed(dirs):  # deepest first: children no longer touch the mtime
            self._guard(lambda: self._apply_metadata(dest, node), dest)
        self.progress.finish()
        self.report.duration_s = time.monotonic() - started
        return self.report

    def _skip_already_restored(self, files: list[tuple[bytes, Node]]) -> list[tuple[bytes, Node]]:
        """Files an interrupted restore already wrote and verified are left as they are."""
        remaining = []
        for dest, node in files:
            if _has_content(dest, node):
                self._guard(lambda: self._apply_metadata(dest, node), dest)
                self.report.files += 1
                self.report.bytes += node.size
                self.report.verified += 1
                self.report.skipped += 1
                self._verified.add(dest)
                self.progress.advance(files=1, bytes_done=node.size)
            else:
                remaining.append((dest, node))
        return remaining

    def _count(self, node: Node) -> None:
        if node.type == DIR:
            self.report.dirs += 1
        elif node.type == SYMLINK:
            self.report.symlinks += 1
        else:
            self.report.files += 1
            self.report.bytes += node.size

    def _refuse_existing(self, plan: list[tuple[bytes, Node]]) -> None:
        if self.overwrite:
            return
        clashes = [
            path for path, node in plan
            if node.type != DIR and os.path.lexists(os.path.join(self.target, path))
        ]
        if clashes:
            raise RestoreTargetError(
                f"{len(clashes)} file(s) already exist in the target, e.g. {os.fsdecode(clashes[0])}",
                hint="restore into an empty directory, --resume an interrupted restore, or --overwrite to "
                     "replace them",
            )

    def _guard(self, action, dest: bytes) -> None:
        try:
            action()
        except OSError as exc:
            raise _target_error(exc, os.fsdecode(dest)) from None

    # ---- files ----------------------------------------------------------------------

    def _apply_metadata(self, dest: bytes, node: Node) -> None:
        if self._same_owner:
            os.chown(dest, node.uid, node.gid)
        os.chmod(dest, node.mode)
        os.utime(dest, ns=(node.mtime_ns, node.mtime_ns))

    def _restore_symlink(self, dest: bytes, node: Node) -> None:
        if self.overwrite and os.path.lexists(dest):
            self._guard(lambda: os.unlink(dest), dest)
        self._guard(lambda: os.symlink(node.target or b"", dest), dest)
        if self._same_owner:
            self._guard(lambda: os.lchown(dest, node.uid, node.gid), dest)
        if os.utime in os.supports_follow_symlinks:
            self._guard(lambda: os.utime(dest, ns=(node.mtime_ns, node.mtime_ns), follow_symlinks=False), dest)
        self.report.symlinks += 1

    def _restore_hardlink(self, dest: bytes, source: bytes, node: Node) -> None:
        display = os.fsdecode(os.path.relpath(dest, self.target))
        if not os.path.exists(source):  # the first link failed; its failure is already reported
            self.report.failures.append((display, "not restored: the file it is a hard link to failed"))
            return
        if self.overwrite and os.path.lexists(dest):
            self._guard(lambda: os.unlink(dest), dest)
        self._guard(lambda: os.link(source, dest), dest)
        self.report.hardlinks += 1
        self.report.files += 1
        if source in self._verified:  # the same inode as a file whose SHA-256 matched
            self.report.verified += 1
        else:
            self.report.failures.append((display, "hard link to a file that failed verification"))

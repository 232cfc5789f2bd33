"""The restore test (rules S7, C3, C5): restore, prove every file by SHA-256, wipe.

A restore test restores a snapshot (all of it, or a random sample of N files) into a
fresh folder under the scratch directory, where the restore engine reads every file back
and compares its SHA-256 with the one recorded at backup; it also restores a random sample
from the oldest snapshot, as proof that old months are still readable. It measures the
restore's duration and throughput (the practical recovery time), then deletes the
restored copy, which is patient data, whatever happened.

Before writing anything it checks that the scratch folder is not inside the backed-up
sources (a restore test must not add patient data to the next backup) and that it has
room for what will be restored.

Database dumps are then loaded (agent/engine/dump_check.py): by default into a throwaway
server the restore test starts and wipes itself, never into the practice's own server.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass, field
from typing import Any

from agent import clock
from agent.engine import browse
from agent.engine import throwaway_db
from agent.engine.dump_check import DatabaseCheck, check_dump
from agent.engine.source.dumps import DatabaseSettings, Dump
from agent.engine.expansion import Expansion
from agent.engine.restore import RestoreEngine, available_space
from agent.engine.wipe import remove_tree
from agent.errors import IntegrityError, RestoreTargetError, UsageError
from agent.repo.repository import Repository
from agent.repo.snapshot import Snapshot
from agent.repo.tree import FILE

OLDEST_SAMPLE = 20  # files restored from the oldest snapshot
# Room needed beyond the bytes to restore: file system overhead and a safety margin.
SPACE_MARGIN = 1.1
SPACE_SLACK = 64 * 1024 * 1024


@dataclass
class SnapshotTest:
    snapshot_id: str
    snapshot_time: str
    mode: str  # "full" or "sample"
    files: int = 0
    bytes: int = 0
    sha256_verified: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)  # {"path", "problem"}
    duration_s: float = 0.0

    @property
    def throughput_mib_s(self) -> float:
        return self.bytes / 2**20 / self.duration_s if self.duration_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:  # a JSON document (--json), read back by the commands
        return {"snapshot_id": self.snapshot_id, "snapshot_time": self.snapshot_time, "mode": self.mode,
                "files": self.files, "bytes": self.bytes, "sha256_verified": self.sha256_verified,
                "failures": self.failures, "duration_s": round(self.duration_s, 3),
                "throughput_mib_s": round(self.throughput_mib_s, 1)}


@dataclass
class RestoreTestReport:
    started: str
    seed: int
    tests: list[SnapshotTest] = field(default_factory=list)
    scratch_wiped: bool = False
    databases: list[DatabaseCheck] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (all(not t.failures and t.sha256_verified == t.files for t in self.tests)
                and all(d.ok for d in self.databases))

    def as_dict(self) -> dict[str, Any]:  # a JSON document (--json), read back by the commands
        return {"started": self.started, "ok": self.ok, "seed": self.seed,
                "files": sum(t.files for t in self.tests), "bytes": sum(t.bytes for t in self.tests),
                "sha256_verified": sum(t.sha256_verified for t in self.tests),
                "failures": [f for t in self.tests for f in t.failures],
                "tests": [t.as_dict() for t in self.tests], "scratch_wiped": self.scratch_wiped,
                "databases": [d.as_dict() for d in self.databases]}


class RestoreTestEngine:
    def __init__(self, repo: Repository, snapshot: Snapshot, scratch_dir: str, *, sources: list[str],
                 sample: int | None = None, oldest: Snapshot | None = None, seed: int | None = None,
                 databases: tuple[DatabaseSettings, ...] = (), state_dir: str | None = None) -> None:
        self.repo = repo
        self.snapshot = snapshot
        self.scratch_dir = os.path.abspath(scratch_dir)
        self.sources = sources
        self.sample = sample
        self.oldest = oldest
        self.databases = [d for d in databases if d.type != "sqlite"]
        self.state_dir = state_dir or self.scratch_dir  # the throwaway database servers live there
        self.seed = seed if seed is not None else random.SystemRandom().randrange(2**32)
        self.report = RestoreTestReport(started=clock.now().isoformat(), seed=self.seed)

    def run(self) -> RestoreTestReport:
        self._refuse_scratch_inside_sources()
        self.repo.load_index()
        rng = random.Random(self.seed)
        plans = [(self.snapshot, self._select(self.snapshot, self.sample, rng), "sample" if self.sample else "full")]
        if self.oldest is not None and self.oldest.id != self.snapshot.id:
            plans.append((self.oldest, self._select(self.oldest, OLDEST_SAMPLE, rng), "sample"))
        self._check_space(sum(size for _snap, files, _mode in plans for _path, size in files))
        # The scratch folder may be shared (/var/tmp): our folder in it is made fresh (mkdir
        # fails on anything already there, link included), reached by descriptor, and each
        # restore is told the inode it must find, so a folder swapped in meanwhile is refused.
        try:
            os.makedirs(self.scratch_dir, mode=0o700, exist_ok=True)
            parent = os.open(self.scratch_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise RestoreTargetError(f"the scratch folder {self.scratch_dir} cannot be used ({exc.strerror})",
                                     hint="give another --scratch-dir") from None
        name = f"backupctl-restore-test-{os.getpid()}-{os.urandom(8).hex()}"
        scratch = os.path.join(self.scratch_dir, name)
        try:
            os.mkdir(name, 0o700, dir_fd=parent)  # outside the wiping `try`: never wipe what is not ours
        except OSError as exc:
            os.close(parent)
            raise RestoreTargetError(f"the scratch folder {self.scratch_dir} cannot be written ({exc.strerror})",
                                     hint="give another --scratch-dir") from None
        try:
            for number, (snapshot, files, mode) in enumerate(plans):
                self.report.tests.append(self._restore(snapshot, files, mode, os.path.join(scratch, str(number)),
                                                       _fresh_folder(parent, name, str(number))))
        finally:
            remove_tree(parent, name)  # patient data: never left behind
            self.report.scratch_wiped = not _exists(parent, name)
            os.close(parent)
        if self.databases:
            throwaway_db.clean_stale(self.state_dir)  # servers of a restore test that was killed
        for settings in self.databases:  # proof that the dump restores, not only that its bytes are intact
            self.report.databases.append(self._check_database(settings))
        return self.report

    def _check_database(self, settings: DatabaseSettings) -> DatabaseCheck:
        path = "/" + Dump(settings, self.state_dir).path.decode()
        try:
            node = browse.find_node(self.repo, self.snapshot, path)
        except UsageError:
            return DatabaseCheck(settings.name, settings.type, path,
                                 problem="this snapshot holds no dump of the database (its dump failed that day)")
        assert node is not None  # the dump's path is never the snapshot's root
        try:
            return check_dump(settings, browse.file_bytes(self.repo, node, path), path, state_dir=self.state_dir)
        except IntegrityError as exc:
            return DatabaseCheck(settings.name, settings.type, path, problem=f"the dump is damaged ({exc})")

    def _refuse_scratch_inside_sources(self) -> None:
        scratch = os.path.realpath(self.scratch_dir)
        for source in self.sources:
            root = os.path.realpath(source)
            if scratch == root or scratch.startswith(root.rstrip("/") + "/"):
                raise UsageError(f"the scratch folder {self.scratch_dir} is inside the backed-up folder {source}",
                                 hint="choose a scratch folder outside [source] paths (restored patient data "
                                      "would otherwise enter the next backup)")

    def _select(self, snapshot: Snapshot, count: int | None, rng: random.Random) -> list[tuple[str, int]]:
        # Expansion refuses a crafted tree that names one subtree over and over (2**30
        # paths from 61 listings) before a path is listed, and walks without recursion.
        try:
            expansion = Expansion(self.repo, snapshot.tree, keep_listings=False)
            files = [(os.fsdecode(path), node.size) for path, node in expansion.walk() if node.type == FILE]
        except IntegrityError as exc:
            raise IntegrityError(f"restore test failed: snapshot {snapshot.short_id}: {exc}",
                                 hint=exc.hint or "run `backupctl check` to see what is affected") from None
        if count is not None and count < len(files):
            files = rng.sample(files, count)
        return files

    def _check_space(self, needed: int) -> None:
        free, _block = available_space(self.scratch_dir)  # the rule restore itself applies to its target
        wanted = int(needed * SPACE_MARGIN) + SPACE_SLACK
        if free < wanted:
            raise RestoreTargetError(f"the scratch folder {self.scratch_dir} has {free // 2**20} MiB free; the "
                                     f"restore test needs about {wanted // 2**20} MiB",
                                     hint="free some space or give another --scratch-dir")

    def _restore(self, snapshot: Snapshot, files: list[tuple[str, int]], mode: str, target: str,
                 identity: tuple[int, int]) -> SnapshotTest:
        assert snapshot.id is not None  # a snapshot read from the repository
        test = SnapshotTest(snapshot.id.hex(), snapshot.time.isoformat(), mode)
        if not files:
            return test
        started = time.monotonic()
        includes = None if mode == "full" else [glob_escape(path) for path, _size in files]
        report = RestoreEngine(self.repo, snapshot, target, includes=includes, expect_root=identity).run()
        test.duration_s = time.monotonic() - started
        test.files, test.bytes, test.sha256_verified = report.files, report.bytes, report.verified
        test.failures = [{"path": path, "problem": problem} for path, problem in report.failures]
        return test


def _fresh_folder(parent: int, name: str, child: str) -> tuple[int, int]:
    """Make `name/child` below `parent` without following links; its (st_dev, st_ino)."""
    try:
        folder = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        try:
            os.mkdir(child, 0o700, dir_fd=folder)
            st = os.stat(child, dir_fd=folder, follow_symlinks=False)
            return st.st_dev, st.st_ino
        finally:
            os.close(folder)
    except OSError as exc:
        raise RestoreTargetError(f"the restore test's folder {name} in the scratch folder cannot be used "
                                 f"({exc.strerror})", hint="give a --scratch-dir only this user can write") from None


def _exists(parent: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=parent, follow_symlinks=False)
        return True
    except FileNotFoundError:
        return False


def glob_escape(path: str) -> str:
    """A path as a pattern matching only itself (restore's --include takes fnmatch patterns;
    the leading "/" keeps a top-level name from matching that name anywhere)."""
    return "/" + "".join(f"[{c}]" if c in "*?[" else c for c in path)

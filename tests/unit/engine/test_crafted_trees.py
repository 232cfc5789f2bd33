"""Every walk over a snapshot's tree stays linear in what is stored, and has no depth limit.

Trees are content-addressed, so a snapshot's tree is a DAG. With a stolen key, a snapshot
can name one subtree twice at each of 30 levels: 61 stored entries, 2**31 once expanded.
Restore and export refuse it (tests/unit/engine/test_target.py); here restore-test's
sample, check, ls -R and find, which walked it path by path. Work is counted (listings
read), never timed: a repository that refuses a read beyond a budget makes a walk that
goes exponential fail at once instead of hanging. A legitimately deep tree (3000 nested
folders, deeper than Python's recursion limit) must walk too: prune's reachability, copy,
check, ls -R, find.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from zoneinfo import ZoneInfo

import pytest

from agent import clock
from agent.crypto.kdf import KdfParams
from agent.engine import browse
from agent.engine.check import MAX_FILES_LISTED, CheckEngine
from agent.engine.copy import CopyEngine
from agent.engine.expansion import Expansion
from agent.engine.prune import PruneEngine
from agent.engine.restore_testing import RestoreTestEngine
from agent.engine.retention import RetentionPolicy
from agent.errors import IntegrityError
from agent.repo.pack import BLOB_DATA, BLOB_TREE
from agent.repo.repository import Repository
from agent.repo.snapshot import Snapshot
from agent.repo.tree import DIR, FILE, Node, encode_tree
from agent.storage.memory import MemoryStorage
from tests.support.locked import run_locked
from tests.support.repos import memory_repository

FAST = KdfParams(memory_kib=8192, iterations=1)
CONTENT = b"compte rendu de consultation\n" * 100
NOW = dt.datetime(2026, 12, 1, 9, tzinfo=ZoneInfo("Europe/Paris"))
# Listings or chunks one command may read here: a linear walk of the 61-listing DAG reads a
# few hundred at most (restore-test and check read it more than once), an exponential one
# billions.
BUDGET = 2_000
DEEP = 3000  # folders nested in one another: three times Python's default recursion limit


class Budget:
    """Counts blob reads of one repository and fails the test past BUDGET (not an
    IntegrityError or StorageError: no walk may swallow it)."""

    def __init__(self, repo: Repository) -> None:
        self.reads = 0
        real = repo.load_blob

        def counting(chunk_id: bytes) -> bytes:
            self.reads += 1
            if self.reads > BUDGET:
                raise AssertionError(f"more than {BUDGET} blobs read: the walk is not linear")
            return real(chunk_id)

        repo.load_blob = counting  # type: ignore[method-assign]


@pytest.fixture
def repo() -> Repository:
    return memory_repository()


def _file_node(name: bytes, chunk: bytes) -> Node:
    return Node(name=name, type=FILE, mode=0o640, uid=os.getuid(), gid=os.getgid(), mtime_ns=10**18,
                size=len(CONTENT), chunks=[chunk], sha256=hashlib.sha256(CONTENT).hexdigest())


def _dir_node(name: bytes, subtree: bytes) -> Node:
    return Node(name=name, type=DIR, mode=0o755, uid=os.getuid(), gid=os.getgid(), mtime_ns=10**18, subtree=subtree)


def _snapshot(repo: Repository, nodes: list[Node], *, when: dt.datetime = NOW) -> Snapshot:
    tree_id, _ = repo.store_blob(BLOB_TREE, encode_tree(nodes))
    repo.flush()
    snapshot = Snapshot(time=when, host="h", user="u", paths=["/"], tree=tree_id)
    snapshot.id = repo.save_snapshot(snapshot)
    return snapshot


def _dag(repo: Repository, depth: int, *, chunk: bytes | None = None) -> Snapshot:
    """Level k lists two folders a and b, both the listing of level k-1: 2**depth copies
    of the leaf note.txt (whose chunk may be one the repository does not have)."""
    if chunk is None:
        chunk, _ = repo.store_blob(BLOB_DATA, CONTENT)
    level = [_file_node(b"note.txt", chunk)]
    for _ in range(depth):
        subtree, _ = repo.store_blob(BLOB_TREE, encode_tree(level))
        level = [_dir_node(b"a", subtree), _dir_node(b"b", subtree)]
    return _snapshot(repo, level)


def _deep(repo: Repository, *, when: dt.datetime = NOW) -> Snapshot:
    """d/d/.../d/note.txt, DEEP folders down."""
    chunk, _ = repo.store_blob(BLOB_DATA, CONTENT)
    level = [_file_node(b"note.txt", chunk)]
    for _ in range(DEEP - 1):
        subtree, _ = repo.store_blob(BLOB_TREE, encode_tree(level))
        level = [_dir_node(b"d", subtree)]
    return _snapshot(repo, level, when=when)


def _deep_path() -> bytes:
    return b"/".join([b"d"] * (DEEP - 1) + [b"note.txt"])


# ---- a tree naming one subtree twice at each of 30 levels ---------------------------------


def test_restore_test_refuses_a_crafted_tree_as_a_failed_test_and_restores_nothing(repo, tmp_path):
    snapshot = _dag(repo, 30)
    budget = Budget(repo)
    engine = RestoreTestEngine(repo, snapshot, str(tmp_path / "scratch"), sources=[str(tmp_path / "src")], sample=5)
    with pytest.raises(IntegrityError, match=rf"^restore test failed: snapshot {snapshot.short_id}: the snapshot's "
                                             r"tree would expand to 3221225470 entries from 61 stored") as caught:
        engine.run()
    assert "check" in caught.value.hint
    assert budget.reads < 100
    assert not (tmp_path / "scratch").exists()  # refused before the scratch folder is made


def test_restore_test_still_samples_a_tree_that_shares_folders(repo, tmp_path):
    snapshot = _dag(repo, 3)
    report = RestoreTestEngine(repo, snapshot, str(tmp_path / "scratch"), sources=[str(tmp_path / "src")],
                               sample=5, seed=1).run()
    assert report.ok and report.tests[0].files == 5 and report.tests[0].sha256_verified == 5


def test_check_counts_damage_below_a_crafted_tree_without_walking_its_paths(repo):
    """The chunk at the bottom is missing: 2**30 paths need it. check must still name the
    first MAX_FILES_LISTED, give the exact count, and read each listing once."""
    snapshot = _dag(repo, 30, chunk=os.urandom(32))
    budget = Budget(repo)
    report = run_locked(CheckEngine(repo))
    assert budget.reads <= 31 + 1  # each listing once, and the snapshot's root
    label = f"{snapshot.short_id} (2026-12-01 09:00 +01:00)"  # no zone given: the snapshot's own offset
    assert f"snapshot {label}: {2**30} file(s) or folder(s) cannot be restored" in report.errors
    assert any("would expand to 3221225470 entries from 61 stored" in e and "restore refuses it" in e
               for e in report.errors)
    listed = report.affected[label]
    assert len(listed) == MAX_FILES_LISTED + 1
    assert listed[0] == "/" + "a/" * 30 + "note.txt: data chunk is missing from the index"
    assert listed[1] == "/" + "a/" * 29 + "b/note.txt: data chunk is missing from the index"
    assert listed[-1] == f"... and {2**30 - MAX_FILES_LISTED} more"


def test_check_reports_an_intact_crafted_tree_as_one_restore_refuses(repo):
    snapshot = _dag(repo, 30)
    budget = Budget(repo)
    report = run_locked(CheckEngine(repo))
    assert budget.reads <= 32
    assert not report.ok
    assert report.errors == [f"snapshot {snapshot.short_id} (2026-12-01 09:00 +01:00): its tree would expand "
                             f"to 3221225470 entries from 61 stored (one folder listing named over and over): "
                             f"restore refuses it as crafted or damaged"]
    assert not report.affected


def test_check_names_every_path_of_a_damaged_folder_shared_by_a_small_tree(repo):
    """Memoized damage is reported at every place the shared folder appears."""
    snapshot = _dag(repo, 2, chunk=os.urandom(32))
    report = run_locked(CheckEngine(repo))
    label = f"{snapshot.short_id} (2026-12-01 09:00 +01:00)"  # no zone given: the snapshot's own offset
    assert report.errors == [f"snapshot {label}: 4 file(s) or folder(s) cannot be restored"]
    assert [line.split(":")[0] for line in report.affected[label]] == [
        "/a/a/note.txt", "/a/b/note.txt", "/b/a/note.txt", "/b/b/note.txt"]


def test_ls_recursive_and_find_refuse_a_crafted_tree(repo):
    snapshot = _dag(repo, 30)
    budget = Budget(repo)
    with pytest.raises(IntegrityError, match="would expand to 3221225470 entries from 61 stored"):
        list(browse.list_dir(repo, snapshot, "/", recursive=True))
    with pytest.raises(IntegrityError, match="would expand to 805306366 entries from 57 stored"):
        list(browse.list_dir(repo, snapshot, "/a/b", recursive=True))
    for pattern in ("note.txt", "a/*/note.txt", "*"):
        with pytest.raises(IntegrityError, match="would expand"):
            browse.find(repo, [snapshot], pattern)
    assert budget.reads < 300
    # One level at a time stays possible: the incident desk can still look around.
    assert [p for p, _n in browse.list_dir(repo, snapshot, "/a/b/a")] == [b"a/b/a/a", b"a/b/a/b"]


def test_ls_recursive_and_find_on_a_tree_that_shares_folders(repo):
    snapshot = _dag(repo, 3)
    paths = [p for p, _n in browse.list_dir(repo, snapshot, "/b", recursive=True)]
    assert paths[:3] == [b"b/a", b"b/a/a", b"b/a/a/note.txt"] and len(paths) == 2 + 4 + 4
    budget = Budget(repo)
    found = browse.find(repo, [snapshot] * 5, "note.txt")
    assert budget.reads <= 4 + 4  # the 4 listings once for the size checks of all 5, once searched
    assert len(found) == 40 and found[0][1] == b"a/a/a/note.txt" and found[7][1] == b"b/b/b/note.txt"
    assert [p for _s, p, _n in browse.find(repo, [snapshot], "/a/*/b/note.txt")] == [b"a/a/b/note.txt",
                                                                                    b"a/b/b/note.txt"]


# ---- a tree deeper than Python's recursion limit ------------------------------------------


def test_ls_recursive_find_and_check_walk_a_tree_3000_folders_deep(repo):
    snapshot = _deep(repo)
    entries = list(browse.list_dir(repo, snapshot, "/", recursive=True))
    assert len(entries) == DEEP and entries[-1][0] == _deep_path()
    assert [p for _s, p, _n in browse.find(repo, [snapshot], "note.txt")] == [_deep_path()]
    assert [p for _s, p, _n in browse.find(repo, [snapshot], "d/*/note.txt")] == [_deep_path()]
    assert run_locked(CheckEngine(repo)).ok


def test_prune_keeps_everything_a_tree_3000_folders_deep_uses(repo):
    clock.freeze(NOW)
    try:
        old = _snapshot(repo, [_file_node(b"old.txt", repo.store_blob(BLOB_DATA, b"ancienne version\n" * 50)[0])],
                        when=NOW - dt.timedelta(days=400))
        deep = _deep(repo)
        report = run_locked(PruneEngine(repo, RetentionPolicy(weekly=1, monthly=0, yearly=0)), exclusive=True)
    finally:
        clock.freeze(None)
    assert [d.snapshot_id for d in report.decisions if not d.keep] == [old.id]
    reopened = Repository.open(repo.storage, b"phrase")
    assert [s.id for s in reopened.snapshots()] == [deep.id]
    assert run_locked(CheckEngine(reopened, read_data=True)).ok  # every listing and the chunk survived
    reopened.load_index()
    (last,) = [n for _p, n in Expansion(reopened, deep.tree).walk() if n.type == FILE]
    assert b"".join(browse.file_bytes(reopened, last, "note.txt")) == CONTENT


@pytest.mark.parametrize("same_master", [False, True])
def test_copy_rewrites_a_tree_3000_folders_deep(repo, same_master):
    snapshot = _deep(repo)
    destination = Repository.init(MemoryStorage(), b"phrase", cipher="aes-256-gcm", compression_level=1,
                                  kdf_params=FAST, master=repo.master if same_master else None)
    report = CopyEngine(repo, destination, snapshot).run()
    assert report.blobs_copied == DEEP + 1  # DEEP listings, one chunk
    (copied,) = destination.snapshots()
    assert (copied.tree == snapshot.tree) == same_master
    destination.load_index()
    walked = list(Expansion(destination, copied.tree).walk())
    assert len(walked) == DEEP and walked[-1][0] == _deep_path()
    assert b"".join(browse.file_bytes(destination, walked[-1][1], "note.txt")) == CONTENT
    assert run_locked(CheckEngine(Repository.open(destination.storage, b"phrase"), read_data=True)).ok


def test_copy_of_a_tree_that_shares_folders_stores_each_listing_once(repo):
    snapshot = _dag(repo, 30)
    budget = Budget(repo)
    destination = Repository.init(MemoryStorage(), b"phrase", cipher="aes-256-gcm", compression_level=1,
                                  kdf_params=FAST)
    report = CopyEngine(repo, destination, snapshot).run()
    assert budget.reads <= 32  # 31 listings, one chunk
    assert report.blobs_copied == 31 + 1

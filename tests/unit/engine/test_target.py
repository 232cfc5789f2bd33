"""agent.engine.target and the restore engine on top of it: nothing found in the target is
followed, a name swapped between two steps is never written through, and a crafted
snapshot whose tree names the same subtree many times is refused while planning."""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import os
import stat
import time
from pathlib import Path

import pytest

from tests.support.trees import listing

from agent.engine import restore_files
from agent.engine.export import write_tar
from agent.engine.progress import SilentProgress
from agent.engine.restore import RestoreEngine
from agent.engine.restore_files import ContentRestorer, FileTarget
from agent.engine.target import TargetTree, create_private_file, open_target, permissions, target_error
from agent.errors import IntegrityError, RestoreTargetError, UsageError
from agent.repo.lock import RepositoryLock
from agent.repo.pack import BLOB_DATA, BLOB_TREE
from agent.repo.repository import Repository
from agent.repo.snapshot import Snapshot
from agent.repo.tree import DIR, FILE, Node, encode_tree
from tests.support.repos import memory_repository

CONTENT = b"compte rendu de consultation\n" * 100


@pytest.fixture
def repo() -> Repository:
    return memory_repository(compression_level=3)



@pytest.fixture
def victim(tmp_path: Path) -> Path:
    folder = tmp_path / "victim"  # stands in for /etc/cron.d
    folder.mkdir(mode=0o755)
    (folder / "existing").write_bytes(b"root's own file\n")
    return folder


def _file_node(name: bytes, chunk: bytes, content: bytes, *, mode: int = 0o640) -> Node:
    return Node(name=name, type=FILE, mode=mode, uid=os.getuid(), gid=os.getgid(), mtime_ns=10**18,
                size=len(content), chunks=[chunk] if content else [], sha256=hashlib.sha256(content).hexdigest())


def _two_chunk_node(repo: Repository, name: bytes) -> tuple[Node, bytes]:
    """A file of two chunks: created by the plan, then written pack by pack (a file of
    one chunk is created and written at once by a worker, leaving no window to race)."""
    first, _ = repo.store_blob(BLOB_DATA, CONTENT)
    second, _ = repo.store_blob(BLOB_DATA, CONTENT[::-1])
    repo.flush()
    repo.load_index()
    content = CONTENT + CONTENT[::-1]
    node = Node(name=name, type=FILE, mode=0o640, uid=os.getuid(), gid=os.getgid(), mtime_ns=10**18,
                size=len(content), chunks=[first, second], sha256=hashlib.sha256(content).hexdigest())
    return node, content


def _snapshot(repo: Repository, nodes: list[Node]) -> Snapshot:
    tree_id, _ = repo.store_blob(BLOB_TREE, encode_tree(nodes))
    repo.flush()
    snapshot = Snapshot(time=dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc), host="h", user="u", paths=["/"],
                        tree=tree_id)
    snapshot.id = repo.save_snapshot(snapshot)
    return snapshot


def _dir_node(repo: Repository, name: bytes, children: list[Node], *, mode: int = 0o755) -> Node:
    subtree, _ = repo.store_blob(BLOB_TREE, encode_tree(children))
    return Node(name=name, type=DIR, mode=mode, uid=os.getuid(), gid=os.getgid(), mtime_ns=10**18, subtree=subtree)


# ---- the walker ----------------------------------------------------------------------------


def test_a_symlink_where_a_folder_is_expected_is_refused_and_never_followed(tmp_path, victim):
    target = tmp_path / "target"
    target.mkdir()
    (target / "sub").symlink_to(victim)
    before = listing(victim)
    with TargetTree(os.fsencode(target), overwrite=False) as tree:
        with pytest.raises(RestoreTargetError, match="sub is a symbolic link in the restore target where the "
                                                     "snapshot has a folder"):
            tree.create_file(b"sub/f", 10)
        with pytest.raises(RestoreTargetError, match="sub is a symbolic link"):
            tree.make_dir(b"sub/deeper")
        with pytest.raises(RestoreTargetError, match="symbolic link"):
            tree.lstat(b"sub/f")
    assert listing(victim) == before


@pytest.mark.parametrize("plant", ["symlink", "file", "fifo"])
def test_overwrite_replaces_what_is_in_the_way_of_a_folder_by_name(tmp_path, victim, plant):
    target = tmp_path / "target"
    target.mkdir()
    if plant == "symlink":
        (target / "sub").symlink_to(victim)
    elif plant == "file":
        os.link(victim / "existing", target / "sub")  # a hard link to a file outside
    else:
        os.mkfifo(target / "sub")  # opened, it would block the restore forever
    before = listing(victim)
    with TargetTree(os.fsencode(target), overwrite=True) as tree:
        ino = tree.create_file(b"sub/f", 10)
        fd = tree.open_created(b"sub/f", ino, os.O_WRONLY)
        os.write(fd, b"x")
        os.close(fd)
    assert (target / "sub").is_dir() and not (target / "sub").is_symlink()
    assert (target / "sub" / "f").read_bytes()[:1] == b"x"
    assert listing(victim) == before


def test_overwrite_never_deletes_a_folder_that_holds_something(tmp_path):
    target = tmp_path / "target"
    (target / "f").mkdir(parents=True)
    (target / "f" / "keep").write_text("mine")
    with TargetTree(os.fsencode(target), overwrite=True) as tree:
        with pytest.raises(RestoreTargetError, match="f is a folder that is not empty"):
            tree.create_file(b"f", 1)
    assert (target / "f" / "keep").read_text() == "mine"


def test_a_file_swapped_for_a_hard_link_after_creation_is_never_written(tmp_path, victim):
    target = tmp_path / "target"
    target.mkdir()
    before = listing(victim)
    with TargetTree(os.fsencode(target), overwrite=False) as tree:
        ino = tree.create_file(b"f", 5)
        os.unlink(target / "f")
        os.link(victim / "existing", target / "f")
        with pytest.raises(RestoreTargetError, match="f was replaced in the restore target"):
            tree.open_created(b"f", ino, os.O_WRONLY)
        tree.remove_created(b"f", ino)  # not ours any more: left alone
    assert (target / "f").exists()
    assert listing(victim) == before


def test_special_bits_are_dropped_unless_asked():
    assert permissions(0o104755, keep_special_bits=False) == 0o755
    assert permissions(0o43777, keep_special_bits=False) == 0o777
    assert permissions(0o104755, keep_special_bits=True) == 0o4755
    assert permissions(0o41777, keep_special_bits=True) == 0o1777


# ---- races between planning and writing -------------------------------------------------------


@pytest.mark.parametrize("cached", [True, False])
def test_a_parent_swapped_for_a_symlink_between_creation_and_writing_does_not_redirect_writes(
        repo, tmp_path, victim, monkeypatch, cached):
    """The restorer creates every file, then writes blobs pack by pack: here, in between,
    the folder holding the file is renamed away and replaced by a link to the victim."""
    node, content = _two_chunk_node(repo, b"f")
    target = tmp_path / "target"
    (target / "sub").mkdir(parents=True)
    before = listing(victim)
    real_create = ContentRestorer._create

    def create_then_swap(self, file, *, size):
        real_create(self, file, size=size)
        os.rename(target / "sub", target / "moved")
        (target / "sub").symlink_to(victim)
        if not cached:  # the folder must then be found again from the root, by name
            for fd, _dev in self.tree._cache.values():
                os.close(fd)
            self.tree._cache.clear()

    monkeypatch.setattr(restore_files.ContentRestorer, "_create", create_then_swap)
    with TargetTree(os.fsencode(target), overwrite=False) as tree:
        restorer = ContentRestorer(repo, tree=tree, progress=SilentProgress(), same_owner=False)
        if cached:
            restorer.run([FileTarget(b"sub/f", node)])
            # Written through the descriptor of the folder it was created in, wherever that went.
            assert (target / "moved" / "f").read_bytes() == content
        else:
            with pytest.raises(RestoreTargetError, match="sub is a symbolic link"):
                restorer.run([FileTarget(b"sub/f", node)])
    assert listing(victim) == before


def test_a_file_swapped_for_a_hard_link_between_creation_and_writing_is_refused(repo, tmp_path, victim,
                                                                                monkeypatch):
    node, _content = _two_chunk_node(repo, b"f")
    target = tmp_path / "target"
    target.mkdir()
    before = listing(victim)
    real_create = ContentRestorer._create

    def create_then_swap(self, file, *, size):
        real_create(self, file, size=size)
        os.unlink(target / "f")
        os.link(victim / "existing", target / "f")

    monkeypatch.setattr(restore_files.ContentRestorer, "_create", create_then_swap)
    with TargetTree(os.fsencode(target), overwrite=False) as tree:
        restorer = ContentRestorer(repo, tree=tree, progress=SilentProgress(), same_owner=False)
        with pytest.raises(RestoreTargetError, match="f was replaced"):
            restorer.run([FileTarget(b"f", node)])
    assert listing(victim) == before


def test_a_one_chunk_file_is_created_written_and_verified_by_the_worker(repo, tmp_path, monkeypatch):
    """No creation by the plan (`_create` is not called), one descriptor from creation to
    metadata, and the file still proven by its SHA-256 read back from the disk."""
    chunk, _ = repo.store_blob(BLOB_DATA, CONTENT)
    repo.flush()
    repo.load_index()
    target = tmp_path / "target"
    (target / "sub").mkdir(parents=True)

    def no_plan_creation(self, file, *, size):
        raise AssertionError("a one-chunk file is created by its worker")

    monkeypatch.setattr(restore_files.ContentRestorer, "_create", no_plan_creation)
    with TargetTree(os.fsencode(target), overwrite=False) as tree:
        restorer = ContentRestorer(repo, tree=tree, progress=SilentProgress(), same_owner=False)
        restorer.run([FileTarget(b"sub/f", _file_node(b"f", chunk, CONTENT, mode=0o640))])
    assert restorer.failures == [] and restorer.verified == 1 and restorer.files == 1
    st = os.stat(target / "sub" / "f")
    assert (target / "sub" / "f").read_bytes() == CONTENT
    assert stat.S_IMODE(st.st_mode) == 0o640 and st.st_mtime_ns == 10**18


def test_a_one_chunk_file_whose_name_is_taken_meanwhile_is_refused(repo, tmp_path, victim):
    chunk, _ = repo.store_blob(BLOB_DATA, CONTENT)
    repo.flush()
    repo.load_index()
    target = tmp_path / "target"
    target.mkdir()
    before = listing(victim)
    (target / "f").symlink_to(victim / "existing")  # planted after the plan's check
    with TargetTree(os.fsencode(target), overwrite=False) as tree:
        restorer = ContentRestorer(repo, tree=tree, progress=SilentProgress(), same_owner=False)
        with pytest.raises(RestoreTargetError):
            restorer.run([FileTarget(b"f", _file_node(b"f", chunk, CONTENT))])
    assert listing(victim) == before


# ---- the engine ---------------------------------------------------------------------------


def test_restore_refuses_a_planted_link_before_writing_anything(repo, tmp_path, victim):
    chunk, _ = repo.store_blob(BLOB_DATA, CONTENT)
    snapshot = _snapshot(repo, [_dir_node(repo, b"cron.d", [_file_node(b"evil", chunk, CONTENT)])])
    target = tmp_path / "target"
    target.mkdir()
    (target / "cron.d").symlink_to(victim)
    (target / "untouched").mkdir()
    before, target_before = listing(victim), listing(target)
    with pytest.raises(RestoreTargetError, match="cron.d is a symbolic link"):
        RestoreEngine(repo, snapshot, str(target)).run()
    assert listing(victim) == before and listing(target) == target_before

    report = RestoreEngine(repo, snapshot, str(target), overwrite=True).run()
    assert report.failures == [] and report.verified == 1
    assert not (target / "cron.d").is_symlink() and (target / "cron.d" / "evil").read_bytes() == CONTENT
    assert listing(victim) == before


def test_restore_drops_special_bits_unless_asked(repo, tmp_path):
    chunk, _ = repo.store_blob(BLOB_DATA, CONTENT)
    snapshot = _snapshot(repo, [_dir_node(repo, b"shared", [_file_node(b"tool", chunk, CONTENT, mode=0o4755)],
                                          mode=0o3777)])
    RestoreEngine(repo, snapshot, str(tmp_path / "plain")).run()
    assert stat.S_IMODE((tmp_path / "plain" / "shared").stat().st_mode) == 0o777
    assert stat.S_IMODE((tmp_path / "plain" / "shared" / "tool").stat().st_mode) == 0o755
    RestoreEngine(repo, snapshot, str(tmp_path / "system"), keep_special_bits=True).run()
    assert stat.S_IMODE((tmp_path / "system" / "shared").stat().st_mode) == 0o3777
    assert stat.S_IMODE((tmp_path / "system" / "shared" / "tool").stat().st_mode) == 0o4755


# ---- a tree that names one subtree many times ---------------------------------------------


def _dag(repo: Repository, depth: int) -> Snapshot:
    """Level k lists two folders, both the listing of level k-1: 2**depth copies of the leaf."""
    chunk, _ = repo.store_blob(BLOB_DATA, CONTENT)
    level = [_file_node(b"note.txt", chunk, CONTENT)]
    for _ in range(depth):
        subtree, _ = repo.store_blob(BLOB_TREE, encode_tree(level))
        level = [Node(name=name, type=DIR, mode=0o755, uid=os.getuid(), gid=os.getgid(), mtime_ns=10**18,
                      subtree=subtree) for name in (b"a", b"b")]
    return _snapshot(repo, level)


@pytest.mark.timeout(60)
def test_a_tree_naming_one_subtree_twice_at_each_of_30_levels_is_refused_promptly(repo, tmp_path):
    snapshot = _dag(repo, 30)  # 2**31 entries once expanded, from 61 stored
    started = time.monotonic()
    with pytest.raises(IntegrityError, match=r"would expand to 3221225470 entries from 61 stored"):
        RestoreEngine(repo, snapshot, str(tmp_path / "target")).run()
    with pytest.raises(IntegrityError, match="refused as crafted or damaged"):
        RestoreEngine(repo, snapshot, str(tmp_path / "target"), dry_run=True).run()
    with open(tmp_path / "out.tar", "wb") as stream:
        with pytest.raises(IntegrityError, match="would expand"), RepositoryLock(repo, "export"):
            write_tar(repo, snapshot, stream)
    assert time.monotonic() - started < 30
    assert not (tmp_path / "target").exists()
    assert (tmp_path / "out.tar").stat().st_size == 0


def test_folders_that_share_one_listing_still_restore_every_copy(repo, tmp_path):
    snapshot = _dag(repo, 3)
    report = RestoreEngine(repo, snapshot, str(tmp_path / "target")).run()
    assert report.failures == [] and report.files == 8 and report.verified == 8
    assert (tmp_path / "target" / "b" / "a" / "b" / "note.txt").read_bytes() == CONTENT


def test_a_link_in_a_folder_another_user_can_write_is_owned_in_a_private_folder_first(tmp_path):
    """In a folder someone else can write to, the link could be swapped between symlink()
    and lchown(): it is made and owned in a private folder, then hard-linked into place."""
    target = tmp_path / "target"
    (target / "shared").mkdir(parents=True)
    os.chmod(target / "shared", 0o777)
    seen: list[bytes] = []
    real_symlink = os.symlink

    def recording_symlink(src, dst, target_is_directory=False, *, dir_fd=None):
        seen.append(dst)
        return real_symlink(src, dst, target_is_directory, dir_fd=dir_fd)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "symlink", recording_symlink)
        with TargetTree(os.fsencode(target), overwrite=False) as tree:
            tree.symlink(b"shared/link", b"../elsewhere", uid=os.getuid() if os.geteuid() == 0 else None,
                         gid=os.getgid(), mtime_ns=10**18)
            tree.symlink(b"private-link", b"shared", uid=None, gid=os.getgid(), mtime_ns=10**18)
    assert seen == [b"l", b"private-link"]  # the first one staged, the second made in place
    assert os.readlink(target / "shared" / "link") == "../elsewhere"
    assert os.lstat(target / "shared" / "link").st_mtime_ns == 10**18
    assert os.lstat(target / "shared" / "link").st_nlink == 1
    assert sorted(os.listdir(target / "shared")) == ["link"]  # no staging folder left


def test_a_hard_link_names_only_the_file_this_restore_created(tmp_path, victim):
    target = tmp_path / "target"
    target.mkdir()
    with TargetTree(os.fsencode(target), overwrite=False) as tree:
        ino = tree.create_file(b"first", 3)
        tree.hardlink(b"first", ino, b"second")
        assert os.stat(target / "second").st_ino == ino
        os.unlink(target / "first")
        os.link(victim / "existing", target / "first")  # swapped before the next link
        with pytest.raises(RestoreTargetError, match="first was replaced"):
            tree.hardlink(b"first", ino, b"third")
    assert not (target / "third").exists()


def test_a_target_folder_swapped_before_the_restore_began_is_refused(repo, tmp_path):
    """restore-test makes its folder, then hands its inode to the restore."""
    chunk, _ = repo.store_blob(BLOB_DATA, CONTENT)
    snapshot = _snapshot(repo, [_file_node(b"f", chunk, CONTENT)])
    made = tmp_path / "made"
    made.mkdir()
    identity = (made.stat().st_dev, made.stat().st_ino)
    made.rename(tmp_path / "elsewhere")
    made.mkdir()  # someone else's folder now stands at that name
    with pytest.raises(RestoreTargetError, match="was replaced before the restore began"):
        RestoreEngine(repo, snapshot, str(made), expect_root=identity).run()
    assert list(made.iterdir()) == []


def test_restore_test_refuses_a_scratch_folder_swapped_after_it_made_it(repo, tmp_path, victim, monkeypatch):
    """restore-test's folder in a shared scratch directory, replaced by a link once made:
    the restore is refused and nothing lands where the link points."""
    from agent.engine import restore_testing as restore_test

    chunk, _ = repo.store_blob(BLOB_DATA, CONTENT)
    snapshot = _snapshot(repo, [_file_node(b"f", chunk, CONTENT)])
    scratch = tmp_path / "scratch"
    real_fresh = restore_test._fresh_folder

    def fresh_then_swap(parent, name, child):
        identity = real_fresh(parent, name, child)
        os.rename(scratch / name / child, scratch / "moved")
        (scratch / name / child).symlink_to(victim)
        return identity

    monkeypatch.setattr(restore_test, "_fresh_folder", fresh_then_swap)
    before = listing(victim)
    engine = restore_test.RestoreTestEngine(repo, snapshot, str(scratch), sources=[str(tmp_path / "src")])
    with pytest.raises(RestoreTargetError, match="was replaced before the restore began"):
        engine.run()
    assert listing(victim) == before
    assert engine.report.scratch_wiped and sorted(os.listdir(scratch)) == ["moved"]


def test_a_staged_link_that_cannot_be_placed_leaves_no_private_folder(tmp_path):
    target = tmp_path / "target"
    (target / "shared").mkdir(parents=True)
    os.chmod(target / "shared", 0o777)
    (target / "shared" / "link").write_text("already there")
    with TargetTree(os.fsencode(target), overwrite=False) as tree:
        with pytest.raises(FileExistsError):
            tree.symlink(b"shared/link", b"x", uid=None, gid=os.getgid(), mtime_ns=10**18)
    assert sorted(os.listdir(target / "shared")) == ["link"]
    assert (target / "shared" / "link").read_text() == "already there"


def test_a_streamed_tar_export_holds_every_copy_of_a_sharedlisting(repo, tmp_path):
    import tarfile

    snapshot = _dag(repo, 3)
    with open(tmp_path / "out.tar", "wb") as stream, RepositoryLock(repo, "export"):
        report = write_tar(repo, snapshot, stream)
    assert report.failures == [] and report.files == 8 and report.verified == 8
    with tarfile.open(tmp_path / "out.tar") as archive:
        names = archive.getnames()
    assert "b/a/b/note.txt" in names and len(names) == 8 + 14
    assert names.index("b/a") < names.index("b/a/a") < names.index("b/a/a/note.txt") < names.index("b/a/b")


# ---- added by the security review (mutations no test caught) ----------------------------------


def test_a_name_planted_after_planning_is_never_opened_by_create_file(tmp_path, victim):
    """A hard link to a root file appearing at a name between the check for existing
    entries and the file's creation: O_EXCL refuses it, so the victim is neither
    truncated nor resized (without O_EXCL, ftruncate would cut it to the snapshot's size)."""
    target = tmp_path / "target"
    target.mkdir()
    os.link(victim / "existing", target / "f")
    before = listing(victim)
    with TargetTree(os.fsencode(target), overwrite=False) as tree:
        with pytest.raises((OSError, RestoreTargetError)):
            tree.create_file(b"f", 3)
    assert listing(victim) == before


def test_a_hard_link_swapped_right_after_it_is_made_is_refused(tmp_path, victim, monkeypatch):
    """linkat made the second name, then someone swapped that name for a link to another
    file before the check: the restore says so rather than counting it as restored."""
    target = tmp_path / "target"
    target.mkdir()
    real_link = os.link

    def link_then_swap(src, dst, **kwargs):
        real_link(src, dst, **kwargs)
        if dst == b"second":
            os.unlink(target / "second")
            real_link(victim / "existing", target / "second")

    with TargetTree(os.fsencode(target), overwrite=False) as tree:
        ino = tree.create_file(b"first", 3)
        monkeypatch.setattr(os, "link", link_then_swap)
        with pytest.raises(RestoreTargetError, match="second was replaced"):
            tree.hardlink(b"first", ino, b"second")


def test_a_planted_link_is_refused_before_any_folder_is_made(repo, tmp_path, victim):
    """The snapshot has a folder that sorts before the planted link's name and is not in the
    target: it must not be created either, the refusal comes before the first write. The
    snapshot's folder at the link's name is empty, so only the check of that very entry
    (not of a child's parent) can refuse it in time."""
    chunk, _ = repo.store_blob(BLOB_DATA, CONTENT)
    snapshot = _snapshot(repo, [_dir_node(repo, b"archives", [_file_node(b"old", chunk, CONTENT)]),
                                _dir_node(repo, b"cron.d", [])])
    target = tmp_path / "target"
    target.mkdir()
    (target / "cron.d").symlink_to(victim)
    before, target_before = listing(victim), listing(target)
    with pytest.raises(RestoreTargetError, match="cron.d is a symbolic link"):
        RestoreEngine(repo, snapshot, str(target)).run()
    assert listing(victim) == before and listing(target) == target_before


@pytest.mark.parametrize("shared", [False, True])
def test_a_restored_link_to_an_existing_file_is_owned_and_dated_itself_never_its_target(tmp_path, victim, shared):
    """A snapshot (forged with a stolen key) holds a link owned by a user, pointing at a
    root file: restore owns and dates the link, never what it points to (chown through it
    would hand that user the file)."""
    if os.geteuid() != 0:
        pytest.fail("this test runs as root (the suite does)")
    target = tmp_path / "target"
    target.mkdir()
    if shared:
        os.chmod(target, 0o777)  # someone else can write here: the link is staged in a private folder
    before = listing(victim)
    with TargetTree(os.fsencode(target), overwrite=False) as tree:
        tree.symlink(b"link", os.fsencode(victim / "existing"), uid=65534, gid=65534, mtime_ns=10**18)
    st = os.lstat(target / "link")
    assert (st.st_uid, st.st_gid, st.st_mtime_ns) == (65534, 65534, 10**18)
    assert listing(victim) == before
    assert os.stat(victim / "existing").st_mtime_ns != 10**18


def test_folder_metadata_is_never_set_on_a_folder_swapped_in_after_creation(tmp_path):
    """The folder restore made was renamed away and another put at its name (the descriptor
    no longer cached, as after 64 other folders): owner and mode are not applied to it."""
    target = tmp_path / "target"
    target.mkdir()
    with TargetTree(os.fsencode(target), overwrite=False) as tree:
        ino = tree.make_dir(b"d")
    os.rename(target / "d", target / "moved")
    (target / "d").mkdir(mode=0o700)
    os.chown(target / "d", 65534, 65534)
    with TargetTree(os.fsencode(target), overwrite=False) as tree:
        with pytest.raises(RestoreTargetError, match="d was replaced"):
            tree.set_dir_metadata(b"d", ino, uid=0, gid=0, mode=0o4777, mtime_ns=10**18)
    st = os.stat(target / "d")
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (65534, 0o700)


# ---- reaching the target root from "/" ----------------------------------------------------

NOBODY = 65534
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="links owned by another user need root to make")


def _real(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


@root_only
def test_open_target_refuses_another_users_link_at_any_component_and_makes_nothing(tmp_path, victim):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chown(shared, NOBODY, NOBODY)
    (shared / "to-victim").symlink_to(victim)
    os.lchown(shared / "to-victim", NOBODY, NOBODY)
    before = listing(victim)
    for path in (shared / "to-victim", shared / "to-victim" / "a" / "b"):
        with pytest.raises(RestoreTargetError, match=f"{shared / 'to-victim'} is a symbolic link owned by uid "
                                                     f"{NOBODY}.*not followed") as caught:
            open_target(os.fsencode(path), create=True)
        assert caught.value.hint == "give a --target path without a link another user controls"
    assert listing(victim) == before


@root_only
def test_open_target_refuses_roots_link_in_a_folder_another_user_owns(tmp_path, victim):
    """That user could swap it for a link of theirs between the look and the follow."""
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chown(shared, NOBODY, NOBODY)
    (shared / "to-victim").symlink_to(victim)
    with pytest.raises(RestoreTargetError, match=f"in a folder owned by uid {NOBODY}"):
        open_target(os.fsencode(shared / "to-victim"), create=True)


def test_open_target_follows_trusted_links_relative_absolute_and_dotdot(tmp_path):
    (tmp_path / "real" / "inner").mkdir(parents=True)
    (tmp_path / "abs").symlink_to(tmp_path / "real")
    (tmp_path / "real" / "up").symlink_to("../real/inner")
    assert _real(open_target(os.fsencode(tmp_path / "abs" / "up"), create=False)) == str(tmp_path / "real" / "inner")
    assert _real(open_target(os.fsencode(tmp_path / "abs" / "up" / ".." / "made"), create=True)) == \
        str(tmp_path / "real" / "made")


def test_open_target_refuses_a_loop_a_file_and_a_missing_folder_without_creating(tmp_path):
    (tmp_path / "loop").symlink_to("loop")
    with pytest.raises(RestoreTargetError, match="too many levels of symbolic links"):
        open_target(os.fsencode(tmp_path / "loop"), create=True)
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(RestoreTargetError, match=f"{tmp_path / 'file'} is a file, not a folder"):
        open_target(os.fsencode(tmp_path / "file" / "sub"), create=True)
    with pytest.raises(RestoreTargetError, match="does not exist"):
        open_target(os.fsencode(tmp_path / "missing" / "sub"), create=False)
    assert not (tmp_path / "missing").exists()


def test_folders_made_on_the_way_to_the_target_are_private_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        os.close(open_target(os.fsencode(tmp_path / "a" / "b"), create=True))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "a" / "b").stat().st_mode) == 0o700


def test_a_private_file_is_0600_whatever_the_umask_and_never_made_through_a_link(tmp_path, victim):
    old = os.umask(0)
    try:
        fd = create_private_file(os.fsencode(tmp_path / "cabinet.tar"))
    finally:
        os.umask(old)
    os.close(fd)
    assert stat.S_IMODE((tmp_path / "cabinet.tar").stat().st_mode) == 0o600
    (tmp_path / "planted.tar").symlink_to(victim / "new.tar")
    with pytest.raises(FileExistsError):
        create_private_file(os.fsencode(tmp_path / "planted.tar"))
    assert not (victim / "new.tar").exists()
    with pytest.raises(UsageError, match="not a file name"):
        create_private_file(os.fsencode(str(tmp_path) + "/"))


# ---- what a failed write says --------------------------------------------------------------


@pytest.mark.parametrize("code, says, advice", [
    (errno.ENOSPC, "the restore target is full", "free some space"),
    (errno.EDQUOT, "quota", "free some space"),
    (errno.EROFS, "read-only", "read-write"),
    (errno.EACCES, "not writable", "permissions"),
    (errno.EPERM, "not writable", "permissions"),
    (errno.EEXIST, "changed while restoring", "restore into a folder only you can write"),
    (errno.ENOENT, "changed while restoring", "restore into a folder only you can write"),
    (errno.ELOOP, "changed while restoring", "restore into a folder only you can write"),
    (errno.ENOTDIR, "changed while restoring", "restore into a folder only you can write"),
])
def test_a_failed_write_says_what_happened_and_what_to_do_per_errno(code, says, advice):
    error = target_error(OSError(code, os.strerror(code)), "tmp/atk")
    assert says in str(error) and "tmp/atk" in str(error)
    assert advice in error.hint
    if code not in (errno.ENOSPC, errno.EDQUOT):
        assert "space" not in error.hint  # a race or a permission is not a full disk


def test_a_restore_racing_another_writer_says_so_not_free_some_space(repo, tmp_path, monkeypatch):
    """Another program makes the file's name between the plan and the create (EEXIST): the
    restore ends with the race's advice, not "free some space"."""
    chunk, _ = repo.store_blob(BLOB_DATA, CONTENT)
    snapshot = _snapshot(repo, [_dir_node(repo, b"dossier", [_file_node(b"note.txt", chunk, CONTENT)])])
    real_open = os.open

    def racing(path, flags, *args, **kwargs):
        if path == b"note.txt" and flags & os.O_CREAT:
            with open(tmp_path / "target" / "dossier" / "note.txt", "wb"):  # the other writer, just in time
                pass
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", racing)
    with pytest.raises(RestoreTargetError) as caught:
        RestoreEngine(repo, snapshot, str(tmp_path / "target")).run()
    assert str(caught.value) == "the restore target changed while restoring: dossier/note.txt"
    assert caught.value.hint == ("another program or user is writing there: restore into a folder only you "
                                 "can write")

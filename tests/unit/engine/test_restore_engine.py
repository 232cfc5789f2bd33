"""RestoreEngine as a person sees it: what a dry run and a restore count, the progress bar,
who owns what is restored, the refusals before anything is written, hard links, and the
room a sparse file is said to need."""

from __future__ import annotations

import dataclasses
import datetime as dt
import errno
import os
from pathlib import Path

import pytest

import agent.engine.restore as restore
import agent.engine.restore_files as restore_files
from agent.engine.backup import BackupEngine, BackupOptions
from agent.engine.expansion import Expansion
from agent.engine.restore import SPACE_MARGIN, SPACE_SLACK, RestoreEngine
from agent.engine.target import TargetTree
from agent.errors import RestoreTargetError, UsageError
from agent.repo import chunker, layout

from tests.support.locked import run_locked

from .test_prune import History

WHEN = dt.datetime(2026, 11, 20, 20, tzinfo=dt.timezone.utc)
ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="needs root: restoring owners")  # the suite runs as root


class RecordingProgress:
    def __init__(self) -> None:
        self.starts: list[tuple[str, int | None]] = []

    def start(self, phase: str, total_bytes: int | None = None) -> None:
        self.starts.append((phase, total_bytes))

    def advance(self, *, files: int = 0, bytes_done: int = 0) -> None:
        pass

    def finish(self) -> None:
        pass


def _practice(tmp_path: Path) -> History:
    """src/ with two folders, three files, two symbolic links."""
    history = History(tmp_path)
    src = history.source
    (src / "letters").mkdir()
    (src / "letters" / "martin.txt").write_bytes(b"m" * 1000)
    (src / "letters" / "durand.txt").write_bytes(b"d" * 2345)
    (src / "scans").mkdir()
    (src / "scans" / "radio.bin").write_bytes(os.urandom(7000))
    (src / "latest").symlink_to("letters/martin.txt")
    (src / "scans" / "newest").symlink_to("radio.bin")
    return history


def _backup(history: History) -> None:
    """One snapshot of src/ as it is (History.backup reads files only: these have folders)."""
    run_locked(BackupEngine(history.repo, BackupOptions(paths=[str(history.source)], time=WHEN)))


def _folders_below(target: Path) -> int:
    return sum(len(folders) for _, folders, _ in os.walk(target))


def _engine(history: History, target: Path, **options) -> RestoreEngine:
    repo = history.fresh_repo()
    return RestoreEngine(repo, repo.snapshots()[0], str(target), **options)


def _inside(history: History, target: Path) -> Path:
    return target / str(history.source).lstrip("/")


# ---- counts ---------------------------------------------------------------------------


def test_a_dry_run_counts_what_the_restore_then_restores(tmp_path):
    history = _practice(tmp_path)
    _backup(history)
    planned = _engine(history, tmp_path / "plan", dry_run=True).run()
    assert not (tmp_path / "plan").exists()
    report = _engine(history, tmp_path / "target").run()
    folders = _folders_below(tmp_path / "target")  # src, its two folders and the folders above src
    assert folders >= 3
    assert (planned.dirs, planned.symlinks, planned.files, planned.bytes) == (folders, 2, 3, 1000 + 2345 + 7000)
    assert (report.dirs, report.symlinks, report.files, report.bytes, report.verified) == \
        (folders, 2, 3, 1000 + 2345 + 7000, 3)
    assert len(planned.planned) == folders + 2 + 3


def test_the_progress_bar_is_named_restore_and_sized_by_the_bytes_of_the_files_selected(tmp_path):
    history = _practice(tmp_path)
    _backup(history)
    progress = RecordingProgress()
    _engine(history, tmp_path / "target", includes=["letters"], progress=progress).run()
    assert progress.starts == [("restore", 1000 + 2345)]


def test_worker_processes_restore_from_PROCESSES_FROM_FILES_files_on(tmp_path, monkeypatch):
    """Forking them costs more than it saves below the threshold; at it, they are used."""
    history = _practice(tmp_path)
    _backup(history)
    monkeypatch.setattr(restore, "PROCESSES_FROM_FILES", 3)
    log = tmp_path / "writers"
    real = restore_files._write_one

    def write_one(*args, **kwargs):  # inherited by the forked workers: each write says where it ran
        with open(log, "a") as handle:
            handle.write(f"{os.getpid()}\n")
        return real(*args, **kwargs)

    monkeypatch.setattr(restore_files, "_write_one", write_one)

    def writers(target: str, **options) -> set[int]:
        log.write_text("")
        report = _engine(history, tmp_path / target, **options).run()
        assert report.failures == [] and report.verified == report.files
        return {int(pid) for pid in log.read_text().split()}

    assert writers("two", includes=["letters"]) == {os.getpid()}  # 2 files: threads of this process
    three = writers("three")  # 3 files
    assert three and os.getpid() not in three


# ---- owners -----------------------------------------------------------------------------


@needs_root
def test_folders_and_links_get_their_recorded_owners(tmp_path):
    history = _practice(tmp_path)
    os.chown(history.source / "letters", 1000, 1001)
    os.lchown(history.source / "latest", 1002, 1003)
    _backup(history)
    _engine(history, tmp_path / "target").run()
    inside = _inside(history, tmp_path / "target")
    letters, latest = (inside / "letters").stat(), (inside / "latest").lstat()
    assert (letters.st_uid, letters.st_gid, latest.st_uid, latest.st_gid) == (1000, 1001, 1002, 1003)


@needs_root
def test_without_the_right_to_set_owners_everything_restored_is_the_restoring_users(tmp_path, monkeypatch):
    history = _practice(tmp_path)
    os.chown(history.source / "letters", 1000, 1001)
    os.lchown(history.source / "latest", 1002, 1003)
    os.chown(history.source / "scans" / "radio.bin", 1004, 1005)
    _backup(history)
    monkeypatch.setattr(restore, "can_set_owners", lambda: False)  # as a user without CAP_CHOWN
    _engine(history, tmp_path / "target").run()
    inside = _inside(history, tmp_path / "target")
    owners = {os.lstat(inside / name).st_uid for name in ("letters", "latest", "scans/radio.bin")}
    assert owners == {os.geteuid()}


# ---- refusals before the first write ----------------------------------------------------


@pytest.mark.parametrize("dry_run", [False, True])
def test_includes_that_name_nothing_are_refused_together_with_the_closest_names(tmp_path, dry_run):
    history = _practice(tmp_path)
    (history.source / "letters" / "martine.txt").write_bytes(b"x")
    _backup(history)
    engine = _engine(history, tmp_path / "target", includes=["martinn.txt", "zzzzzzzz"], dry_run=dry_run)
    with pytest.raises(UsageError) as refused:
        engine.run()
    assert str(refused.value) == (
        "--include 'martinn.txt' matches nothing (closest names: 'martin.txt', 'martine.txt'); "
        f"--include 'zzzzzzzz' matches nothing in snapshot {engine.snapshot.short_id}")
    assert refused.value.hint == ("nothing was written; give a name shown, or search every snapshot with "
                                  "`backupctl find -i '*part of the name*'`")
    assert not (tmp_path / "target").exists()


def _failing(monkeypatch, method: str, where: bytes) -> None:
    """TargetTree.`method` fails with EIO at `where` (a disk error the tree does not explain itself)."""
    real = getattr(TargetTree, method)

    def failing(self, *args, **kwargs):
        rel = args[2] if method == "hardlink" else args[0]
        if rel == where:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(TargetTree, method, failing)


@pytest.mark.parametrize("method, name, includes", [
    ("make_dir", "letters", None),  # a folder of the snapshot
    ("make_dir", "letters", ["martin.txt"]),  # the folder of a file selected without it
    ("set_dir_metadata", "scans", None),
    ("hardlink", "zz-copy-of-martin.txt", None),
    ("symlink", "latest", None),
])
def test_a_write_error_in_the_target_names_the_path_and_the_systems_reason(tmp_path, monkeypatch, method, name,
                                                                          includes):
    history = _practice(tmp_path)
    os.link(history.source / "letters" / "martin.txt", history.source / "zz-copy-of-martin.txt")
    _backup(history)
    rel = os.path.join(str(history.source).lstrip("/"), name)
    _failing(monkeypatch, method, os.fsencode(rel))
    with pytest.raises(RestoreTargetError) as failed:
        _engine(history, tmp_path / "target", includes=includes).run()
    assert str(failed.value) == f"cannot write to the restore target (Input/output error): {rel}"


# ---- hard links -------------------------------------------------------------------------


def _linked(tmp_path: Path, size: int = 1000) -> tuple[History, bytes]:
    """martin.txt (of `size` bytes) with two more names; returns the history and the file's content."""
    history = _practice(tmp_path)
    if size != 1000:
        (history.source / "letters" / "martin.txt").write_bytes(os.urandom(size))
    content = (history.source / "letters" / "martin.txt").read_bytes()
    os.link(history.source / "letters" / "martin.txt", history.source / "scans" / "martin-again.txt")
    os.link(history.source / "letters" / "martin.txt", history.source / "zz-martin.txt")
    _backup(history)
    return history, content


def test_the_names_of_a_hard_linked_file_are_restored_as_links_and_counted_as_files(tmp_path):
    history, content = _linked(tmp_path)
    report = _engine(history, tmp_path / "target").run()
    inside = _inside(history, tmp_path / "target")
    assert report.failures == []
    assert (report.hardlinks, report.files, report.verified) == (2, 5, 5)
    assert (inside / "zz-martin.txt").read_bytes() == content
    assert (inside / "letters" / "martin.txt").stat().st_nlink == 3


@pytest.mark.parametrize("size", [
    1000,  # one chunk: created, written and verified at once, or not at all
    # Several chunks, whatever the content: past the largest chunk there is always a cut (a random
    # file of a few MiB can, now and then, hold no cut point before the largest chunk).
    chunker.MAX_SIZE + 2**20,  # created first, removed when its last chunk fails
])
def test_when_the_first_name_of_a_hard_linked_file_fails_its_other_names_say_so(tmp_path, size):
    history, content = _linked(tmp_path, size)
    repo = history.fresh_repo()
    repo.load_index()
    engine = _engine(history, tmp_path / "target")
    engine.repo.load_index()
    chunks = _node_of(engine, "letters/martin.txt").chunks
    assert (len(chunks) > 1) == (size > 1000)
    place = repo.locate(chunks[-1])
    name = layout.pack_name(place.pack_id)
    data = bytearray(history.storage.read(name))
    data[place.offset + place.length // 2] ^= 0xFF  # the blob of that file's content no longer decrypts
    history.storage.write(name, bytes(data))
    report = engine.run()
    below = str(history.source).lstrip("/")
    failures = dict(report.failures)
    assert failures[f"{below}/letters/martin.txt"].startswith("not restored: ")
    assert {path: why for path, why in failures.items() if "martin" in path and "letters" not in path} == {
        f"{below}/scans/martin-again.txt": "not restored: the file it is a hard link to failed",
        f"{below}/zz-martin.txt": "not restored: the file it is a hard link to failed"}
    assert report.hardlinks == 0
    assert not (_inside(history, tmp_path / "target") / "zz-martin.txt").exists()


def test_names_of_a_file_that_failed_verification_are_failures_too(tmp_path, monkeypatch):
    history, content = _linked(tmp_path)
    real = restore_files._write_one

    def altered(*args, **kwargs):  # the file system hands back other bytes than were written
        back, ino = real(*args, **kwargs)
        return (b"X" + back[1:] if back == content else back), ino

    monkeypatch.setattr(restore_files, "_write_one", altered)
    report = _engine(history, tmp_path / "target").run()
    below = str(history.source).lstrip("/")
    failures = dict(report.failures)
    assert failures[f"{below}/letters/martin.txt"].startswith("SHA-256 mismatch")
    assert failures[f"{below}/scans/martin-again.txt"] == "hard link to a file that failed verification"
    assert failures[f"{below}/zz-martin.txt"] == "hard link to a file that failed verification"
    assert (report.hardlinks, report.verified) == (2, 2)  # durand.txt and radio.bin


def test_a_name_whose_recorded_content_differs_is_a_file_of_its_own_and_later_names_link_to_the_first(tmp_path):
    """The file changed between the backup's reading of two of its names: the second is
    restored with what was read for it, and the third still links to the first."""
    history, content = _linked(tmp_path)
    engine = _engine(history, tmp_path / "target")
    engine.repo.load_index()
    plan = list(Expansion(engine.repo, engine.snapshot.tree).walk(lambda path, exc: None))
    nodes = dict(plan)
    again = next(path for path in nodes if path.endswith(b"/scans/martin-again.txt"))
    durand = nodes[next(path for path in nodes if path.endswith(b"/durand.txt"))]
    nodes[again] = dataclasses.replace(durand, name=b"martin-again.txt", hardlink=nodes[again].hardlink)
    with TargetTree(engine.target, overwrite=False) as tree:
        engine._restore(tree, list(nodes.items()))
    inside = _inside(history, tmp_path / "target")
    assert engine.report.failures == []
    assert (inside / "scans" / "martin-again.txt").read_bytes() == b"d" * 2345
    assert (inside / "scans" / "martin-again.txt").stat().st_nlink == 1
    assert os.path.samefile(inside / "zz-martin.txt", inside / "letters" / "martin.txt")
    assert engine.report.hardlinks == 1


# ---- room ---------------------------------------------------------------------------------


def _asked(needed: int) -> int:
    return needed + int(needed * SPACE_MARGIN) + SPACE_SLACK


KIB = 1024


@pytest.mark.parametrize("hole, tail, chunks, needed", [
    # One all-zero chunk of at most two SPARSE_BLOCKs: its ends may be written, it takes its blocks.
    (100 * KIB, b"", [100 * KIB], 100 * KIB),
    # A larger one takes only the two SPARSE_BLOCKs at its ends.
    (160 * KIB, b"", [160 * KIB], 128 * KIB),
    # A zero chunk cut at the chunker's maximum, then a chunk of one byte: one block more.
    (8192 * KIB, b"x", [8192 * KIB, 1], 128 * KIB + 4 * KIB),
])
def test_a_sparse_file_needs_room_for_its_data_not_its_holes(tmp_path, hole, tail, chunks, needed):
    history = History(tmp_path)
    with open(history.source / "disk.img", "wb") as image:
        image.truncate(hole)  # a hole: no block on disk
        image.seek(hole)
        image.write(tail)
    _backup(history)
    engine = _engine(history, tmp_path / "target", includes=["disk.img"], dry_run=True)
    engine.repo.load_index()
    assert [engine.repo.locate(c).raw_length for c in _node_of(engine, "disk.img").chunks] == chunks
    assert os.statvfs(tmp_path).f_frsize == 4 * KIB
    report = engine.run()
    assert report.space_needed == _asked(needed)


def _node_of(engine: RestoreEngine, name: str):
    for path, node in Expansion(engine.repo, engine.snapshot.tree).walk(lambda path, exc: None):
        if path.endswith(b"/" + name.encode()):
            return node
    raise AssertionError(name)


def _practice_room(tmp_path: Path) -> tuple[History, int]:
    """The practice, backed up; and what restoring all of it takes before the margin: a block
    per folder and link, the files rounded up to whole blocks."""
    history = _practice(tmp_path)
    _backup(history)
    folders = len(str(history.source).strip("/").split("/")) + 2  # the folders down to src, and its two
    return history, (folders + 2) * 4 * KIB + 4 * KIB + 4 * KIB + 8 * KIB  # 1000, 2345 and 7000 bytes


def test_a_restore_needs_a_block_per_folder_and_link_and_its_files_in_whole_blocks(tmp_path):
    history, needed = _practice_room(tmp_path)
    assert _engine(history, tmp_path / "target", dry_run=True).run().space_needed == _asked(needed)


def test_the_names_of_a_hard_linked_file_take_room_once(tmp_path):
    history, _ = _linked(tmp_path)
    folders = len(str(history.source).strip("/").split("/")) + 2
    report = _engine(history, tmp_path / "target", dry_run=True).run()
    assert report.space_needed == _asked((folders + 2) * 4 * KIB + 4 * KIB + 4 * KIB + 8 * KIB)


def test_a_file_of_zeros_that_is_not_sparse_takes_all_its_blocks(tmp_path):
    history = History(tmp_path)
    (history.source / "zeros.bin").write_bytes(bytes(200 * KIB))  # written: blocks on disk, not holes
    _backup(history)
    report = _engine(history, tmp_path / "target", includes=["zeros.bin"], dry_run=True).run()
    assert report.space_needed == _asked(200 * KIB)


def _room(monkeypatch, available: int) -> None:
    monkeypatch.setattr(restore, "available_space", lambda path: (available, 4 * KIB))


def test_a_restore_that_fits_exactly_runs_and_one_a_byte_short_is_refused_before_anything_is_written(
        tmp_path, monkeypatch):
    history, needed = _practice_room(tmp_path)
    _room(monkeypatch, _asked(needed))
    assert _engine(history, tmp_path / "fits").run().failures == []
    _room(monkeypatch, _asked(needed) - 1)
    target = tmp_path / "short"
    with pytest.raises(RestoreTargetError) as refused:
        _engine(history, target).run()
    assert str(refused.value) == (f"the restore target {target} is too full: this restore needs about "
                                  f"{restore.mib(_asked(needed))}, {restore.mib(_asked(needed) - 1)} are available")
    assert refused.value.hint == ("nothing was written; free some space or choose another --target (or restore "
                                  "less with --include)")
    assert not target.exists()


def test_with_overwrite_the_single_named_files_in_the_way_count_as_free_room(tmp_path, monkeypatch):
    history, _ = _practice_room(tmp_path)
    target = tmp_path / "target"
    _engine(history, target).run()
    inside = _inside(history, target)
    os.link(inside / "letters" / "martin.txt", tmp_path / "elsewhere")  # a second name: its blocks stay in use
    _room(monkeypatch, 10**9)
    report = _engine(history, target, overwrite=True).run()
    freed = sum(os.stat(inside / name).st_blocks * 512 for name in ("letters/durand.txt", "scans/radio.bin"))
    assert freed == 12 * KIB
    assert report.space_available == 10**9 + freed


def test_files_in_the_way_are_refused_naming_the_first_and_how_many(tmp_path):
    history = _practice(tmp_path)
    _backup(history)
    target = tmp_path / "target"
    letters = _inside(history, target) / "letters"
    letters.mkdir(parents=True)
    (letters / "durand.txt").write_text("mine")
    (letters / "martin.txt").write_text("mine too")
    with pytest.raises(RestoreTargetError) as refused:
        _engine(history, target).run()
    below = str(history.source).lstrip("/")
    assert str(refused.value) == f"2 file(s) already exist in the target, e.g. {below}/letters/durand.txt"
    assert refused.value.hint == ("restore into an empty directory, --resume an interrupted restore, or "
                                  "--overwrite to replace them")
    assert (letters / "durand.txt").read_text() == "mine"


def test_an_export_target_must_be_new_or_empty(tmp_path):
    history = _practice(tmp_path)
    _backup(history)
    target = tmp_path / "target"
    target.mkdir()
    (target / "unrelated.txt").write_text("x")
    with pytest.raises(UsageError) as refused:
        _engine(history, target, require_empty=True).run()
    assert str(refused.value) == f"--target {target} is not empty"
    assert sorted(os.listdir(target)) == ["unrelated.txt"]


def test_a_read_only_target_is_said_to_be_read_only(tmp_path, monkeypatch):
    history = _practice(tmp_path)
    _backup(history)
    real = restore.target_file_system

    class ReadOnly:
        def __init__(self, stats):
            self.f_flag, self.f_bavail, self.f_frsize = stats.f_flag | os.ST_RDONLY, stats.f_bavail, stats.f_frsize

    monkeypatch.setattr(restore, "target_file_system", lambda path: ReadOnly(real(path)))
    target = tmp_path / "target"
    with pytest.raises(RestoreTargetError) as refused:
        _engine(history, target).run()
    assert str(refused.value) == f"the restore target is read-only: {target}"


def test_excluded_names_and_what_is_below_them_are_not_restored(tmp_path):
    history = _practice(tmp_path)
    _backup(history)
    target = tmp_path / "target"
    report = _engine(history, target, excludes=["letters", "newest"]).run()
    inside = _inside(history, target)
    assert sorted(os.listdir(inside)) == ["latest", "scans"]
    assert sorted(os.listdir(inside / "scans")) == ["radio.bin"]
    assert (report.files, report.symlinks) == (1, 1)


def test_a_folder_whose_listing_is_unreadable_is_a_failure_and_the_rest_is_restored(tmp_path):
    history = _practice(tmp_path)
    _backup(history)
    engine = _engine(history, tmp_path / "target")
    engine.repo.load_index()
    letters = next(node for path, node in Expansion(engine.repo, engine.snapshot.tree).walk(lambda p, e: None)
                   if path.endswith(b"/letters"))
    place = engine.repo.locate(letters.subtree)
    name = layout.pack_name(place.pack_id)
    data = bytearray(history.storage.read(name))
    data[place.offset + place.length // 2] ^= 0xFF
    history.storage.write(name, bytes(data))
    report = _engine(history, tmp_path / "target").run()
    below = str(history.source).lstrip("/")
    [(path, why)] = report.failures
    assert path == f"{below}/letters" and why.startswith("directory listing unreadable: ")
    assert (_inside(history, tmp_path / "target") / "scans" / "radio.bin").exists()


def test_the_file_system_of_a_target_is_the_one_it_is_on_or_would_be_made_on():
    here, root = os.statvfs("/dev/shm"), os.statvfs("/")
    if here.f_fsid == root.f_fsid:
        pytest.skip("/dev/shm is not a file system of its own here")
    assert restore.target_file_system("/dev/shm").f_fsid == here.f_fsid
    assert restore.target_file_system("/dev/shm/not/yet/made").f_fsid == here.f_fsid


def test_resume_counts_each_file_it_keeps_once_in_the_progress(tmp_path):
    history = _practice(tmp_path)
    _backup(history)
    target = tmp_path / "target"
    _engine(history, target).run()
    counted = []

    class Counting(RecordingProgress):
        def advance(self, *, files: int = 0, bytes_done: int = 0) -> None:
            counted.append((files, bytes_done))

    report = _engine(history, target, resume=True, progress=Counting()).run()
    assert report.skipped == 3
    assert [sum(c[0] for c in counted), sum(c[1] for c in counted)] == [3, 1000 + 2345 + 7000]


def test_overwrite_writes_every_file_again_even_one_already_intact(tmp_path):
    """--overwrite replaces; only --resume keeps what an interrupted restore finished."""
    history = _practice(tmp_path)
    _backup(history)
    target = tmp_path / "target"
    _engine(history, target).run()
    radio = _inside(history, target) / "scans" / "radio.bin"
    with open(radio, "rb") as old:  # held open: its inode cannot be reused for the new file
        report = _engine(history, target, overwrite=True).run()
        assert (report.skipped, report.files, report.verified) == (0, 3, 3)
        assert radio.stat().st_ino != os.fstat(old.fileno()).st_ino


def test_a_restore_reads_under_the_shared_lock_named_restore(tmp_path, monkeypatch):
    """The name another command's refusal shows while the restore runs."""
    history = _practice(tmp_path)
    _backup(history)
    taken = []
    real = restore.overlapped_shared_lock

    def recording(repo, operation):
        taken.append(operation)
        return real(repo, operation)

    monkeypatch.setattr(restore, "overlapped_shared_lock", recording)
    _engine(history, tmp_path / "target").run()
    assert taken == ["restore"]


@pytest.mark.parametrize("cap_eff, expected", [
    ("0000000000000001", True),  # CAP_CHOWN (bit 0) alone
    ("0000000000000010", False),  # bit 4 (CAP_FSETID), not CAP_CHOWN: read in hexadecimal
    ("000001fffffffffe", False),  # every capability but CAP_CHOWN
])
def test_a_user_may_set_owners_when_its_effective_capabilities_hold_cap_chown(monkeypatch, tmp_path, cap_eff,
                                                                              expected):
    status = tmp_path / "status"
    status.write_text(f"Name:\tbackupctl\nCapInh:\t0000000000000000\nCapEff:\t{cap_eff}\n")
    real_open = open
    monkeypatch.setattr(restore.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(restore, "open", lambda path, *args, **kwargs: real_open(status, *args, **kwargs),
                        raising=False)
    assert restore.can_set_owners() is expected

"""`restore --resume` in the engine: what an interrupted restore finished is kept (and counted
once), anything else at a file's name is replaced, and a kept file gets its metadata back.

The integration tests kill a real restore; these look at each kind of leftover on its own."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from pathlib import Path

import pytest

from agent.engine.restore import RestoreEngine
from tests.support.locked import run_locked

from .test_prune import History

WHEN = dt.datetime(2026, 11, 20, 20, tzinfo=dt.timezone.utc)
NAMES = ["kept", "changed", "short", "linked", "foreign", "gone", "touched"]


def _restored(tmp_path: Path) -> tuple[History, Path, Path]:
    """A snapshot of one file per NAMES entry, restored once into `target`; (history, target,
    the folder of the files in it)."""
    history = History(tmp_path)
    for number, name in enumerate(NAMES):
        (history.source / name).write_bytes(bytes([number]) * 5000 + os.urandom(3000))
        os.utime(history.source / name, ns=(10**18, 10**18))
    if os.geteuid() == 0:
        os.chown(history.source / "kept", 1000, 1000)  # restored with its owner: not root's
    history.backup(WHEN, new_files=0)
    target = tmp_path / "target"
    repo = history.fresh_repo()
    run_locked(RestoreEngine(repo, repo.snapshots()[0], str(target)))
    return history, target, target / str(history.source).lstrip("/")


def _resume(history: History, target: Path):
    repo = history.fresh_repo()
    return run_locked(RestoreEngine(repo, repo.snapshots()[0], str(target), resume=True))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_only_intact_files_of_the_snapshots_owner_are_kept_the_rest_restored_again(tmp_path):
    history, target, folder = _restored(tmp_path)
    expected = {name: _sha(history.source / name) for name in NAMES}
    (folder / "changed").write_bytes(b"X" + (folder / "changed").read_bytes()[1:])  # same size, other bytes
    with open(folder / "short", "r+b") as half_written:
        half_written.truncate(100)
    os.link(folder / "linked", tmp_path / "elsewhere")  # a second name: never trusted
    os.chown(folder / "foreign", 12345, 12345)  # intact bytes, but another user's file
    (folder / "gone").unlink()
    os.chmod(folder / "touched", 0o600)
    os.utime(folder / "touched", ns=(5, 5))

    report = _resume(history, target)

    assert report.failures == []
    assert {name: _sha(folder / name) for name in NAMES} == expected
    assert report.skipped == 2  # "kept" and "touched": every other one was written again
    assert (folder / "linked").stat().st_nlink == 1  # not written through the other name
    assert (report.files, report.verified) == (len(NAMES), len(NAMES))  # each file counted once
    assert report.bytes == sum((history.source / name).stat().st_size for name in NAMES)
    touched = (folder / "touched").stat()
    source = (history.source / "touched").stat()
    assert (touched.st_mode, touched.st_mtime_ns) == (source.st_mode, source.st_mtime_ns)
    assert (folder / "foreign").stat().st_uid == source.st_uid


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: restoring owners")  # the suite runs as root
def test_a_kept_file_gets_its_owner_back(tmp_path):
    history, target, folder = _restored(tmp_path)
    source = (history.source / "kept").stat()
    assert (folder / "kept").stat().st_uid == source.st_uid == 1000
    os.chown(folder / "kept", 0, 0)  # root's: trusted (root could write any file anyway)
    report = _resume(history, target)
    assert report.skipped == len(NAMES)
    assert ((folder / "kept").stat().st_uid, (folder / "kept").stat().st_gid) == (source.st_uid, source.st_gid)

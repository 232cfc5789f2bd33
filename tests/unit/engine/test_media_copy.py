"""agent.state.media (rotation calendar, labels, set key) and agent.engine.copy."""

from __future__ import annotations

import datetime as dt
import hashlib
import os

import pytest

from agent.crypto.kdf import KdfParams
from agent.state import media
from agent.engine.backup import BackupEngine, BackupOptions
from agent.engine.copy import CopyEngine
from agent.engine.restore import RestoreEngine
from agent.errors import MediumError, WrongPassphrase
from agent.repo.repository import Repository
from agent.storage.memory import MemoryStorage
from tests.support.locked import run_locked

FAST = KdfParams(memory_kib=8192, iterations=1)
DISKS = ("DISQUE-A", "DISQUE-B", "DISQUE-C", "DISQUE-D")


# ---- the rotation calendar ----------------------------------------------------------------


def test_each_week_has_one_due_disk_and_each_disk_comes_back_every_n_weeks():
    monday = dt.date(2026, 11, 23)
    seen = [media.due_medium(DISKS, monday + dt.timedelta(weeks=w)) for w in range(8)]
    assert sorted(seen[:4]) == sorted(DISKS) and seen[4:] == seen[:4]
    # Every day of a week has the same disk; Monday starts the next one.
    week = {media.due_medium(DISKS, monday + dt.timedelta(days=d)) for d in range(7)}
    assert week == {seen[0]}
    assert media.due_medium(DISKS, monday - dt.timedelta(days=1)) == seen[-1]


def test_next_due_is_this_monday_for_the_due_disk_and_a_later_monday_otherwise():
    wednesday = dt.date(2026, 11, 25)
    due = media.due_medium(DISKS, wednesday)
    assert media.next_due(DISKS, due, wednesday) == dt.date(2026, 11, 23)
    others = {label: media.next_due(DISKS, label, wednesday) for label in DISKS if label != due}
    assert sorted(others.values()) == [dt.date(2026, 11, 30), dt.date(2026, 12, 7), dt.date(2026, 12, 14)]
    for label, monday in others.items():
        assert media.due_medium(DISKS, monday) == label


def test_rotation_warnings():
    day = dt.date(2026, 11, 25)
    due = media.due_medium(DISKS, day)
    other = next(d for d in DISKS if d != due)
    assert media.rotation_warnings(DISKS, due, other, day) == []
    assert any("this week's disk is" in w for w in media.rotation_warnings(DISKS, other, due, day))
    assert any("also used for the previous" in w for w in media.rotation_warnings(DISKS, due, due, day))


# ---- labels and the set key -----------------------------------------------------------------


MONDAY = dt.date(2026, 12, 7)


def test_label_written_once_and_read_back(tmp_path):
    assert media.read_label(str(tmp_path)) is None
    label = media.write_label(str(tmp_path), "DISQUE-A", "usb")
    assert media.read_label(str(tmp_path)) == label
    with pytest.raises(MediumError, match="already labelled DISQUE-A"):
        media.write_label(str(tmp_path), "DISQUE-B", "usb")
    assert media.check_label(DISKS, str(tmp_path), "usb", today=MONDAY).label == "DISQUE-A"
    with pytest.raises(MediumError, match="set 'usb'"):
        media.check_label(DISKS, str(tmp_path), "autre", today=MONDAY)
    with pytest.raises(MediumError, match="no backup disk") as missing:
        media.check_label(DISKS, str(tmp_path / "absent"), "usb", today=MONDAY)
    assert media.due_medium(DISKS, MONDAY) in str(missing.value.hint)  # the disk of that day's week
    (tmp_path / media.LABEL_FILE).write_text("{not json")
    with pytest.raises(MediumError, match="cannot be read"):
        media.read_label(str(tmp_path))


def test_the_set_key_is_created_once_and_opens_only_with_the_passphrase(tmp_path):
    state = media.MediaState(str(tmp_path), "usb")
    with pytest.raises(MediumError):
        state.master_key(b"phrase", kdf_params=FAST, create=False)
    first = state.master_key(b"phrase", kdf_params=FAST, create=True)
    assert state.master_key(b"phrase", kdf_params=FAST, create=True).secret == first.secret
    assert oct(os.stat(state.key_path).st_mode & 0o777) == "0o600"
    with pytest.raises(WrongPassphrase):
        state.master_key(b"wrong", kdf_params=FAST, create=True)


def test_the_record_keeps_each_disk_and_the_previous_one(tmp_path):
    state = media.MediaState(str(tmp_path), "usb")
    state.note("DISQUE-A", last_backup="2026-11-20T20:00:00+01:00", snapshot="aa")
    record = state.note("DISQUE-B", last_backup="2026-11-27T20:00:00+01:00", snapshot="bb")
    assert record["last_used"] == "DISQUE-B" and record["previous"] == "DISQUE-A"
    state.note("DISQUE-B", last_check="2026-11-28T09:00:00+01:00", check_ok=True)
    record = state.record()
    assert record["last_used"] == "DISQUE-B"  # a check is not a backup
    assert record["media"]["DISQUE-B"] == {"last_backup": "2026-11-27T20:00:00+01:00", "snapshot": "bb",
                                           "last_check": "2026-11-28T09:00:00+01:00", "check_ok": True}
    (tmp_path / "media" / "usb" / "record.json").write_text("garbage")
    assert state.record() == {}  # a damaged record loses history, not backups


# ---- copy -------------------------------------------------------------------------------------


def _tree(root) -> dict[str, str]:
    root.mkdir()
    (root / "courriers").mkdir()
    for i in range(5):
        (root / "courriers" / f"lettre-{i}.txt").write_bytes(f"Madame, consultation {i}. ".encode() * 3000)
    (root / "scan.pdf").write_bytes(os.urandom(3 * 1024 * 1024))
    (root / "vide").mkdir()
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("same_master", [False, True])
def test_copy_between_repositories_restores_identically_and_twice_is_a_no_op(tmp_path, same_master):
    source = Repository.init(MemoryStorage(), b"phrase", cipher="xchacha20-poly1305", compression_level=1,
                             kdf_params=FAST)
    destination = Repository.init(MemoryStorage(), b"phrase", cipher="aes-256-gcm", compression_level=3,
                                  kdf_params=FAST, master=source.master if same_master else None)
    expected = _tree(tmp_path / "src")
    snapshot = run_locked(BackupEngine(source, BackupOptions(paths=[str(tmp_path / "src")], tags=["hebdo"]))).snapshot
    report = CopyEngine(source, destination, snapshot).run()
    assert not report.already_there and report.blobs_copied > 0 and report.bytes_added > 0
    (copied,) = destination.snapshots()
    assert copied.time == snapshot.time and copied.tags == ["hebdo"] and copied.paths == snapshot.paths
    assert copied.summary["copied_from"] == {"repository_id": source.config.repository_id.hex(),
                                             "snapshot_id": snapshot.id.hex()}
    assert (copied.tree == snapshot.tree) == same_master  # ids are keyed by the master key
    restored = RestoreEngine(destination, copied, str(tmp_path / "out")).run()
    assert not restored.failures and restored.verified == len(expected)
    root = tmp_path / "out" / str(tmp_path / "src").lstrip("/")
    assert {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in root.rglob("*") if p.is_file()} == expected
    stored = dict(destination.storage.objects)
    again = CopyEngine(source, Repository.open(destination.storage, b"phrase"), snapshot).run()
    assert again.already_there and again.snapshot_id == copied.id.hex()
    assert destination.storage.objects.keys() == stored.keys()


def test_copy_sends_only_what_the_destination_lacks(tmp_path):
    source = Repository.init(MemoryStorage(), b"phrase", cipher="xchacha20-poly1305", compression_level=1,
                             kdf_params=FAST)
    destination = Repository.init(MemoryStorage(), b"phrase", cipher="xchacha20-poly1305", compression_level=1,
                                  kdf_params=FAST, master=source.master)
    _tree(tmp_path / "src")
    first = run_locked(BackupEngine(source, BackupOptions(paths=[str(tmp_path / "src")]))).snapshot
    CopyEngine(source, destination, first).run()
    (tmp_path / "src" / "nouveau.txt").write_bytes(b"new letter " * 100)
    second = run_locked(BackupEngine(source, BackupOptions(paths=[str(tmp_path / "src")]))).snapshot
    report = CopyEngine(source, Repository.open(destination.storage, b"phrase"), second).run()
    # The new file's chunk and the trees on the way to it: nothing of the 3 MiB scan again.
    depth = len((tmp_path / "src").parts)
    assert 0 < report.blobs_copied <= 1 + depth and report.bytes_added < 20_000


def test_copying_back_to_where_a_snapshot_came_from_is_a_no_op(tmp_path):
    first = Repository.init(MemoryStorage(), b"phrase", cipher="xchacha20-poly1305", compression_level=1,
                            kdf_params=FAST)
    second = Repository.init(MemoryStorage(), b"phrase", cipher="xchacha20-poly1305", compression_level=1,
                             kdf_params=FAST)
    third = Repository.init(MemoryStorage(), b"phrase", cipher="xchacha20-poly1305", compression_level=1,
                            kdf_params=FAST)
    _tree(tmp_path / "src")
    original = run_locked(BackupEngine(first, BackupOptions(paths=[str(tmp_path / "src")]))).snapshot
    CopyEngine(first, second, original).run()
    (copy,) = second.snapshots()
    back = CopyEngine(second, Repository.open(first.storage, b"phrase"), copy).run()
    assert back.already_there and back.snapshot_id == original.id.hex()
    assert len(first.snapshots()) == 1
    # A copy of a copy names the original, so a third repository is not confused either.
    CopyEngine(second, third, copy).run()
    again = CopyEngine(first, Repository.open(third.storage, b"phrase"), original).run()
    assert again.already_there and len(third.snapshots()) == 1

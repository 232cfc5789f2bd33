"""`check` on packs that went missing or bad after a later backup stored some of their data
again: only what has no other copy is damage, and the report names the pack, why, and
each snapshot's files or folders that cannot be restored."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from agent.engine.backup import BackupEngine, BackupOptions
from agent.engine.check import MISSING_PACK, CheckEngine
from agent.repo import layout
from tests.support.locked import run_locked

from .test_prune import History

FIRST = dt.datetime(2026, 11, 20, 20, tzinfo=dt.timezone.utc)


def _backup(history: History, when: dt.datetime) -> str:
    report = run_locked(BackupEngine(history.fresh_repo(), BackupOptions(paths=[str(history.source)], time=when)))
    return report.snapshot.short_id


KEPT = [f"a{i}.txt" for i in range(10)]
GONE = [f"b{i}.txt" for i in range(5)]


def _content(name: str) -> bytes:
    return name.encode() * 1000


def _lost_then_backed_up_again(tmp_path: Path, *, keep_b: bool) -> tuple[History, dict[str, bytes], str]:
    """The files KEPT and GONE backed up; every pack of that backup lost; a second backup
    (without GONE unless `keep_b`) stores again what it still has. Returns the history, the
    lost packs' bytes by name, and the first snapshot's short id."""
    history = History(tmp_path)
    for name in KEPT + GONE:
        (history.source / name).write_bytes(_content(name))
    first = _backup(history, FIRST)
    lost = {item.name: history.storage.read(item.name) for item in history.storage.list(layout.DATA_PREFIX)}
    for name in lost:
        history.storage.delete(name)
    if not keep_b:
        for name in GONE:
            (history.source / name).unlink()
    _backup(history, FIRST + dt.timedelta(days=1))
    return history, lost, first


def test_a_missing_pack_whose_data_a_later_backup_stored_again_is_only_a_warning(tmp_path):
    history, lost, _ = _lost_then_backed_up_again(tmp_path, keep_b=True)
    report = run_locked(CheckEngine(history.fresh_repo()))
    assert report.ok and report.errors == [] and report.damaged_packs == {}
    assert sorted(report.warnings) == sorted(
        f"pack {name} is missing, but a later backup stored all of its data again (its stale index entry is "
        f"harmless)" for name in lost)


def test_a_missing_pack_with_data_stored_nowhere_else_is_damage_named_down_to_the_folder(tmp_path):
    history, lost, first = _lost_then_backed_up_again(tmp_path, keep_b=False)
    report = run_locked(CheckEngine(history.fresh_repo()))
    assert report.damaged_packs == {name: MISSING_PACK for name in lost}
    assert sorted(e for e in report.errors if e.startswith("pack ")) == sorted(
        f"pack {name}: {MISSING_PACK}" for name in lost)
    # The first snapshot's top listing (it named GONE) was only in a lost pack: one entry, its
    # path the snapshot's root, however much lies below it.
    (label, listed), = report.affected.items()
    assert label.startswith(first + " (")
    [(root_listing_pack, _)] = [(n, d) for n, d in lost.items() if n in listed[0]]
    assert listed == [f"/: directory listing unreadable, everything below it is affected (object "
                      f"{root_listing_pack} is missing)"]
    assert f"snapshot {label}: 1 file(s) or folder(s) cannot be restored" in report.errors


def test_a_damaged_pack_spares_the_files_a_later_backup_stored_again(tmp_path):
    history, lost, first = _lost_then_backed_up_again(tmp_path, keep_b=False)
    repo = history.fresh_repo()
    repo.load_index(keep_missing_packs=True)
    places = [repo.locate(repo.chunk_id(_content(name))) for name in GONE]
    data_pack = layout.pack_name(places[0].pack_id)
    assert {layout.pack_name(place.pack_id) for place in places} == {data_pack}
    for name, data in lost.items():  # back, the data pack with the blobs of GONE damaged
        if name == data_pack:
            damaged = bytearray(data)
            for place in places:
                damaged[place.offset + place.length // 2] ^= 0xFF
            data = bytes(damaged)
        history.storage.write(name, data)
    # An index listing the newer packs first: a blob in two packs resolves to the first listed.
    opened = history.fresh_repo()
    opened.load_index()
    packs = sorted(opened.index.packs().items(), key=lambda item: layout.pack_name(item[0]) in lost)
    opened.write_index_files(dict(packs), supersede=sorted(opened.list_index_ids()))
    opened = history.fresh_repo()
    opened.load_index(keep_missing_packs=True)
    assert all(layout.pack_name(opened.locate(opened.chunk_id(_content(name))).pack_id) not in lost for name in KEPT)
    report = run_locked(CheckEngine(history.fresh_repo(), read_data=True))
    why = "SHA-256 of its bytes does not match its name"
    assert report.damaged_packs == {data_pack: why}
    assert f"pack {data_pack}: {why}" in report.errors
    (label, listed), = report.affected.items()
    assert label.startswith(first + " (")
    # Each file of KEPT has its copy in a newer pack, whatever the order of the blobs.
    assert sorted(listed) == [f"{history.source}/{name}: {why} ({data_pack})" for name in GONE]

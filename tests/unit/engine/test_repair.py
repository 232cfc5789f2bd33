"""agent.engine.repair: damaged packs out of the index, readable blobs kept, the index
rebuilt from the packs themselves; an intact repository is left alone."""

from __future__ import annotations

from agent.engine.check import CheckEngine
from agent.engine.repair import RepairEngine
from agent.repo import layout
from tests.support.locked import run_locked

from .test_prune import History, fridays


def _packs(storage) -> dict[str, bytes]:
    return {i.name: storage.read(i.name) for i in storage.list(layout.DATA_PREFIX)}


def _two_snapshots(tmp_path) -> tuple[History, list[bytes]]:
    history = History(tmp_path)
    return history, [history.backup(when, new_files=4) for when in fridays(2)]


def test_an_intact_repository_is_left_alone(tmp_path):
    history, ids = _two_snapshots(tmp_path)
    before = {i.name: history.storage.read(i.name) for i in history.storage.list("")
              if not i.name.startswith(layout.LOCKS_PREFIX)}
    report = run_locked(RepairEngine(history.fresh_repo()), exclusive=True)
    assert not report.changed and report.blobs_lost == 0
    after = {i.name: history.storage.read(i.name) for i in history.storage.list("")
             if not i.name.startswith(layout.LOCKS_PREFIX)}
    assert after == before
    history.assert_intact(ids)


def test_a_pack_with_one_bad_blob_keeps_the_others(tmp_path):
    history, ids = _two_snapshots(tmp_path)
    name, data = max(_packs(history.storage).items(), key=lambda item: len(item[1]))
    damaged = bytearray(data)
    damaged[10] ^= 0xFF  # inside the first blob only
    history.storage.write(name, bytes(damaged))
    dry = run_locked(RepairEngine(history.fresh_repo(), dry_run=True), exclusive=True)
    assert list(dry.damaged_packs) == [name] and dry.blobs_lost == 1 and dry.blobs_salvaged >= 1
    assert history.storage.read(name) == bytes(damaged), "a dry run changes nothing"

    report = run_locked(RepairEngine(history.fresh_repo()), exclusive=True)
    assert (report.blobs_lost, report.blobs_salvaged) == (dry.blobs_lost, dry.blobs_salvaged)
    assert name not in _packs(history.storage)
    check = run_locked(CheckEngine(history.fresh_repo(), read_data=True))
    assert not check.damaged_packs and check.errors  # one chunk missing: its file is named
    lists = list(check.affected.values())  # one or both snapshots hold that file
    assert lists and all(len(files) == 1 and files == lists[0] for files in lists), check.affected
    assert "missing from the index" in lists[0][0]


def test_an_index_that_disagrees_with_a_pack_header_loses_no_pack(tmp_path):
    """The header is the truth: an index file listing a blob the pack does not hold does not
    make the pack damaged (deleting it would lose every blob it does hold)."""
    history, ids = _two_snapshots(tmp_path)
    repo = history.fresh_repo()
    repo.load_index()
    pack_id, entries = next(iter(repo.index.packs().items()))
    bogus = [entries[0].__class__(entries[0].kind, b"\x01" * 32, 0, entries[0].length, entries[0].raw_length)]
    repo._write_index({pack_id: bogus})  # sealed in the repository's own layout (format 4: padded)
    report = run_locked(RepairEngine(history.fresh_repo()), exclusive=True)
    assert not report.damaged_packs and report.blobs_lost == 1  # the bogus id, which no pack holds
    assert layout.pack_name(pack_id) in _packs(history.storage)
    history.assert_intact(ids)


def test_lost_index_files_are_rebuilt_from_the_packs(tmp_path):
    history, ids = _two_snapshots(tmp_path)
    for info in list(history.storage.list(layout.INDEX_PREFIX)):
        history.storage.delete(info.name)
    assert not run_locked(CheckEngine(history.fresh_repo())).ok
    report = run_locked(RepairEngine(history.fresh_repo()), exclusive=True)
    assert report.packs_reindexed == len(_packs(history.storage)) and report.blobs_lost == 0
    history.assert_intact(ids)

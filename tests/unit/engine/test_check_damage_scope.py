"""`check --read-data`: a damaged pack names only the files whose blobs no longer decrypt, and
`--read-data-subset K/N` reads exactly the K-th of N slices of the packs."""

from __future__ import annotations

import os

import pytest

from agent.engine.check import CheckEngine, in_subset
from agent.repo import layout
from tests.support.locked import run_locked

from .test_prune import History, fridays


def _biggest_pack(history: History) -> tuple[str, bytes]:
    packs = {i.name: history.storage.read(i.name) for i in history.storage.list(layout.DATA_PREFIX)}
    return max(packs.items(), key=lambda item: len(item[1]))


def _affected_files(report) -> set[str]:
    return {path for paths in report.affected.values() for path in paths}


def test_a_pack_damaged_after_its_blobs_names_no_file(tmp_path):
    history = History(tmp_path)
    history.backup(fridays(1)[0], new_files=4)
    name, data = _biggest_pack(history)
    history.storage.write(name, data[:-1] + bytes([data[-1] ^ 0xFF]))  # its trailer: every blob still opens
    report = run_locked(CheckEngine(history.fresh_repo(), read_data=True))
    assert list(report.damaged_packs) == [name] and not report.ok
    assert _affected_files(report) == set(), report.affected


def test_a_pack_damaged_in_one_blob_names_that_blobs_file_only(tmp_path):
    history = History(tmp_path)
    history.backup(fridays(1)[0], new_files=4)
    name, data = _biggest_pack(history)
    damaged = bytearray(data)
    damaged[10] ^= 0xFF  # inside the first blob
    history.storage.write(name, bytes(damaged))
    report = run_locked(CheckEngine(history.fresh_repo(), read_data=True))
    assert list(report.damaged_packs) == [name]
    assert len(_affected_files(report)) == 1, report.affected


def test_each_pack_is_in_exactly_one_slice_chosen_by_the_first_four_bytes_of_its_id():
    names = [layout.pack_name(layout.PackId(os.urandom(32))) for _ in range(400)]
    for n in (1, 2, 13):
        for name in names:
            slices = [k for k in range(1, n + 1) if in_subset(name, k, n)]
            assert slices == [int(name.rsplit("/", 1)[-1][:8], 16) % n + 1]
    assert all(any(in_subset(name, k, 13) for name in names) for k in range(1, 14))  # none is empty
    stray = layout.DATA_PREFIX + "zz/not-a-pack"
    assert [k for k in range(1, 5) if in_subset(stray, k, 4)] == [1]  # read (and reported) with slice 1


def test_a_slice_reads_its_packs_only_and_every_slice_together_read_them_all(tmp_path):
    history = History(tmp_path)
    for when in fridays(3):
        history.backup(when, new_files=3)
    sizes = {i.name: i.size for i in history.storage.list(layout.DATA_PREFIX)}
    total = 0
    for k in (1, 2, 3):
        report = run_locked(CheckEngine(history.fresh_repo(), read_data_subset=(k, 3)))
        assert report.ok and report.read_data and report.as_dict()["read_data_subset"] == f"{k}/3"
        assert report.bytes_read == sum(size for name, size in sizes.items() if in_subset(name, k, 3))
        total += report.bytes_read
    assert total == sum(sizes.values())


@pytest.mark.parametrize("subset", [(0, 3), (4, 3), (1, 0)])
def test_an_impossible_slice_is_refused(tmp_path, subset):
    history = History(tmp_path)
    with pytest.raises(ValueError, match="expected 1 <= k <= n"):
        CheckEngine(history.fresh_repo(), read_data_subset=subset)

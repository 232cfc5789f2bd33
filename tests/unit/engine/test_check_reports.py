"""What `check` says of a repository whose index and packs disagree, of a stray damaged
pack, of many damaged files; and how `check --read-data` reads: each pack once, under a
progress bar named after the command."""

from __future__ import annotations

import os
from collections import Counter

from agent.engine.check import MAX_FILES_LISTED, CheckEngine
from agent.repo import layout
from tests.support.locked import run_locked

from .test_crafted_trees import _file_node, _snapshot, repo  # noqa: F401 (a fixture)
from .test_prune import History, fridays
from .test_restore_engine import RecordingProgress


def _history(tmp_path) -> History:
    history = History(tmp_path)
    for when in fridays(2):
        history.backup(when, new_files=2, size=20_000)
    return history


def test_read_data_reads_each_pack_once_under_a_bar_named_after_the_command(tmp_path):
    history = _history(tmp_path)
    sizes = {i.name: i.size for i in history.storage.list(layout.DATA_PREFIX)}
    reads: Counter[str] = Counter()
    real = history.storage.read

    def counting(name, *args, **kwargs):
        reads[name] += 1
        return real(name, *args, **kwargs)

    history.storage.read = counting
    progress = RecordingProgress()
    report = run_locked(CheckEngine(history.fresh_repo(), read_data=True, progress=progress))
    assert report.ok, report.errors
    assert progress.starts == [("check --read-data", sum(sizes.values()))]
    assert {name: count for name, count in reads.items() if name in sizes} == {name: 1 for name in sizes}


def test_a_damaged_pack_no_index_lists_is_a_warning_that_prune_deletes_it(tmp_path):
    history = _history(tmp_path)
    stray = layout.pack_name(layout.PackId(os.urandom(32)))
    history.storage.write(stray, b"not what its name says")
    report = run_locked(CheckEngine(history.fresh_repo(), read_data=True))
    assert report.ok
    [warning] = [w for w in report.warnings if stray in w]
    assert warning.startswith(f"pack {stray} is damaged but no index lists it (nothing uses it; prune deletes "
                              f"it): ")


def _reindex(history: History, change) -> None:
    """Write an index of the packs as `change(packs)` returns them, superseding every index file."""
    opened = history.fresh_repo()
    opened.load_index()
    packs = {pack_id: list(entries) for pack_id, entries in opened.index.packs().items()}
    opened.write_index_files(change(packs), supersede=sorted(opened.list_index_ids()))


def test_an_index_entry_the_packs_own_header_lacks_is_damage_of_that_pack(tmp_path):
    history = _history(tmp_path)
    named = {}

    def claim_a_foreign_blob(packs):
        first, second = sorted(packs)[:2]
        packs[first] = packs[first] + [packs[second][0]]
        named["pack"] = layout.pack_name(first)
        return packs

    _reindex(history, claim_a_foreign_blob)
    report = run_locked(CheckEngine(history.fresh_repo(), read_data=True))
    why = "index lists a blob the pack header does not have"
    assert report.damaged_packs == {named["pack"]: why}
    assert f"pack {named['pack']}: {why}" in report.errors


def test_a_folder_listing_no_index_entry_leads_to_is_missing_with_everything_below(tmp_path):
    history = _history(tmp_path)
    opened = history.fresh_repo()
    opened.load_index()
    newest = max(opened.snapshots(), key=lambda s: s.time)

    def forget_the_top_listing(packs):
        return {pack_id: [e for e in entries if e.chunk_id != newest.tree] for pack_id, entries in packs.items()}

    _reindex(history, forget_the_top_listing)
    report = run_locked(CheckEngine(history.fresh_repo()))
    [(label, listed)] = report.affected.items()
    assert label.startswith(newest.short_id + " (")
    assert listed == ["/: directory listing is missing, everything below it is affected"]


def _damaged_files(repo, count: int):  # noqa: F811
    """A snapshot of `count` files whose chunks no index knows."""
    return _snapshot(repo, [_file_node(f"f{i:03d}".encode(), os.urandom(32)) for i in range(count)])


def test_damaged_files_are_listed_up_to_the_limit_then_counted(repo):  # noqa: F811
    exactly = _damaged_files(repo, MAX_FILES_LISTED)
    report = run_locked(CheckEngine(repo))
    [listed] = [v for k, v in report.affected.items() if k.startswith(exactly.short_id)]
    assert len(listed) == MAX_FILES_LISTED and not listed[-1].startswith("...")
    assert listed[0] == "/f000: data chunk is missing from the index"


def test_past_the_limit_the_damaged_files_not_listed_are_counted(repo):  # noqa: F811
    more = _damaged_files(repo, MAX_FILES_LISTED + 1)
    report = run_locked(CheckEngine(repo))
    [listed] = [v for k, v in report.affected.items() if k.startswith(more.short_id)]
    assert listed[-1] == "... and 1 more" and len(listed) == MAX_FILES_LISTED + 1


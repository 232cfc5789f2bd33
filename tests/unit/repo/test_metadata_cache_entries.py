"""agent.repo.cache entry by entry: what a cache folder planted with links, FIFOs, strays and
oversized files gives back, where entries are written, and which folder listings are trimmed.

The cache is an optimisation that adds no trust: whatever odd thing sits in it, a command
gets the bytes that were put there or nothing (and then reads the storage), never bytes from
elsewhere, never a hang, never a crash."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from agent.repo import cache as cache_module
from agent.repo.cache import CacheRoot, MetadataCache

SNAPSHOT = "snapshots/" + "ab" * 16
KEY = "keys/" + "cd" * 16


@pytest.fixture
def entries(tmp_path: Path) -> MetadataCache:
    return MetadataCache(str(tmp_path / "state" / "cache" / ("00" * 16) / "repository"))


def _in_name_order(monkeypatch: pytest.MonkeyPatch, first: str) -> None:
    """Folders are scanned in the order the file system gives: pin one, `first` ahead of all."""
    scandir = os.scandir

    def ordered(path):
        return sorted(scandir(path), key=lambda e: (e.name != first, e.name))

    monkeypatch.setattr(cache_module.os, "scandir", ordered)


def test_an_entry_reads_back_as_put(entries: MetadataCache) -> None:
    entries.put(SNAPSHOT, b"sealed snapshot")
    assert entries.get(SNAPSHOT) == b"sealed snapshot"
    assert entries.names("snapshots/") == [SNAPSHOT]


def test_a_link_planted_in_the_cache_is_not_followed(entries: MetadataCache, tmp_path: Path) -> None:
    entries.put(SNAPSHOT, b"ours")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(b"bytes from outside the cache")
    path = Path(entries.path) / "snapshots" / ("ab" * 16)
    path.unlink()
    path.symlink_to(elsewhere)
    assert entries.get(SNAPSHOT) is None


class Blocked(Exception):
    """Not an OSError: the cache must not take it for a failed read."""


def _blocked(_signum, _frame):
    raise Blocked("the cache waited on a FIFO")


def test_a_fifo_planted_in_the_cache_gives_nothing_and_does_not_block(entries: MetadataCache) -> None:
    entries.put(SNAPSHOT, b"ours")
    path = Path(entries.path) / "snapshots" / ("ab" * 16)
    path.unlink()
    os.mkfifo(path)
    previous = signal.signal(signal.SIGALRM, _blocked)
    signal.setitimer(signal.ITIMER_REAL, 5)  # an open that waits for a writer fails the test, not hangs it
    try:
        assert entries.get(SNAPSHOT) is None  # not b"": an empty "entry" would be taken for the object
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_an_entry_larger_than_any_object_is_not_read(entries: MetadataCache, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache_module, "MAX_ENTRY_SIZE", 10)
    entries.put(SNAPSHOT, b"0123456789")  # exactly the bound: read whole
    assert entries.get(SNAPSHOT) == b"0123456789"
    entries.put(SNAPSHOT, b"0123456789A")
    assert entries.get(SNAPSHOT) is None


def test_an_entry_is_written_beside_its_final_name_and_renamed_into_place(
        entries: MetadataCache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A rename within one folder is atomic: a crash leaves the old entry or the new."""
    renames: list[tuple[str, str]] = []
    replace = os.replace

    def recorded(source, target):
        renames.append((source, target))
        replace(source, target)

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cache_module.os, "replace", recorded)
    entries.put(SNAPSHOT, b"sealed")
    [(source, target)] = renames
    assert os.path.dirname(source) == os.path.dirname(target) == os.path.join(entries.path, "snapshots")
    assert os.path.basename(source).startswith(".tmp-")


def test_a_link_planted_at_the_temporary_name_is_not_written_through(
        entries: MetadataCache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entries.put(SNAPSHOT, b"first")  # the folders exist
    victim = tmp_path / "victim"
    victim.write_bytes(b"untouched")
    monkeypatch.setattr(cache_module.secrets, "token_hex", lambda _n: "0" * 16)
    (Path(entries.path) / "snapshots" / ".tmp-0000000000000000").symlink_to(victim)
    entries.put(SNAPSHOT, b"second")
    assert victim.read_bytes() == b"untouched"
    assert entries.get(SNAPSHOT) == b"first"  # the failed write changed nothing


def test_a_failed_write_leaves_no_temporary_file(entries: MetadataCache, monkeypatch: pytest.MonkeyPatch) -> None:
    entries.put(KEY, b"first")

    def refused(_source, _target):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(cache_module.os, "replace", refused)
    entries.put(KEY, b"second")  # a cache write that fails is ignored: the cache only costs or saves time
    assert os.listdir(os.path.join(entries.path, "keys")) == ["cd" * 16]
    assert entries.names("keys/") == [KEY]


def test_a_name_that_is_not_an_object_of_the_repository_is_a_bug_said_as_such(entries: MetadataCache) -> None:
    with pytest.raises(ValueError, match=r"^not a cacheable object name: 'config'$"):
        entries.get("config")


def test_strays_in_the_cache_folder_do_not_hide_the_repositories_after_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = CacheRoot(str(tmp_path / "cache"))
    repository_id = bytes(range(16))
    root.repository(repository_id).put(KEY, b"key file")
    (tmp_path / "cache" / "not-hex").mkdir()
    (tmp_path / "cache" / "abcd").mkdir()  # hexadecimal, but not a repository id
    for stray in ("not-hex", "abcd"):
        _in_name_order(monkeypatch, first=stray)
        assert root.key_files(KEY) == [(repository_id, b"key file")]


def test_a_missing_cache_folder_holds_no_key_file(tmp_path: Path) -> None:
    assert CacheRoot(str(tmp_path / "none")).key_files(KEY) == []


# ---- folder listings ------------------------------------------------------------------------

def _listing(cache: MetadataCache, number: int, size: int, age: int) -> bytes:
    chunk_id = bytes([number]) * 32
    cache.put_tree(chunk_id, b"x" * size)
    path = os.path.join(cache.path, "trees", chunk_id.hex())
    os.utime(path, (1000 + age, 1000 + age))
    return chunk_id


def test_listings_exactly_at_the_bound_are_all_kept(entries: MetadataCache) -> None:
    ids = [_listing(entries, n, 100, n) for n in range(3)]
    entries.trim_trees(lambda _chunk_id: True, limit=300)
    assert [entries.get_tree(i) is not None for i in ids] == [True, True, True]


def test_stray_files_among_the_listings_are_removed_and_trimming_goes_on(
        entries: MetadataCache, monkeypatch: pytest.MonkeyPatch) -> None:
    kept = _listing(entries, 1, 100, 1)
    gone = _listing(entries, 2, 100, 2)
    stray = Path(entries.path) / "trees" / "not-a-chunk-id"
    stray.write_bytes(b"junk")
    _in_name_order(monkeypatch, first=stray.name)
    entries.trim_trees(lambda chunk_id: chunk_id == kept)
    assert not stray.exists()
    assert entries.get_tree(kept) is not None and entries.get_tree(gone) is None


def test_a_link_among_the_listings_counts_its_own_size_not_its_targets(
        entries: MetadataCache, tmp_path: Path) -> None:
    """A link planted in trees/ (never written by the cache, never read through: get
    refuses links) must not push the real listings out by the size of what it points to."""
    ids = [_listing(entries, n, 100, n) for n in range(2)]
    large = tmp_path / "large"
    large.write_bytes(b"y" * 10_000)
    link = Path(entries.path) / "trees" / ("ff" * 32)
    link.symlink_to(large)
    os.utime(link, (900, 900), follow_symlinks=False)
    entries.trim_trees(lambda _chunk_id: True, limit=1000)
    assert [entries.get_tree(i) is not None for i in ids] == [True, True]

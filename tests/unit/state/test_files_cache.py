"""agent.state.files_cache: unchanged files are recognised; only committed runs count."""

from __future__ import annotations

import os

import pytest

from agent.state.files_cache import FilesCache

SHA = "5e" * 32
CHUNKS = [b"\x01" * 32, b"\x02" * 32, b"\x03" * 32]


@pytest.fixture
def db_path(tmp_path) -> str:
    return str(tmp_path / "state" / "files.sqlite")


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "src" / "lettre.txt"
    path.parent.mkdir()
    path.write_bytes(b"Cher confrere, ...")
    return path


def _with(st: os.stat_result, **changes) -> os.stat_result:
    """A copy of a real stat result with some fields replaced (for changes the clock cannot make reliably)."""
    seq = [st[i] for i in range(10)]
    positions = {"st_ino": 1, "st_dev": 2, "st_size": 6}
    extra = {name: getattr(st, name) for name in
             ("st_atime", "st_mtime", "st_ctime", "st_atime_ns", "st_mtime_ns", "st_ctime_ns")}
    for key, value in changes.items():
        if key in positions:
            seq[positions[key]] = value
        else:
            extra[key] = value
    return os.stat_result(seq, extra)


def _committed(db_path: str, entries: dict[bytes, os.stat_result]) -> None:
    cache = FilesCache(db_path)
    for path, st in entries.items():
        cache.record(path, st, SHA, CHUNKS)
    cache.commit()
    cache.close()


def test_creates_its_directory_private(db_path):
    FilesCache(db_path).close()
    assert os.path.isfile(db_path)
    assert os.stat(os.path.dirname(db_path)).st_mode & 0o077 == 0


def test_unknown_path_is_none(db_path, source):
    cache = FilesCache(db_path)
    assert cache.lookup(os.fsencode(source), os.stat(source)) is None
    cache.close()


def test_unchanged_file_is_recognised_with_its_content(db_path, source):
    key = os.fsencode(source)
    _committed(db_path, {key: os.stat(source)})
    cache = FilesCache(db_path)
    hit = cache.lookup(key, os.stat(source))
    assert hit is not None
    assert hit.unchanged is True
    assert hit.sha256 == SHA
    assert hit.chunks == CHUNKS
    cache.close()


def test_file_with_no_chunks(db_path, source):
    key = os.fsencode(source)
    cache = FilesCache(db_path)
    cache.record(key, os.stat(source), SHA, [])
    cache.commit()
    hit = cache.lookup(key, os.stat(source))
    assert hit.unchanged and hit.chunks == []
    cache.close()


def test_non_utf8_path_is_a_key(db_path, source):
    key = b"/srv/cabinet/caf\xe9.txt"
    _committed(db_path, {key: os.stat(source)})
    cache = FilesCache(db_path)
    assert cache.lookup(key, os.stat(source)).unchanged
    assert cache.lookup(b"/srv/cabinet/cafe.txt", os.stat(source)) is None
    cache.close()


@pytest.mark.parametrize(
    "change",
    [
        {"st_size": 1},
        {"st_mtime_ns": 1},
        {"st_ctime_ns": 1},
        {"st_ino": 1},
        {"st_dev": 1},
    ],
    ids=lambda c: next(iter(c)),
)
def test_any_changed_attribute_means_changed(db_path, source, change):
    key = os.fsencode(source)
    st = os.stat(source)
    _committed(db_path, {key: st})
    field, delta = next(iter(change.items()))
    changed = _with(st, **{field: getattr(st, field) + delta})
    cache = FilesCache(db_path)
    assert cache.lookup(key, st).unchanged is True
    hit = cache.lookup(key, changed)
    assert hit is not None
    assert hit.unchanged is False
    assert hit.chunks == CHUNKS  # previous content is still reported
    cache.close()


def test_really_rewritten_file_is_changed(db_path, source):
    key = os.fsencode(source)
    _committed(db_path, {key: os.stat(source)})
    source.write_bytes(b"Cher confrere, ... (version corrigee)")
    cache = FilesCache(db_path)
    assert cache.lookup(key, os.stat(source)).unchanged is False
    cache.close()


def test_file_replaced_by_another_inode_is_changed(db_path, source):
    key = os.fsencode(source)
    original = os.stat(source)
    _committed(db_path, {key: original})
    replacement = source.with_name("new")
    replacement.write_bytes(source.read_bytes())
    os.utime(replacement, ns=(original.st_atime_ns, original.st_mtime_ns))
    os.replace(replacement, source)  # the old inode was still in use: they differ
    st = os.stat(source)
    assert st.st_ino != original.st_ino and st.st_size == original.st_size
    cache = FilesCache(db_path)
    assert cache.lookup(key, st).unchanged is False
    cache.close()


def test_mtime_restored_but_ctime_changed_is_changed(db_path, source):
    """`touch -r` style: mtime put back, ctime (set by the kernel) moves on."""
    key = os.fsencode(source)
    st = os.stat(source)
    _committed(db_path, {key: st})
    later = _with(st, st_ctime_ns=st.st_ctime_ns + 1_000_000_000)
    cache = FilesCache(db_path)
    assert cache.lookup(key, later).unchanged is False
    cache.close()


def test_commit_drops_entries_not_seen_this_run(db_path, source):
    st = os.stat(source)
    _committed(db_path, {b"/a": st, b"/b": st, b"/c": st})

    second = FilesCache(db_path)
    assert second.lookup(b"/a", st).unchanged
    second.touch(b"/a")  # seen and unchanged
    second.record(b"/c", st, "00" * 32, [b"\x09" * 32])  # seen and re-read
    # /b not seen: deleted from the source
    second.commit()
    second.close()

    third = FilesCache(db_path)
    assert third.lookup(b"/a", st).unchanged
    assert third.lookup(b"/b", st) is None
    assert third.lookup(b"/c", st).chunks == [b"\x09" * 32]
    third.close()


def test_uncommitted_records_vanish_after_close(db_path, source):
    st = os.stat(source)
    _committed(db_path, {b"/kept": st})
    crashed = FilesCache(db_path)
    crashed.record(b"/new", st, SHA, CHUNKS)
    crashed.record(b"/kept", st, "00" * 32, [])  # would replace the old entry
    assert crashed.lookup(b"/new", st) is not None  # visible inside the run
    crashed.close()  # no commit: the backup died before its snapshot was saved

    after = FilesCache(db_path)
    assert after.lookup(b"/new", st) is None
    kept = after.lookup(b"/kept", st)
    assert kept.sha256 == SHA and kept.chunks == CHUNKS
    after.close()


def test_uncommitted_run_does_not_drop_previous_entries(db_path, source):
    st = os.stat(source)
    _committed(db_path, {b"/a": st, b"/b": st})
    crashed = FilesCache(db_path)
    crashed.touch(b"/a")
    crashed.close()
    after = FilesCache(db_path)
    assert after.lookup(b"/a", st) is not None
    assert after.lookup(b"/b", st) is not None
    after.close()


def test_run_counter_advances_only_on_commit(db_path):
    first = FilesCache(db_path)
    run = first.run
    first.close()
    again = FilesCache(db_path)
    assert again.run == run
    again.commit()
    again.close()
    last = FilesCache(db_path)
    assert last.run == run + 1
    last.close()


def test_folder_reads_the_direct_children_only(db_path, source):
    st = os.stat(source)
    paths = [b"/srv/a/x.txt", b"/srv/a/y.txt", b"/srv/a/sub/z.txt", b"/srv/a0/w.txt", b"/srv/a.txt", b"/top.txt"]
    _committed(db_path, {p: st for p in paths})
    cache = FilesCache(db_path)
    assert not cache.empty
    assert sorted(cache.folder(b"/srv/a")) == [b"x.txt", b"y.txt"]
    assert sorted(cache.folder(b"/srv/a/sub")) == [b"z.txt"]
    assert sorted(cache.folder(b"/")) == [b"top.txt"]
    assert cache.folder(b"/nowhere") == {}
    hit = cache.check(cache.folder(b"/srv/a")[b"x.txt"], st)
    assert hit.unchanged and hit.sha256 == SHA and hit.chunks == CHUNKS
    assert not cache.check(cache.folder(b"/srv/a")[b"x.txt"], _with(st, st_size=st.st_size + 1)).unchanged
    cache.close()


@pytest.mark.parametrize("forget", [[], [b"y.txt"]])
def test_touch_folder_keeps_what_was_seen_and_record_many_adds(db_path, source, forget):
    st = os.stat(source)
    _committed(db_path, {b"/srv/a/x.txt": st, b"/srv/a/y.txt": st, b"/srv/a/sub/z.txt": st})
    cache = FilesCache(db_path)
    cache.touch_folder(b"/srv/a", forget=forget)
    cache.record_many([(b"/srv/b/n.txt", st, SHA, CHUNKS)])
    cache.commit()
    cache.close()
    cache = FilesCache(db_path)
    assert sorted(cache.folder(b"/srv/a")) == sorted({b"x.txt", b"y.txt"} - set(forget))
    assert cache.folder(b"/srv/a/sub") == {}  # not seen by this run: forgotten
    assert list(cache.folder(b"/srv/b")) == [b"n.txt"]
    cache.close()


def test_a_folder_is_marked_seen_with_one_statement_whatever_its_size(db_path, source):
    st = os.stat(source)
    _committed(db_path, {b"/srv/a/f%04d.txt" % i: st for i in range(500)} | {b"/srv/b/gone.txt": st, b"/top.txt": st})
    cache = FilesCache(db_path)
    statements: list[str] = []
    cache._db.set_trace_callback(statements.append)
    cache.touch_folder(b"/srv/a")
    cache.touch_folder(b"/")
    cache._db.set_trace_callback(None)
    writes = [s for s in statements if s.split()[0] != "BEGIN"]  # BEGIN: the transaction
    assert len(writes) == 2 and not any("files" in s for s in writes)  # no file row rewritten
    cache.commit()
    cache.close()
    cache = FilesCache(db_path)
    assert len(cache.folder(b"/srv/a")) == 500 and list(cache.folder(b"/")) == [b"top.txt"]
    assert cache.folder(b"/srv/b") == {}  # its folder not seen: forgotten
    cache.close()
    cache = FilesCache(db_path)  # the next run did not see /srv/a: its files are forgotten then
    cache.touch_folder(b"/")
    cache.commit()
    cache.close()
    cache = FilesCache(db_path)
    assert cache.folder(b"/srv/a") == {} and list(cache.folder(b"/")) == [b"top.txt"]
    cache.close()


def test_an_empty_cache_is_not_queried(db_path):
    cache = FilesCache(db_path)
    assert cache.empty and cache.folder(b"/srv") == {}
    cache.close()

"""Unchanged folders taken whole from the previous run (issue 19 point 6, FOLDER_RULE in
agent.engine.backup): same trees, and every change inside a folder still caught, even
one that leaves the folder's own mtime as it was."""

from __future__ import annotations

import hashlib
import os
import types

import pytest

from agent.engine.backup import BackupEngine, BackupOptions
from agent.engine.expansion import Expansion
from agent.state.files_cache import FilesCache
from agent.engine.walk import load_tree
from agent.repo.repository import Repository
from agent.repo.tree import FILE
from tests.support.locked import run_locked
from tests.support.repos import memory_repository



@pytest.fixture
def repo() -> Repository:
    return memory_repository()


@pytest.fixture
def source(tmp_path):
    root = tmp_path / "src"
    for folder in ("a", "a/deep", "b", "c"):
        (root / folder).mkdir(parents=True)
        for i in range(3):
            (root / folder / f"letter{i}.txt").write_bytes(f"{folder} letter {i} ".encode() * 40)
    (root / "c" / "link").symlink_to("letter0.txt")
    return root


def _backup(repo, source, cache_path, **options):
    cache = FilesCache(str(cache_path))
    try:
        return run_locked(BackupEngine(repo, BackupOptions(paths=[str(source)], **options), files_cache=cache))
    finally:
        cache.close()


def _contents(repo, report, source) -> dict[str, tuple[str, int]]:
    prefix = os.fsencode(str(source).lstrip("/"))
    return {os.fsdecode(os.path.relpath(path, prefix)): (node.sha256, node.mode)
            for path, node in Expansion(repo, report.snapshot.tree).walk() if node.type == FILE}


def _source_tree(repo, report, source) -> bytes:
    tree_id = report.snapshot.tree
    for name in os.fsencode(str(source)).strip(b"/").split(b"/"):
        tree_id = next(n for n in load_tree(repo, tree_id) if n.name == name).subtree
    return tree_id


def _expected(source) -> dict[str, tuple[str, int]]:
    found = {}
    for folder, _dirs, files in os.walk(source):
        for name in files:
            path = os.path.join(folder, name)
            if os.path.islink(path):
                continue
            with open(path, "rb") as handle:
                found[os.path.relpath(path, source)] = (hashlib.sha256(handle.read()).hexdigest(),
                                                        os.stat(path).st_mode & 0o7777)
    return found


def test_an_unchanged_tree_is_taken_whole_and_is_the_same(repo, source, tmp_path):
    first = _backup(repo, source, tmp_path / "cache")
    second = _backup(repo, source, tmp_path / "cache")
    assert first.folders_reused == 0
    # src, a, a/deep, b, c (the folders above src: never recorded as sources' parents)
    assert second.folders_reused == 5
    assert second.files_unchanged == 12 and second.files_new == second.files_changed == 0
    # The same tree for the source (the folders above it hold the files cache: changed).
    assert _source_tree(repo, second, source) == _source_tree(repo, first, source)
    assert _contents(repo, second, source) == _expected(source)
    third = _backup(repo, source, tmp_path / "cache")  # the records were kept by the second run
    assert third.folders_reused == 5


def test_a_file_rewritten_in_place_with_its_mtime_put_back_is_caught(repo, source, tmp_path):
    _backup(repo, source, tmp_path / "cache")
    folder = source / "a" / "deep"
    folder_times = os.stat(folder).st_atime_ns, os.stat(folder).st_mtime_ns
    letter = folder / "letter1.txt"
    before = os.stat(letter)
    with open(letter, "r+b") as handle:  # same size, same inode, new bytes
        handle.write(b"X" * 10)
    os.utime(letter, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.utime(folder, ns=folder_times)
    assert os.stat(folder).st_mtime_ns == folder_times[1] and os.stat(letter).st_mtime_ns == before.st_mtime_ns
    report = _backup(repo, source, tmp_path / "cache")
    assert report.folders_reused == 2  # b and c; not a/deep, nor a and src above it
    assert report.files_changed == 1
    assert _contents(repo, report, source) == _expected(source)


def test_a_permission_change_is_caught(repo, source, tmp_path):
    _backup(repo, source, tmp_path / "cache")
    os.chmod(source / "b" / "letter2.txt", 0o600)
    report = _backup(repo, source, tmp_path / "cache")
    assert report.folders_reused == 3  # a, a/deep, c
    assert _contents(repo, report, source) == _expected(source)


def test_a_replaced_symbolic_link_is_caught(repo, source, tmp_path):
    first = _backup(repo, source, tmp_path / "cache")
    os.unlink(source / "c" / "link")
    (source / "c" / "link").symlink_to("letter2.txt")
    report = _backup(repo, source, tmp_path / "cache")
    assert report.folders_reused == 3 and _source_tree(repo, report, source) != _source_tree(repo, first, source)


def test_a_chunk_missing_from_the_repository_stops_the_reuse(repo, source, tmp_path, monkeypatch):
    first = _backup(repo, source, tmp_path / "cache")
    gone = next(node.chunks[0] for path, node in Expansion(repo, first.snapshot.tree).walk()
                if node.type == FILE and path.endswith(b"b/letter0.txt"))
    real = Repository.has_blob
    monkeypatch.setattr(Repository, "has_blob", lambda self, chunk_id: chunk_id != gone and real(self, chunk_id))
    report = _backup(repo, source, tmp_path / "cache")
    assert report.folders_reused == 3  # a, a/deep, c: b stored again (its letter read again), src above it
    assert report.files_changed == 1  # the letter whose chunk is gone was read again


def test_other_options_or_a_warning_stop_the_reuse(repo, source, tmp_path):
    _backup(repo, source, tmp_path / "cache")
    assert _backup(repo, source, tmp_path / "cache", excludes=["*.tmp"]).folders_reused == 0
    os.mkfifo(source / "b" / "pipe")  # a special file: a warning, every run
    report = _backup(repo, source, tmp_path / "cache", excludes=["*.tmp"])
    assert report.warnings and report.folders_reused == 3  # a, a/deep, c
    assert _backup(repo, source, tmp_path / "cache", excludes=["*.tmp"]).folders_reused == 3


def _signed(folder) -> list:
    return [(name, os.lstat(os.path.join(folder, name)), None) for name in sorted(os.listdir(folder))]


def test_the_signature_is_value_based_and_follows_every_signed_field(repo, source):
    engine = BackupEngine(repo, BackupOptions(paths=[str(source)], excludes=["*.tmp"]))
    signed = _signed(os.fsencode(source / "c"))
    uid, gid = signed[0][1].st_uid, signed[0][1].st_gid
    # The same names as one object or as equal copies: the same signature (marshal from
    # version 3 on would write the second one as a reference to the first).
    engine._names._users[uid] = engine._names._groups[gid] = name = "practice"
    shared = engine._signature(signed)
    engine._names._groups[gid] = "".join(["prac", "tice"])
    assert engine._signature(signed) == shared
    other = BackupEngine(repo, BackupOptions(paths=[str(source)], excludes=["*.log"]))
    other._names._users[uid] = other._names._groups[gid] = name
    assert other._signature(signed) != shared  # the options that decide what is kept
    engine._names._groups[gid] = name
    fields = ("st_mode", "st_uid", "st_gid", "st_size", "st_mtime_ns", "st_ctime_ns", "st_ino", "st_dev",
              "st_nlink", "st_blocks")
    name0, st0, _ = signed[0]
    for field_name in fields:
        changed = types.SimpleNamespace(**{f: getattr(st0, f) for f in fields})
        setattr(changed, field_name, getattr(st0, field_name) + 1)
        assert engine._signature([(name0, changed, None)] + signed[1:]) != shared, field_name
    assert engine._signature([(name0, st0, b"\x01" * 32)] + signed[1:]) != shared  # a subfolder's tree
    assert engine._signature([(name0 + b"x", st0, None)] + signed[1:]) != shared
    engine._names._users[uid] = "someone else"  # an owner renamed in /etc/passwd
    assert engine._signature(signed) != shared
    engine._names._users[uid] = name
    assert engine._signature(signed) == shared


def test_each_folder_signature_is_computed_once_per_run(repo, source, tmp_path, monkeypatch):
    _backup(repo, source, tmp_path / "cache")
    (source / "b" / "letter2.txt").write_bytes(b"changed")  # b and src above it are built again
    calls = []
    real = BackupEngine._signature
    monkeypatch.setattr(BackupEngine, "_signature", lambda self, signed: calls.append(1) or real(self, signed))
    report = _backup(repo, source, tmp_path / "cache")
    assert report.folders_reused == 3 and report.files_changed == 1
    assert len(calls) == 5  # src, a, a/deep, b, c: once each


def test_a_changed_folder_marks_its_unchanged_files_seen_in_one_statement(repo, tmp_path):
    root = tmp_path / "many"
    root.mkdir()
    for i in range(40):
        (root / f"letter{i:02d}.txt").write_bytes(b"letter %d " % i * 30)
    _backup(repo, root, tmp_path / "cache")
    (root / "letter07.txt").write_bytes(b"changed")
    (root / "letter08.txt").unlink()
    cache = FilesCache(str(tmp_path / "cache"))
    statements: list[str] = []
    cache._db.set_trace_callback(statements.append)
    try:
        report = run_locked(BackupEngine(repo, BackupOptions(paths=[str(root)]), files_cache=cache))
    finally:
        cache.close()
    assert report.files_unchanged == 38 and report.files_changed == 1
    marks = [s for s in statements if s.startswith(("UPDATE files", "INSERT OR REPLACE INTO seen"))]
    assert len(marks) == 1  # the folder, not each of its 38 unchanged files
    again = FilesCache(str(tmp_path / "cache"))
    try:
        kept = again.folder(os.fsencode(root))
    finally:
        again.close()
    assert len(kept) == 39 and b"letter08.txt" not in kept  # the vanished one forgotten
    assert FilesCache.unchanged(kept[b"letter07.txt"], os.lstat(root / "letter07.txt"))  # recorded again

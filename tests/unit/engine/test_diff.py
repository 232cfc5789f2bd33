"""agent.engine.diff: what changed between two snapshots, at the cost of what changed.

Most snapshots here are written listing by listing (every field chosen); the last tests
take them with the real backup engine from a folder on disk. Listings read are counted
twice: by the engine's own counter and by a spy on the repository, which must agree.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from zoneinfo import ZoneInfo

import pytest

from agent import clock
from agent.engine import expansion as expansion_module
from agent.engine.backup import BackupEngine, BackupOptions
from agent.engine.diff import ADDED, CHANGED, METADATA, REMOVED, Difference, SnapshotDiff
from agent.errors import IntegrityError
from agent.repo.lock import RepositoryLock
from agent.repo.pack import BLOB_DATA, BLOB_TREE
from agent.repo.repository import Repository
from agent.repo.snapshot import Snapshot
from agent.repo.tree import DIR, FILE, SYMLINK, Node, encode_tree
from tests.support.locked import run_locked
from tests.support.repos import memory_repository

PARIS = ZoneInfo("Europe/Paris")
NOW = dt.datetime(2026, 12, 1, 9, tzinfo=PARIS)
MTIME = 1_700_000_000 * 10**9


@pytest.fixture(autouse=True)
def frozen_clock():
    clock.freeze(NOW)
    yield
    clock.freeze(None)


@pytest.fixture
def repo() -> Repository:
    return memory_repository()


class Spy:
    """Counts the blobs read from one repository, by id."""

    def __init__(self, repo: Repository) -> None:
        self.read: list[bytes] = []
        real = repo.load_blob

        def counting(chunk_id: bytes) -> bytes:
            self.read.append(chunk_id)
            return real(chunk_id)

        repo.load_blob = counting  # type: ignore[method-assign]


def file(repo: Repository, name: bytes, content: bytes = b"lettre\n", **meta) -> Node:
    chunk, _ = repo.store_blob(BLOB_DATA, content)
    return Node(name=name, type=FILE, mode=meta.get("mode", 0o640), uid=meta.get("uid", 1000),
                gid=meta.get("gid", 1000), mtime_ns=meta.get("mtime_ns", MTIME), size=len(content),
                sha256=hashlib.sha256(content).hexdigest(), chunks=[chunk])


def folder(repo: Repository, name: bytes, nodes: list[Node], **meta) -> Node:
    subtree, _ = repo.store_blob(BLOB_TREE, encode_tree(nodes))
    return Node(name=name, type=DIR, mode=meta.get("mode", 0o750), uid=meta.get("uid", 1000),
                gid=meta.get("gid", 1000), mtime_ns=meta.get("mtime_ns", MTIME), subtree=subtree)


def link(name: bytes, target: bytes) -> Node:
    return Node(name=name, type=SYMLINK, mode=0o777, uid=1000, gid=1000, mtime_ns=MTIME, target=target)


def snapshot(repo: Repository, nodes: list[Node], *, when: dt.datetime = NOW) -> Snapshot:
    tree_id, _ = repo.store_blob(BLOB_TREE, encode_tree(nodes))
    repo.flush()
    taken = Snapshot(time=when, host="h", user="u", paths=["/"], tree=tree_id)
    taken.id = repo.save_snapshot(taken)
    return taken


def run(repo: Repository, before: Snapshot, after: Snapshot) -> tuple[SnapshotDiff, list[Difference]]:
    with RepositoryLock(repo, "test"):
        engine = SnapshotDiff(repo, before, after)
        return engine, list(engine.run())


def brief(found: list[Difference]) -> list[tuple[str, bytes]]:
    return [(d.kind, d.path) for d in found]


def big_folder(repo: Repository, folders: int = 20, files: int = 10) -> Node:
    """A folder of `folders` sub-folders of `files` files each: 1 + folders listings."""
    subs = [folder(repo, b"patient-%03d" % i, [file(repo, b"cr-%02d.odt" % j, b"%d/%d" % (i, j))
                                              for j in range(files)]) for i in range(folders)]
    return folder(repo, b"archives", subs)


# ---- what is found --------------------------------------------------------------------------


def test_added_removed_changed_and_metadata_only(repo):
    big = big_folder(repo)
    kept = file(repo, b"a.txt", b"unchanged\n")
    before = snapshot(repo, [big, folder(repo, b"docs", [
        kept, file(repo, b"b.txt", b"version 1\n"), file(repo, b"c.txt", b"gone\n"),
        file(repo, b"d.txt", b"same bytes\n")])])
    after = snapshot(repo, [big, folder(repo, b"docs", [
        kept, file(repo, b"b.txt", b"version 2, longer\n"), file(repo, b"d.txt", b"same bytes\n", mode=0o600),
        file(repo, b"e.txt", b"new\n")])])

    engine, found = run(repo, before, after)

    assert brief(found) == [(CHANGED, b"docs/b.txt"), (REMOVED, b"docs/c.txt"), (METADATA, b"docs/d.txt"),
                            (ADDED, b"docs/e.txt")]
    changed, removed, metadata, added = found
    assert (changed.type, changed.size_before, changed.size_after) == (FILE, 10, 18)
    assert changed.fields == ()
    assert (removed.type, removed.size_before, removed.size_after) == (FILE, 5, None)
    assert (added.type, added.size_before, added.size_after) == (FILE, None, 4)
    assert metadata.fields == ("mode",) and metadata.before.mode == 0o640 and metadata.after.mode == 0o600
    summary = engine.summary
    assert summary.counts == {ADDED: 1, REMOVED: 1, CHANGED: 1, METADATA: 1}
    assert (summary.bytes_added, summary.bytes_removed) == (4, 5)
    assert (summary.bytes_changed_before, summary.bytes_changed_after) == (10, 18)


def test_an_unchanged_folder_is_never_read(repo):
    """Two roots and two docs listings are read; none of the 21 listings of archives/."""
    big = big_folder(repo)
    before = snapshot(repo, [big, folder(repo, b"docs", [file(repo, b"a.txt", b"1")])])
    after = snapshot(repo, [big, folder(repo, b"docs", [file(repo, b"a.txt", b"2")])])
    spy = Spy(repo)

    engine, found = run(repo, before, after)

    assert brief(found) == [(CHANGED, b"docs/a.txt")]
    assert engine.listings_loaded == 4 == len(spy.read)
    assert big.subtree not in spy.read


def test_identical_snapshots_differ_in_nothing_and_read_nothing(repo):
    nodes = [big_folder(repo, folders=3), file(repo, b"x.txt")]
    first = snapshot(repo, nodes)
    second = snapshot(repo, nodes, when=NOW + dt.timedelta(days=7))
    spy = Spy(repo)

    engine, found = run(repo, first, second)

    assert found == [] and engine.listings_loaded == 0 == len(spy.read)
    assert engine.summary.counts == {ADDED: 0, REMOVED: 0, CHANGED: 0, METADATA: 0}
    engine, found = run(repo, first, first)  # a snapshot with itself
    assert found == [] and engine.listings_loaded == 0


def test_only_the_root_listings_are_read_when_the_top_folder_alone_differs(repo):
    """The same folders under a root whose own entry changed only in its mtime: the two
    root listings are read, nothing below them."""
    big = big_folder(repo, folders=3)
    before = snapshot(repo, [folder(repo, b"srv", [big], mtime_ns=MTIME)])
    after = snapshot(repo, [folder(repo, b"srv", [big], mtime_ns=MTIME + 10**9)])
    spy = Spy(repo)

    engine, found = run(repo, before, after)

    assert brief(found) == [(METADATA, b"srv")] and found[0].fields == ("mtime",)
    assert engine.listings_loaded == 2 == len(spy.read)


def test_each_metadata_field_is_named(repo):
    content = b"ordonnance\n"
    before = snapshot(repo, [file(repo, b"m", content), file(repo, b"o", content), file(repo, b"t", content),
                             file(repo, b"all", content)])
    after = snapshot(repo, [file(repo, b"m", content, mode=0o644), file(repo, b"o", content, uid=0, gid=0),
                            file(repo, b"t", content, mtime_ns=MTIME + 1),
                            file(repo, b"all", content, mode=0o600, uid=33, gid=33, mtime_ns=MTIME - 1)])

    _, found = run(repo, before, after)

    assert [(d.path, d.kind, d.fields) for d in found] == [
        (b"all", METADATA, ("mode", "uid", "gid", "mtime")), (b"m", METADATA, ("mode",)),
        (b"o", METADATA, ("uid", "gid")), (b"t", METADATA, ("mtime",))]


def test_content_and_metadata_changed_together_is_a_change_naming_the_metadata(repo):
    before = snapshot(repo, [file(repo, b"a", b"1")])
    after = snapshot(repo, [file(repo, b"a", b"2", mtime_ns=MTIME + 5)])

    _, (found,) = run(repo, before, after)

    assert (found.kind, found.fields) == (CHANGED, ("mtime",))


def test_a_rename_is_a_removal_and_an_addition(repo):
    content = b"compte rendu\n"
    before = snapshot(repo, [file(repo, b"dupont.odt", content)])
    after = snapshot(repo, [file(repo, b"dupont-jean.odt", content)])

    _, found = run(repo, before, after)

    assert brief(found) == [(ADDED, b"dupont-jean.odt"), (REMOVED, b"dupont.odt")]
    assert found[0].after.sha256 == found[1].before.sha256


def test_a_folder_added_or_removed_is_listed_with_everything_below_it(repo):
    scans = folder(repo, b"scans", [file(repo, b"1.pdf", b"a" * 100), file(repo, b"2.pdf", b"b" * 50),
                                    folder(repo, b"old", [file(repo, b"0.pdf", b"c" * 7)]),
                                    folder(repo, b"empty", [])])
    without = snapshot(repo, [file(repo, b"x", b"x")])
    with_scans = snapshot(repo, [scans, file(repo, b"x", b"x")])

    engine, found = run(repo, without, with_scans)

    assert brief(found) == [(ADDED, b"scans"), (ADDED, b"scans/1.pdf"), (ADDED, b"scans/2.pdf"),
                            (ADDED, b"scans/empty"), (ADDED, b"scans/old"), (ADDED, b"scans/old/0.pdf")]
    assert found[0].type == DIR and found[0].size_after is None
    assert engine.summary.counts[ADDED] == 6 and engine.summary.files[ADDED] == 3
    assert engine.summary.bytes_added == 157

    engine, found = run(repo, with_scans, without)  # the other way round

    assert [k for k, _ in brief(found)] == [REMOVED] * 6
    assert engine.summary.files[REMOVED] == 3 and engine.summary.bytes_removed == 157


def test_a_file_turned_into_a_folder_and_back(repo):
    as_file = snapshot(repo, [file(repo, b"notes", b"plain notes\n")])
    as_folder = snapshot(repo, [folder(repo, b"notes", [file(repo, b"2026.txt", b"abc")])])

    engine, found = run(repo, as_file, as_folder)

    assert brief(found) == [(CHANGED, b"notes"), (ADDED, b"notes/2026.txt")]
    assert (found[0].type_before, found[0].type) == (FILE, DIR)
    assert (found[0].size_before, found[0].size_after) == (12, None)
    # the file that went counts as a changed file of 12 bytes that became nothing
    assert engine.summary.files[CHANGED] == 1 and engine.summary.bytes_changed_before == 12

    _, found = run(repo, as_folder, as_file)

    assert brief(found) == [(CHANGED, b"notes"), (REMOVED, b"notes/2026.txt")]
    assert (found[0].type_before, found[0].type) == (DIR, FILE)


def test_a_symbolic_link_changes_with_its_target(repo):
    before = snapshot(repo, [link(b"current", b"2025"), link(b"same", b"x")])
    after = snapshot(repo, [link(b"current", b"2026"), link(b"same", b"x")])

    _, found = run(repo, before, after)

    assert brief(found) == [(CHANGED, b"current")] and found[0].type == SYMLINK
    assert found[0].size_before is None and found[0].size_after is None


def test_names_that_are_not_utf8_come_out_as_their_bytes(repo):
    latin1 = b"r\xe9sum\xe9.txt"
    before = snapshot(repo, [folder(repo, b"dossiers \xe9t\xe9", [file(repo, latin1, b"1")])])
    after = snapshot(repo, [folder(repo, b"dossiers \xe9t\xe9", [file(repo, latin1, b"2"),
                                                                  file(repo, b"\xff\xfe", b"3")])])

    _, found = run(repo, before, after)

    assert brief(found) == [(CHANGED, b"dossiers \xe9t\xe9/r\xe9sum\xe9.txt"), (ADDED, b"dossiers \xe9t\xe9/\xff\xfe")]


def test_entries_come_in_byte_order_parents_first(repo):
    before = snapshot(repo, [])
    after = snapshot(repo, [file(repo, b"b"), folder(repo, b"a", [file(repo, b"z"), file(repo, b"y")]),
                            file(repo, b"a.txt"), file(repo, b"B")])

    _, found = run(repo, before, after)

    assert [d.path for d in found] == [b"B", b"a", b"a/y", b"a/z", b"a.txt", b"b"]


# ---- what it costs, and what it refuses -------------------------------------------------------


def test_a_deep_tree_walks_without_recursion_reading_two_listings_per_level(repo):
    depth = 3000  # three times Python's recursion limit

    def deep(content: bytes) -> Snapshot:
        level = [file(repo, b"note.txt", content)]
        for _ in range(depth - 1):
            level = [folder(repo, b"d", level)]
        return snapshot(repo, level)

    before, after = deep(b"v1"), deep(b"v2")

    engine, found = run(repo, before, after)

    assert brief(found) == [(CHANGED, b"/".join([b"d"] * (depth - 1) + [b"note.txt"]))]
    assert engine.listings_loaded == 2 * depth


def test_a_crafted_tree_that_explodes_is_refused(repo, monkeypatch):
    """One listing named twice at each of 30 levels: 2**31 entries from 61 stored. The
    limit is lowered so that the refusal comes after a few thousand entries, not a million."""
    monkeypatch.setattr(expansion_module, "FREE_ENTRIES", 1000)
    chunk, _ = repo.store_blob(BLOB_DATA, b"x")
    level = [Node(name=b"note.txt", type=FILE, mode=0o640, uid=0, gid=0, mtime_ns=MTIME, size=1,
                  sha256=hashlib.sha256(b"x").hexdigest(), chunks=[chunk])]
    for _ in range(30):
        level = [folder(repo, b"a", level), folder(repo, b"b", level)]
    crafted = snapshot(repo, level)
    empty = snapshot(repo, [])
    spy = Spy(repo)

    with pytest.raises(IntegrityError, match="refused as crafted or damaged"):
        run(repo, empty, crafted)
    assert len(spy.read) < 10_000


def test_a_folder_whose_entries_changed_is_listed_for_its_mode_not_its_mtime(repo):
    before = snapshot(repo, [folder(repo, b"a", [file(repo, b"x", b"1")], mtime_ns=MTIME),
                             folder(repo, b"b", [file(repo, b"y", b"1")], mtime_ns=MTIME)])
    after = snapshot(repo, [folder(repo, b"a", [file(repo, b"x", b"2")], mtime_ns=MTIME + 10**9),
                            folder(repo, b"b", [file(repo, b"y", b"2")], mtime_ns=MTIME + 10**9, mode=0o700)])

    _engine, found = run(repo, before, after)

    assert brief(found) == [(CHANGED, b"a/x"), (METADATA, b"b"), (CHANGED, b"b/y")]
    assert found[1].fields == ("mode",)


def test_the_diff_needs_a_lock(repo):
    before, after = snapshot(repo, [file(repo, b"a", b"1")]), snapshot(repo, [file(repo, b"a", b"2")])
    with pytest.raises(AssertionError, match="diff needs a lock"):
        list(SnapshotDiff(repo, before, after).run())


# ---- snapshots taken by the backup engine ---------------------------------------------------


def test_two_real_backups(tmp_path, repo):
    source = tmp_path / "src"
    (source / "archives").mkdir(parents=True)
    for i in range(30):
        (source / "archives" / f"cr-{i:02d}.odt").write_bytes(os.urandom(100))
    (source / "lettre.txt").write_text("Cher confrère\n", encoding="utf-8")
    (source / "ordonnance.txt").write_text("paracétamol\n", encoding="utf-8")
    (source / "vieux.txt").write_text("à jeter\n", encoding="utf-8")
    latin1 = os.path.join(os.fsencode(source), b"r\xe9sum\xe9.txt")
    with open(latin1, "wb") as handle:
        handle.write(b"CV\n")
    first = run_locked(BackupEngine(repo, BackupOptions(paths=[str(source)], time=NOW))).snapshot

    (source / "lettre.txt").write_text("Cher confrère, suite à\n", encoding="utf-8")
    os.chmod(source / "ordonnance.txt", 0o600)
    (source / "vieux.txt").unlink()
    with open(latin1, "ab") as handle:
        handle.write(b"2026\n")
    (source / "nouveau").mkdir()
    (source / "nouveau" / "bilan.pdf").write_bytes(b"%PDF" * 10)
    second = run_locked(BackupEngine(repo, BackupOptions(paths=[str(source)], time=NOW + dt.timedelta(days=1))))
    second = second.snapshot

    fresh = Repository.open(repo.storage, b"phrase")
    fresh.load_index()
    spy = Spy(fresh)
    engine, found = run(fresh, first, second)

    inside = os.fsencode(source).lstrip(b"/")
    below = {(d.kind, d.path[len(inside) + 1:]) for d in found if d.path.startswith(inside + b"/")}
    assert below == {(CHANGED, b"lettre.txt"), (METADATA, b"ordonnance.txt"), (REMOVED, b"vieux.txt"),
                     (CHANGED, b"r\xe9sum\xe9.txt"), (ADDED, b"nouveau"), (ADDED, b"nouveau/bilan.pdf")}
    # src's listing and mtime changed, its ancestors' listings too: the mtime of a folder
    # whose entries changed is their consequence, not listed
    assert [d for d in found if not d.path.startswith(inside + b"/")] == []
    assert engine.listings_loaded == len(spy.read)
    archives = next(n for n in _listing_at(fresh, first, inside) if n.name == b"archives")
    assert archives.subtree not in spy.read  # 30 unchanged files: their listing never read
    assert engine.summary.bytes_added == 40


def _listing_at(repo: Repository, taken: Snapshot, path: bytes) -> list[Node]:
    from agent.engine.walk import load_tree

    nodes = load_tree(repo, taken.tree)
    for part in path.split(b"/"):
        subtree = next(n.subtree for n in nodes if n.name == part)
        assert subtree is not None
        nodes = load_tree(repo, subtree)
    return nodes

"""Objects a repository reads whole, planted by someone who can add objects to the storage
(docs/SECURITY.md section 4, "Objects that are not what they claim"): a FIFO, a link, a
junk object larger than any of its kind. Each is named among the damaged objects, never
read, never hangs a command, and the others are still used.

Calls that blocked before the fix run in a thread with a deadline, so a regression fails
the test instead of hanging the suite."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from tests.support.trees import within_deadline

from agent.crypto.kdf import KdfParams
from agent.repo import layout
from agent.repo import repository as repository_module
from agent.repo.pack import BLOB_DATA, BLOB_TREE
from agent.repo.repository import Repository
from agent.repo.snapshot import Snapshot
from agent.storage.local import LocalStorage

PASSPHRASE = b"Cabinet medical - phrase de passe 2026"
FAST = KdfParams(memory_kib=8192, iterations=1)
PLANTED_INDEX = "index/" + "0" * 32
PLANTED_SNAPSHOT = "snapshots/" + "0" * 32


class MeasuredStorage(LocalStorage):
    """A LocalStorage that remembers the largest object any read returned."""

    largest_read = 0

    def read(self, name: str, *, max_size: int | None = None) -> bytes:
        data = super().read(name) if max_size is None else super().read(name, max_size=max_size)
        self.largest_read = max(self.largest_read, len(data))
        return data



def _unblock(path: Path) -> None:
    """Release a reader blocked on FIFO `path` (only the code before the fix blocks)."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:
        pass


@pytest.fixture
def stored(tmp_path) -> tuple[Path, bytes]:
    """A local repository with one blob, indexed, and one snapshot; its root and the blob id."""
    root = tmp_path / "repo"
    repo = Repository.init(LocalStorage(str(root)), PASSPHRASE, cipher="xchacha20-poly1305",
                           compression_level=None, kdf_params=FAST)
    chunk_id, _added = repo.store_blob(BLOB_DATA, b"Compte rendu de consultation" * 100)
    tree_id, _added = repo.store_blob(BLOB_TREE, b'{"nodes":[]}')
    repo.flush()
    repo.save_snapshot(Snapshot(time=dt.datetime(2026, 11, 2, 20, 0, tzinfo=dt.timezone.utc), host="cabinet",
                                user="root", paths=["/srv"], tree=tree_id))
    return root, chunk_id


def _open(root: Path) -> Repository:
    return Repository.open(MeasuredStorage(str(root)), PASSPHRASE)


def test_a_fifo_in_index_is_named_and_the_other_index_files_still_count(stored):
    root, chunk_id = stored
    os.mkfifo(root / PLANTED_INDEX)
    repo = _open(root)
    try:
        within_deadline(repo.load_index)
    finally:
        _unblock(root / PLANTED_INDEX)
    assert [p for p in repo.index_problems if PLANTED_INDEX in p and "is a FIFO" in p], repo.index_problems
    assert len(repo.index_problems) == 1
    assert repo.has_blob(chunk_id)  # the real index file was read: nothing is stored again


def test_a_link_to_dev_zero_in_index_is_named_not_followed(stored):
    root, chunk_id = stored
    os.symlink("/dev/zero", root / PLANTED_INDEX)
    repo = _open(root)
    # Bounded in time and size: before the fix, reading /dev/zero ended in MemoryError.
    within_deadline(repo.load_index)
    assert [p for p in repo.index_problems if PLANTED_INDEX in p and "symbolic link" in p], repo.index_problems
    assert repo.has_blob(chunk_id)


def test_a_junk_index_file_larger_than_any_is_refused_unread(stored):
    """A 1.2 GB junk index file cost every backup and restore 1.2 GB of memory. Here 300 MiB
    (sparse: no disk used), above MAX_INDEX_FILE_SIZE: refused from its size."""
    root, chunk_id = stored
    with open(root / PLANTED_INDEX, "wb") as handle:
        handle.truncate(300 * 1024 * 1024)
    repo = _open(root)
    repo.load_index()
    assert repo.storage.largest_read < 1024 * 1024
    assert [p for p in repo.index_problems if PLANTED_INDEX in p and "314572800 bytes" in p], repo.index_problems
    assert repo.has_blob(chunk_id)
    assert 300 * 1024 * 1024 > repository_module.MAX_INDEX_FILE_SIZE


def test_a_fifo_or_oversize_object_in_snapshots_is_named_and_the_others_listed(stored):
    root, _chunk_id = stored
    os.mkfifo(root / PLANTED_SNAPSHOT)
    big = "snapshots/" + "1" * 32
    with open(root / big, "wb") as handle:
        handle.truncate(64 * 1024 * 1024)  # sparse, above MAX_SNAPSHOT_SIZE
    repo = _open(root)
    try:
        snapshots = within_deadline(repo.snapshots)
    finally:
        _unblock(root / PLANTED_SNAPSHOT)
    assert [s.host for s in snapshots] == ["cabinet"]
    problems = " | ".join(repo.snapshot_problems)
    assert PLANTED_SNAPSHOT[len("snapshots/"):] in problems and "is a FIFO" in problems
    assert big[len("snapshots/"):] in problems and "more than any such object" in problems
    assert repo.storage.largest_read < 1024 * 1024
    assert 64 * 1024 * 1024 > repository_module.MAX_SNAPSHOT_SIZE


def test_prune_never_writes_an_index_file_of_more_blobs_than_the_bound(tmp_path, monkeypatch):
    """The reader's cap (MAX_INDEX_FILE_SIZE) holds for what the writer makes: a complete
    index is split at MAX_INDEX_ENTRIES_PER_FILE blobs as well as at PACKS_PER_INDEX_FILE."""
    storage = LocalStorage(str(tmp_path / "repo"))
    repo = Repository.init(storage, PASSPHRASE, cipher="xchacha20-poly1305", compression_level=None,
                           kdf_params=FAST)
    for number in range(12):
        repo.store_blob(BLOB_DATA, b"blob %d " % number * 50)
        repo.flush()  # one pack per blob
    repo.load_index(reload=True)
    packs = repo.index.packs()
    assert len(packs) == 12
    monkeypatch.setattr(repository_module, "MAX_INDEX_ENTRIES_PER_FILE", 5, raising=False)
    written = repo.write_index_files(packs, supersede=[])
    sizes = [sum(len(entries) for entries in repo.read_index_file(index_id)[0].values()) for index_id in written]
    assert sizes == [5, 5, 2]
    assert max(info.size for info in storage.list(layout.INDEX_PREFIX)) < repository_module.MAX_INDEX_FILE_SIZE


def test_fifos_under_keys_locks_and_reports_are_named_never_waited_for(stored):
    """The other prefixes read whole: a FIFO under keys/ is a refused key file (the real key
    opens, `key list` leaves it out), one under locks/ an unreadable lock (named, and taken
    as held, as any lock that cannot be read), one under reports/ a named unreadable report."""
    from agent.repo import lock
    from agent.reports import store

    root, _chunk_id = stored
    planted = [root / "keys" / ("0" * 32), root / "locks" / ("0" * 32), root / "reports" / ("0" * 32)]
    for path in planted:
        path.parent.mkdir(exist_ok=True)
        os.mkfifo(path)
    try:
        repo = within_deadline(lambda: _open(root))
        assert len(within_deadline(repo.list_keys)) == 1
        locks = within_deadline(lambda: lock.list_locks(repo))
        assert [info.operation for info in locks if "is a FIFO" in info.operation], locks
        _documents, problems = within_deadline(lambda: store.past_tests(repo))
        assert [p for p in problems if "is a FIFO" in p], problems
    finally:
        for path in planted:
            _unblock(path)


def test_an_object_claiming_to_be_a_huge_pack_is_named_unread(stored):
    """check --read-data and repair read packs whole: a sparse 1.5 GiB object planted at a
    pack's name is refused from its size (MemoryMax would otherwise stop the check)."""
    from agent.errors import ForeignObject

    root, _chunk_id = stored
    pack_id = bytes(range(32))
    path = root / layout.pack_name(pack_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.truncate(1536 * 1024 * 1024)
    repo = _open(root)
    with pytest.raises(ForeignObject, match="more than any such object"):
        repo.read_pack(pack_id)
    assert repo.storage.largest_read < 1024 * 1024
    assert 1536 * 1024 * 1024 > repository_module.MAX_PACK_SIZE

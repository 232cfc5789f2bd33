"""Entries of a local repository that backupctl cannot have written (docs/SECURITY.md
section 4, "Objects that are not what they claim"): a FIFO, a symbolic link, a device,
an object larger than asked. Each is refused, named, fast, never followed nor opened in a
way that blocks; listing still shows it and every other object.

Reads that could block on the code before the fix run in a thread with a deadline, so a
regression fails the test instead of hanging the suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.trees import within_deadline

from agent.errors import ForeignObject, IntegrityError, ObjectNotFound
from agent.storage.local import LocalStorage

INDEX = "index/" + "0" * 32
OTHER = "index/" + "1" * 32



@pytest.fixture
def repo(tmp_path: Path) -> tuple[LocalStorage, Path]:
    root = tmp_path / "repo"
    storage = LocalStorage(str(root))
    storage.write(OTHER, b"a real object")
    return storage, root


def _unblock(path: Path) -> None:
    """Release a reader blocked on FIFO `path` (only the code before the fix blocks)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
    except OSError:
        pass


def test_a_fifo_is_refused_at_once_by_read_read_range_and_stat(repo):
    storage, root = repo
    fifo = root / INDEX
    os.mkfifo(fifo)
    try:
        for call in (lambda: storage.read(INDEX), lambda: storage.read(INDEX, max_size=100),
                     lambda: storage.read_range(INDEX, 0, 10), lambda: storage.stat(INDEX)):
            with pytest.raises(ForeignObject, match=rf"object {INDEX} .* is a FIFO"):
                within_deadline(call)
    finally:
        _unblock(fifo)
    assert issubclass(ForeignObject, IntegrityError)  # exit 13: a damaged or planted object
    assert storage.exists(INDEX)  # there is something there; reading it says what


def test_a_symbolic_link_is_never_followed(repo, tmp_path):
    storage, root = repo
    outside = tmp_path / "secret"
    outside.write_bytes(b"a file of the machine, not of the repository")
    os.symlink(outside, root / INDEX)
    with pytest.raises(ForeignObject, match=rf"object {INDEX} .* is a symbolic link"):
        storage.read(INDEX)
    with pytest.raises(ForeignObject, match="symbolic link"):
        storage.read_range(INDEX, 0, 4)
    with pytest.raises(ForeignObject, match="symbolic link"):
        storage.stat(INDEX)
    # A link to /dev/zero (endless bytes: a MemoryError before the fix) is refused the same way.
    os.unlink(root / INDEX)
    os.symlink("/dev/zero", root / INDEX)
    with pytest.raises(ForeignObject, match="symbolic link"):
        within_deadline(lambda: storage.read(INDEX))


def test_a_device_node_is_refused_unopened(repo):
    storage, root = repo
    os.mknod(root / INDEX, 0o600 | 0o020000, os.makedev(1, 5))  # a character device: /dev/zero's numbers
    with pytest.raises(ForeignObject, match="is a device"):
        within_deadline(lambda: storage.read(INDEX))


def test_listing_shows_foreign_entries_beside_the_real_objects(repo, tmp_path):
    storage, root = repo
    os.mkfifo(root / INDEX)
    os.symlink("/dev/zero", root / ("index/" + "2" * 32))
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", root / ("index/" + "3" * 32))  # a link to a folder
    (root / ("index/" + "4" * 32)).mkdir()  # a real folder is not an object
    try:
        names = within_deadline(lambda: sorted(info.name for info in storage.list("index/")))
    finally:
        _unblock(root / INDEX)
    assert names == [INDEX, OTHER, "index/" + "2" * 32, "index/" + "3" * 32]
    assert storage.read(OTHER) == b"a real object"
    with pytest.raises(ObjectNotFound):
        storage.read("index/" + "4" * 32)


def test_an_object_larger_than_asked_is_refused_unread(repo, monkeypatch):
    storage, root = repo
    with open(root / INDEX, "wb") as handle:
        handle.truncate(300 * 1024 * 1024)  # sparse: costs no disk
    read_sizes: list[int] = []
    real_read = os.read

    def counting(fd: int, size: int) -> bytes:
        data = real_read(fd, size)
        read_sizes.append(len(data))
        return data

    monkeypatch.setattr(os, "read", counting)
    with pytest.raises(ForeignObject, match=rf"object {INDEX} .* is 314572800 bytes, more than any such"):
        storage.read(INDEX, max_size=1024 * 1024)
    assert sum(read_sizes) == 0
    assert storage.read(OTHER, max_size=len(b"a real object")) == b"a real object"

"""LocalStorage specifics (permissions, names, temporary files) and open_storage."""

from __future__ import annotations

import os
import stat

import pytest

from agent.errors import ConfigError, ObjectNotFound, StorageError
from agent.storage import open_storage
from agent.storage.local import LocalStorage
from agent.storage.memory import MemoryStorage


@pytest.fixture
def umask_022():
    """Run with the common default umask so the modes below come from the code alone."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_relative_root_is_refused():
    with pytest.raises(StorageError):
        LocalStorage("relative/repo")


def test_files_are_created_0600(tmp_path, umask_022):
    storage = LocalStorage(str(tmp_path))
    storage.write("config", b"c", exclusive=True)
    storage.write("data/ab/abcd", b"pack")
    storage.write("index/0001", b"i")
    storage.write("index/0001", b"j")  # overwrite keeps the mode
    for name in ("config", "data/ab/abcd", "index/0001"):
        assert _mode(tmp_path / name) == 0o600, name


def test_directories_are_created_0700(tmp_path, umask_022):
    storage = LocalStorage(str(tmp_path))
    storage.write("snapshots/1234", b"s")
    storage.write("data/ab/abcd", b"pack")
    for directory in ("snapshots", "data", "data/ab"):
        assert _mode(tmp_path / directory) == 0o700, directory


def test_repository_root_created_by_the_storage_is_0700(tmp_path, umask_022):
    root = tmp_path / "new" / "repo"
    LocalStorage(str(root)).write("data/ab/abcd", b"pack")
    assert _mode(root) == 0o700
    assert _mode(root / "data") == 0o700


@pytest.mark.parametrize("name", ["../x", "data/../../x", "..", "/abs", "/etc/passwd", "data/ab/../../../x"])
def test_names_escaping_the_root_are_refused(tmp_path, name):
    storage = LocalStorage(str(tmp_path / "repo"))
    for call in (
        lambda: storage.write(name, b"evil"),
        lambda: storage.read(name),
        lambda: storage.read_range(name, 0, 1),
        lambda: storage.exists(name),
        lambda: storage.stat(name),
        lambda: storage.delete(name),
        lambda: list(storage.list(name)),
    ):
        with pytest.raises(StorageError):
            call()
    assert not (tmp_path / "x").exists()
    assert not (tmp_path / "evil").exists()


def test_name_with_nul_byte_is_a_storage_error(tmp_path):
    """No backend-specific exception may escape (here: ValueError from the OS layer)."""
    storage = LocalStorage(str(tmp_path))
    with pytest.raises(StorageError):
        storage.read("data/a\x00b")
    with pytest.raises(StorageError):
        storage.write("data/a\x00b", b"x")


def test_list_never_yields_temporary_files(tmp_path):
    storage = LocalStorage(str(tmp_path))
    storage.write("data/ab/abcd", b"pack")
    storage.write("config", b"c")
    (tmp_path / "data" / "ab" / ".tmp-0123456789abcdef").write_bytes(b"half a pack")
    (tmp_path / ".tmp-fedcba9876543210").write_bytes(b"half a config")
    assert sorted(i.name for i in storage.list("")) == ["config", "data/ab/abcd"]
    assert [i.name for i in storage.list("data/")] == ["data/ab/abcd"]


def test_write_leaves_no_temporary_file_behind(tmp_path):
    storage = LocalStorage(str(tmp_path))
    storage.write("data/ab/abcd", b"pack")
    storage.write("data/ab/abcd", b"pack")
    storage.write("config", b"c", exclusive=True)
    with pytest.raises(StorageError):
        storage.write("config", b"d", exclusive=True)
    leftovers = [name for _d, _s, files in os.walk(tmp_path) for name in files if name.startswith(".tmp-")]
    assert leftovers == []


def test_exclusive_write_does_not_touch_existing_file(tmp_path):
    storage = LocalStorage(str(tmp_path))
    storage.write("config", b"original", exclusive=True)
    inode = os.stat(tmp_path / "config").st_ino
    with pytest.raises(StorageError):
        storage.write("config", b"replacement", exclusive=True)
    assert (tmp_path / "config").read_bytes() == b"original"
    assert os.stat(tmp_path / "config").st_ino == inode


def test_truncated_file_read_range_raises(tmp_path):
    storage = LocalStorage(str(tmp_path))
    storage.write("data/ab/abcd", b"0123456789")
    (tmp_path / "data" / "ab" / "abcd").write_bytes(b"01234")
    with pytest.raises(StorageError):
        storage.read_range("data/ab/abcd", 3, 5)


def test_objects_are_plain_files_under_the_root(tmp_path):
    storage = LocalStorage(str(tmp_path))
    storage.write("data/ab/abcd", b"pack")
    assert (tmp_path / "data" / "ab" / "abcd").read_bytes() == b"pack"
    os.unlink(tmp_path / "data" / "ab" / "abcd")
    with pytest.raises(ObjectNotFound):
        storage.read("data/ab/abcd")


def test_list_of_missing_root_is_empty(tmp_path):
    assert list(LocalStorage(str(tmp_path / "nowhere")).list("")) == []


def test_describe_names_the_directory(tmp_path):
    assert str(tmp_path) in LocalStorage(str(tmp_path)).describe()


# ---- open_storage -----------------------------------------------------------------------


def test_open_storage_file_url(tmp_path):
    storage = open_storage(f"file://{tmp_path}/repo")
    assert isinstance(storage, LocalStorage)
    assert storage.root == f"{tmp_path}/repo"


def test_open_storage_file_url_with_localhost_and_escapes(tmp_path):
    storage = open_storage(f"file://localhost{tmp_path}/my%20repo")
    assert isinstance(storage, LocalStorage)
    assert storage.root == f"{tmp_path}/my repo"


def test_open_storage_memory_url():
    assert isinstance(open_storage("memory://"), MemoryStorage)


@pytest.mark.parametrize("url", ["ftp://host/x", "sftp://host/x", "http://x/y", "/mnt/backup",
                                 "mnt/backup", ""])
def test_open_storage_unsupported_scheme_is_a_config_error(url):
    with pytest.raises(ConfigError):
        open_storage(url)


def test_open_storage_file_url_with_a_host_is_a_config_error():
    """file://mnt/backup (two slashes) is a classic typo: 'mnt' would be the host."""
    with pytest.raises(ConfigError):
        open_storage("file://mnt/backup/repo")

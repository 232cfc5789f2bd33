"""A repository in a local directory (an internal disk, a NAS mount, a USB disk).

Durability: write to a temporary name in the destination directory, fsync the file,
rename over the final name, fsync the directory. A crash leaves at worst a
`.tmp-*` file, which `list` ignores and later writes clean up by name.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from typing import Iterator

from agent.errors import ObjectNotFound, StorageError
from agent.storage.base import ObjectInfo

_TMP_PREFIX = ".tmp-"
_FILE_MODE = 0o600
_DIR_MODE = 0o700


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalStorage:
    def __init__(self, root: str) -> None:
        if not os.path.isabs(root):
            raise StorageError(f"local repository path must be absolute: {root!r}")
        self.root = root

    def describe(self) -> str:
        return f"local directory {self.root}"

    def _path(self, name: str) -> str:
        if name.startswith("/") or ".." in name.split("/") or "\x00" in name:
            raise StorageError(f"invalid object name {name!r}")
        return os.path.join(self.root, name)

    def _fail(self, action: str, name: str, exc: OSError) -> StorageError:
        if exc.errno == errno.ENOSPC:
            return StorageError(f"repository disk is full while {action} {name} ({self.root})",
                                hint="free space on the repository disk; no stored data was lost")
        return StorageError(f"cannot {action} {name} in {self.root}: {exc.strerror}")

    def _make_dirs(self, directory: str) -> None:
        """Create missing directories, each 0700 (os.makedirs applies mode to the last only)."""
        missing = []
        while not os.path.isdir(directory):
            missing.append(directory)
            directory = os.path.dirname(directory)
        for path in reversed(missing):
            try:
                os.mkdir(path, _DIR_MODE)
            except FileExistsError:
                pass

    def exists(self, name: str) -> bool:
        return os.path.isfile(self._path(name))

    def read(self, name: str) -> bytes:
        try:
            with open(self._path(name), "rb") as handle:
                return handle.read()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(f"object {name} is missing from {self.root}") from None
        except OSError as exc:
            raise self._fail("read", name, exc) from exc

    def read_range(self, name: str, offset: int, length: int) -> bytes:
        try:
            with open(self._path(name), "rb") as handle:
                data = os.pread(handle.fileno(), length, offset)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(f"object {name} is missing from {self.root}") from None
        except OSError as exc:
            raise self._fail("read", name, exc) from exc
        if len(data) != length:
            raise StorageError(f"object {name} is shorter than expected (truncated?)")
        return data

    def write(self, name: str, data: bytes, *, exclusive: bool = False) -> None:
        final = self._path(name)
        directory = os.path.dirname(final)
        tmp = os.path.join(directory, _TMP_PREFIX + secrets.token_hex(8))
        try:
            self._make_dirs(directory)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE)
            try:
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                os.fsync(fd)
            finally:
                os.close(fd)
            if exclusive:
                # link() fails if the name exists: an atomic "create only".
                try:
                    os.link(tmp, final)
                except FileExistsError:
                    raise StorageError(f"object {name} already exists in {self.root}") from None
                finally:
                    os.unlink(tmp)
            else:
                os.replace(tmp, final)
            _fsync_dir(directory)
        except StorageError:
            raise
        except OSError as exc:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise self._fail("write", name, exc) from exc

    def delete(self, name: str) -> None:
        try:
            os.unlink(self._path(name))
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(f"object {name} is missing from {self.root}") from None
        except OSError as exc:
            raise self._fail("delete", name, exc) from exc

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        # The prefix is a string prefix ("snapshots/12" matches "snapshots/12ab..."), as
        # in S3: walk from the directory part and filter by name.
        if prefix:
            self._path(prefix)  # refuses names that would escape the root
        directory_part = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        base = self._path(directory_part) if directory_part else self.root
        if not os.path.isdir(base):
            return
        for directory, _subdirs, files in os.walk(base):
            for file_name in files:
                if file_name.startswith(_TMP_PREFIX):
                    continue
                full = os.path.join(directory, file_name)
                name = os.path.relpath(full, self.root).replace(os.sep, "/")
                if not name.startswith(prefix):
                    continue
                try:
                    size = os.stat(full).st_size
                except FileNotFoundError:
                    continue
                yield ObjectInfo(name, size)

    def stat(self, name: str) -> ObjectInfo:
        try:
            st = os.stat(self._path(name))
            if not stat.S_ISREG(st.st_mode):
                raise FileNotFoundError(name)
            return ObjectInfo(name, st.st_size)
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound(f"object {name} is missing from {self.root}") from None
        except OSError as exc:
            raise self._fail("stat", name, exc) from exc

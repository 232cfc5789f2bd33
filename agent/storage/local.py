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

from agent import run_as
from agent.errors import ForeignObject, ObjectExists, ObjectNotFound, PermissionDenied, StorageError
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

    def _fail(self, action: str, name: str, exc: OSError) -> StorageError | PermissionDenied:
        if isinstance(exc, PermissionError):  # EACCES, EPERM: another user's file, not damage
            return run_as.denied(os.path.join(self.root, name), action, root=self.root)
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

    def _foreign(self, name: str, mode: int) -> ForeignObject:
        kind = ("a symbolic link" if stat.S_ISLNK(mode) else "a FIFO" if stat.S_ISFIFO(mode)
                else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                else "a socket" if stat.S_ISSOCK(mode) else "a folder" if stat.S_ISDIR(mode)
                else "not a regular file")
        return ForeignObject(f"object {name} in {self.root} is {kind}, not a file backupctl wrote: not read")

    def _open_object(self, name: str) -> tuple[int, os.stat_result]:
        """An open descriptor on the regular file `name`, and its fstat.

        Whatever else sits at the name is refused, not opened: reading a FIFO blocks until
        a writer comes (a planted one hung every backup), a link may lead to /dev/zero or to
        any file of the machine, a device may act on open. lstat refuses those first;
        O_NOFOLLOW and O_NONBLOCK make the open itself unable to follow or block if the
        entry is swapped in between, and fstat checks what was actually opened."""
        path = self._path(name)
        try:
            before = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound(f"object {name} is missing from {self.root}") from None
        except OSError as exc:
            raise self._fail("read", name, exc) from exc
        if not stat.S_ISREG(before.st_mode):
            if stat.S_ISDIR(before.st_mode):
                raise ObjectNotFound(f"object {name} is missing from {self.root}")
            raise self._foreign(name, before.st_mode)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound(f"object {name} is missing from {self.root}") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise self._foreign(name, stat.S_IFLNK) from None
            raise self._fail("read", name, exc) from exc
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode):
            os.close(fd)
            raise self._foreign(name, opened.st_mode)
        return fd, opened

    def exists(self, name: str) -> bool:
        # Any entry but a folder counts: a planted FIFO named `config` must be reported as
        # foreign when read, not make the repository look absent.
        try:
            return not stat.S_ISDIR(os.lstat(self._path(name)).st_mode)
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError as exc:
            raise self._fail("check", name, exc) from exc

    def read(self, name: str, *, max_size: int | None = None) -> bytes:
        fd, opened = self._open_object(name)
        try:
            if max_size is not None and opened.st_size > max_size:
                raise ForeignObject(f"object {name} in {self.root} is {opened.st_size} bytes, more than any "
                                    f"such object ({max_size}): not read")
            chunks = []
            held = 0
            # Bounded even if the file grows while it is read.
            limit = max_size + 1 if max_size is not None else None
            while limit is None or held < limit:
                block = os.read(fd, 1 << 20 if limit is None else min(1 << 20, limit - held))
                if not block:
                    break
                chunks.append(block)
                held += len(block)
        except OSError as exc:
            raise self._fail("read", name, exc) from exc
        finally:
            os.close(fd)
        if max_size is not None and held > max_size:
            raise ForeignObject(f"object {name} in {self.root} grew past {max_size} bytes while read: not read")
        return b"".join(chunks)

    def read_range(self, name: str, offset: int, length: int) -> bytes:
        fd, _opened = self._open_object(name)
        try:
            data = os.pread(fd, length, offset)
        except OSError as exc:
            raise self._fail("read", name, exc) from exc
        finally:
            os.close(fd)
        if len(data) != length:
            raise StorageError(f"object {name} is shorter than expected (truncated?)")
        return data

    def write(self, name: str, data: bytes, *, exclusive: bool = False, random_name: bool = False,
              ephemeral: bool = False) -> None:
        # random_name and ephemeral: a disk has no object lock, and fsync is its verification.
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
                    raise ObjectExists(f"object {name} already exists in {self.root}") from None
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

    def delete(self, name: str, *, ephemeral: bool = False) -> None:
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

        def refused(exc: OSError) -> None:
            # os.walk skips a folder it may not read: its packs would look missing (damage).
            if isinstance(exc, PermissionError):
                raise run_as.denied(exc.filename or base, "list", root=self.root) from None

        for directory, subdirs, files in os.walk(base, onerror=refused):
            # os.walk puts a link to a folder among the folders and never enters it: it is
            # listed as an entry (reading it is refused), not silently left out.
            links = [d for d in subdirs if os.path.islink(os.path.join(directory, d))]
            for file_name in files + links:
                if file_name.startswith(_TMP_PREFIX):
                    continue
                full = os.path.join(directory, file_name)
                name = os.path.relpath(full, self.root).replace(os.sep, "/")
                if not name.startswith(prefix):
                    continue
                try:
                    # lstat: never follows a link nor opens anything (a FIFO stays harmless).
                    size = os.lstat(full).st_size
                except FileNotFoundError:
                    continue
                except PermissionError:
                    raise run_as.denied(full, "list", root=self.root) from None
                yield ObjectInfo(name, size)

    def stat(self, name: str) -> ObjectInfo:
        try:
            st = os.lstat(self._path(name))
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound(f"object {name} is missing from {self.root}") from None
        except OSError as exc:
            raise self._fail("stat", name, exc) from exc
        if stat.S_ISDIR(st.st_mode):
            raise ObjectNotFound(f"object {name} is missing from {self.root}")
        if not stat.S_ISREG(st.st_mode):
            raise self._foreign(name, st.st_mode)
        return ObjectInfo(name, st.st_size)

"""The restore target, written only through directory file descriptors (openat-style).

Restore runs as root and writes into a folder that other users may own in part: a
practice's shared folder, a home directory, /tmp. Whatever is already in the target is
theirs to arrange, so nothing found there is ever followed. Each folder is reached from
the target's root one name at a time with O_DIRECTORY | O_NOFOLLOW relative to its
parent's descriptor (like restic's restorer and every `openat` walker); files are created
with O_CREAT | O_EXCL | O_NOFOLLOW; owner, mode and times are set on descriptors (fchown,
fchmod, utime of an fd) or with follow_symlinks=False. A file created here is reopened
only when its device and inode are still the ones recorded at creation, so a name
swapped for a hard link, a symbolic link or another file between two steps is refused
rather than written.

What is in the way:
- a symbolic link, file, FIFO or device where the snapshot has a folder: refused
  (RestoreTargetError, exit 15) with the path relative to the target, or, with
  --overwrite, removed by name (the link itself, never what it points to) and replaced;
- any entry where the snapshot has a file or link: removed by name with --overwrite
  (a non-empty folder is refused: restore never deletes a tree).

The root itself is reached the same way, from "/" one name at a time (open_target): a
symbolic link on the way is followed only when no other user controls it (owned by root
or by us, in a folder only root or we can write to; in a sticky folder such as /tmp, only
a link of ours or of the folder's owner, as the kernel's protected_symlinks). A link a
local user planted at `--target /tmp/shared/restore` (-> /) is refused rather than
followed by root. Folders missing on the way are made 0700 and stay so: until the
snapshot's own modes are applied below it, nobody else may look in. Folder descriptors are
kept in a small LRU cache (a million files restore in a few hundred folders' worth of
descriptors, far below the fd limit).
"""

from __future__ import annotations

import errno
import os
import pwd
import stat
import threading
from collections import OrderedDict

from agent.errors import RestoreTargetError, UsageError

# Folder descriptors kept open: the plan is depth-first, so a few dozen cover the path
# being written and its neighbours; more would only cost descriptors.
CACHED_DIRS = 64
# O_NONBLOCK: opening a FIFO planted in the target must never block the restore.
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_FILE_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
SPECIAL_BITS = stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX
_OVERWRITE_HINT = ("restore into an empty folder, or --overwrite to replace it (a link is removed itself, "
                   "never what it points to)")

_CHANGED = ("the restore target changed while restoring",
            "another program or user is writing there: restore into a folder only you can write")
_NOT_WRITABLE = ("the restore target is not writable",
                 "check the owner and permissions of that folder, or choose another --target")
# What went wrong, and what to do about it, per errno: a race is not a full disk.
_TARGET_ERRNOS = {errno.ENOSPC: ("the restore target is full", "free some space or choose another --target"),
                  errno.EDQUOT: ("the disk quota of the restore target is exhausted",
                                 "free some space or choose another --target"),
                  errno.EROFS: ("the restore target is read-only",
                                "remount it read-write or choose another --target"),
                  errno.EACCES: _NOT_WRITABLE, errno.EPERM: _NOT_WRITABLE,
                  errno.EEXIST: _CHANGED, errno.ENOENT: _CHANGED, errno.ELOOP: _CHANGED, errno.ENOTDIR: _CHANGED}


def target_error(exc: OSError, where: str) -> RestoreTargetError:
    # An error without an errno (None, read as 0) is none of the known ones.
    reason, hint = _TARGET_ERRNOS.get(exc.errno or 0, (f"cannot write to the restore target ({exc.strerror})",
                                                       "check the restore target, or choose another --target"))
    return RestoreTargetError(f"{reason}: {where}", hint=hint)


def permissions(mode: int, *, keep_special_bits: bool) -> int:
    """The mode bits to restore: setuid, setgid and sticky only when asked for (a system
    restore wants them; a practice's documents never have them, and a crafted snapshot
    must not hand out a setuid root program)."""
    return stat.S_IMODE(mode) & (0o7777 if keep_special_bits else 0o777)


def _kind(st: os.stat_result) -> str:
    mode = st.st_mode
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISREG(mode):
        return "a file"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a device"


def not_a_folder(rel: bytes, st: os.stat_result) -> RestoreTargetError:
    return RestoreTargetError(f"{_show(rel)} is {_kind(st)} in the restore target where the snapshot has a folder; "
                              f"nothing was written through it", hint=_OVERWRITE_HINT)


def _show(rel: bytes) -> str:
    return os.fsdecode(rel)


# ---- reaching the target from "/" ---------------------------------------------------------

MAX_LINKS = 40  # as the kernel's path walk: a loop of links ends here
_LINK_HINT = "give a --target path without a link another user controls"


def _who(uid: int) -> str:
    try:
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return f"uid {uid}"


def _untrusted(folder: os.stat_result, link: os.stat_result) -> str | None:
    """Why a link must not be followed (another user controls it), or None.

    Trusted: owned by root or by us, in a folder owned by root or by us that nobody else
    can write to, so nobody else can swap it between the look and the follow. In a sticky
    folder others may write to (/tmp), nobody else can remove or rename our entries, and
    the kernel's protected_symlinks rule applies: the link is ours or the folder owner's."""
    me = os.geteuid()
    if link.st_uid not in (0, me):
        return f"a symbolic link owned by {_who(link.st_uid)}"
    if folder.st_uid not in (0, me):
        return f"a symbolic link in a folder owned by {_who(folder.st_uid)}"
    if folder.st_mode & 0o022:
        if not folder.st_mode & stat.S_ISVTX:
            return f"a symbolic link in a folder other users can write to (mode {stat.S_IMODE(folder.st_mode):04o})"
        if link.st_uid not in (me, folder.st_uid):
            return f"a symbolic link owned by {_who(link.st_uid)} in a sticky folder others can write to"
    return None


def _join(walked: bytes, name: bytes) -> str:
    return os.fsdecode(walked.rstrip(b"/") + b"/" + name)


def _step(fd: int, name: bytes, walked: bytes, *, create: bool) -> int | bytes:
    """The folder `name` below `fd`, opened without following (an fd), or, for a link we
    may follow, its content (bytes). Made 0700 if missing and `create`."""
    where = _join(walked, name)
    for _attempt in range(3):  # a name made or removed meanwhile is looked at again, a few times
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=fd)
        except FileNotFoundError:
            if not create:
                raise RestoreTargetError(f"{where} does not exist", hint="give an existing folder") from None
            try:
                os.mkdir(name, 0o700, dir_fd=fd)
            except FileExistsError:
                continue
            except OSError as exc:
                raise target_error(exc, where) from None
            try:
                made = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError:
                continue  # swapped for something else at once: looked at again, never followed
            if os.fstat(made).st_uid != os.geteuid():  # another user's folder swapped in for ours
                os.close(made)
                raise Replaced(os.fsencode(where)) from None
            return made
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise target_error(exc, where) from None
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if not stat.S_ISLNK(st.st_mode):
                raise RestoreTargetError(f"{where} is {_kind(st)}, not a folder",
                                         hint="choose a folder for --target") from None
            why = _untrusted(os.fstat(fd), st)
            if why is not None:
                raise RestoreTargetError(f"{where} is {why}; it was not followed", hint=_LINK_HINT) from None
            return os.readlink(name, dir_fd=fd)
    raise RestoreTargetError(f"{where} keeps changing while it is opened", hint=_CHANGED[1])


def open_target(path: bytes, *, create: bool) -> int:
    """A descriptor of folder `path`, reached from "/" one name at a time, never through a
    link another user controls (see _untrusted); missing folders are made 0700 when
    `create`. RestoreTargetError names the first name refused and who owns it."""
    fd = os.open(b"/", _DIR_FLAGS)
    walked = b"/"  # the real path of `fd`, for messages
    pending = [part for part in os.fsencode(path).split(b"/") if part][::-1]  # next name last
    links = 0
    try:
        while pending:
            name = pending.pop()
            if name == b".":
                continue
            if name == b"..":  # the real parent of where we are (a link's ".." means that too)
                step: int | bytes = os.open(b"..", _DIR_FLAGS, dir_fd=fd)
                walked = os.path.dirname(walked.rstrip(b"/")) or b"/"
            else:
                step = _step(fd, name, walked, create=create)
            if isinstance(step, bytes):  # a link we may follow: its content replaces its name
                links += 1
                if links > MAX_LINKS:
                    raise RestoreTargetError(f"{_join(walked, name)}: too many levels of symbolic links",
                                             hint="choose a folder for --target")
                pending.extend(part for part in reversed(step.split(b"/")) if part)
                if step.startswith(b"/"):
                    os.close(fd)
                    fd = os.open(b"/", _DIR_FLAGS)
                    walked = b"/"
                continue
            os.close(fd)
            fd = step
            if name != b"..":
                walked = walked.rstrip(b"/") + b"/" + name
        return fd
    except BaseException:
        os.close(fd)
        raise


def create_private_file(path: bytes) -> int:
    """A new file at `path`, mode 0600 whatever the umask (an export of patient data is the
    operator's alone), its folder reached by open_target (never created), the file made
    O_CREAT | O_EXCL | O_NOFOLLOW relative to it. FileExistsError if anything, a link
    included, is at that name: nothing is ever written through it."""
    path = os.fsencode(path)
    head, name = os.path.split(os.path.abspath(path))
    if not name or path.endswith(b"/"):
        raise UsageError(f"{_show(path)} is a folder, not a file name", hint="give a new file name")
    parent = open_target(head, create=False)
    try:
        return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                       dir_fd=parent)
    except FileExistsError:
        raise
    except OSError as exc:
        raise target_error(exc, _show(path)) from None
    finally:
        os.close(parent)


class Replaced(RestoreTargetError):
    """An entry this restore created is no longer the one at its name: someone swapped it
    (for a link, another file) meanwhile. Nothing is written through it."""

    def __init__(self, rel: bytes) -> None:
        super().__init__(f"{_show(rel)} was replaced in the restore target while it was being restored; "
                         f"nothing was written through it",
                         hint="someone else writes in that folder; restore into a folder only you can write")


class TargetTree:
    """Every write of a restore below `root`, relative to folder descriptors.

    Thread-safe: the descriptor cache is used under one lock, and each call returns or
    closes its own descriptors before releasing it."""

    def __init__(self, root: bytes, *, overwrite: bool, expect: tuple[int, int] | None = None,
                 require_empty: bool = False) -> None:
        self.root = root
        self.overwrite = overwrite
        self._lock = threading.Lock()
        self._cache: OrderedDict[bytes, tuple[int, int]] = OrderedDict()  # rel -> (fd, st_dev)
        where = _show(root)
        # Reached from "/" without following a link another user controls (a link planted
        # at the target's name must not make root restore over / or into their choice).
        self._root_fd = open_target(root, create=True)
        st = os.fstat(self._root_fd)
        self._root_dev = st.st_dev
        if expect is not None and (st.st_dev, st.st_ino) != expect:
            os.close(self._root_fd)
            raise RestoreTargetError(f"the restore target {where} was replaced before the restore began",
                                     hint="someone else writes in the parent folder; choose a private one")
        # Empty when opened: a restore has no clash to look for (one that appears later is
        # refused at creation, O_EXCL).
        self.was_empty = not os.listdir(self._root_fd)
        if require_empty and not self.was_empty:
            os.close(self._root_fd)
            raise UsageError(f"--target {where} is not empty", hint="export into a new or empty folder")

    def close(self) -> None:
        with self._lock:
            for fd, _dev in self._cache.values():
                os.close(fd)
            self._cache.clear()
            os.close(self._root_fd)

    def __enter__(self) -> "TargetTree":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- walking -----------------------------------------------------------------------

    def _dir(self, rel: bytes, *, create: bool) -> tuple[int, int]:
        """(fd, st_dev) of folder `rel` (b"" is the root); the fd belongs to the cache and is
        valid until the next call (the caller holds the lock). Missing folders are made
        (mode 0700 until the end of the restore) when `create`, else FileNotFoundError."""
        if not rel:
            return self._root_fd, self._root_dev
        found: tuple[int, int] | None = self._cache.get(rel)
        if found is not None:  # most calls: the folder of the previous file
            self._cache.move_to_end(rel)
            return found
        parts = rel.split(b"/")
        depth = len(parts)
        found = None
        while depth > 0:
            found = self._cache.get(b"/".join(parts[:depth]))
            if found is not None:
                self._cache.move_to_end(b"/".join(parts[:depth]))
                break
            depth -= 1
        fd, dev = found if found is not None else (self._root_fd, self._root_dev)
        for index in range(depth, len(parts)):
            path = b"/".join(parts[: index + 1])
            fd = self._open_dir(fd, parts[index], path, create=create)
            dev = os.fstat(fd).st_dev
            self._cache[path] = (fd, dev)
            while len(self._cache) > CACHED_DIRS:
                old_fd, _ = self._cache.popitem(last=False)[1]
                os.close(old_fd)
        return fd, dev

    def _open_dir(self, parent: int, name: bytes, rel: bytes, *, create: bool) -> int:
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                raise
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise target_error(exc, _show(rel)) from None
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
            if not (create and self.overwrite):
                raise not_a_folder(rel, st) from None
            os.unlink(name, dir_fd=parent)  # the link (or file) itself, never what it points to
        try:
            os.mkdir(name, 0o700, dir_fd=parent)
            return os.open(name, _DIR_FLAGS, dir_fd=parent)
        except OSError as exc:  # e.g. replaced again in between: refused, never followed
            raise target_error(exc, _show(rel)) from None

    def _parent(self, rel: bytes, *, create: bool) -> tuple[int, int, bytes]:
        head, _, name = rel.rpartition(b"/")
        fd, dev = self._dir(head, create=create)
        return fd, dev, name

    # ---- looking ------------------------------------------------------------------------

    def lstat(self, rel: bytes) -> os.stat_result | None:
        """What is at `rel` (not followed), None if nothing; a parent that is not a real
        folder raises RestoreTargetError (it would be replaced only with --overwrite)."""
        with self._lock:
            try:
                parent, _dev, name = self._parent(rel, create=False)
                return os.stat(name, dir_fd=parent, follow_symlinks=False)
            except FileNotFoundError:
                return None
            except OSError as exc:
                raise target_error(exc, _show(rel)) from None

    # ---- folders ------------------------------------------------------------------------

    def make_dir(self, rel: bytes) -> int:
        """Make `rel` a real folder (reusing one that is there); returns its inode."""
        with self._lock:
            fd, _dev = self._dir(rel, create=True)
            return os.fstat(fd).st_ino

    def set_dir_metadata(self, rel: bytes, ino: int, *, uid: int | None, gid: int, mode: int,
                         mtime_ns: int) -> None:
        with self._lock:
            fd, _dev = self._dir(rel, create=False)
            if os.fstat(fd).st_ino != ino:
                raise Replaced(rel)
            if uid is not None:
                os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)
            os.utime(fd, ns=(mtime_ns, mtime_ns))

    # ---- files --------------------------------------------------------------------------

    def _clear(self, parent: int, name: bytes, rel: bytes) -> None:
        """--overwrite: remove what is at `name` by name, never following it."""
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            try:
                os.rmdir(name, dir_fd=parent)
            except OSError as exc:
                if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                    raise RestoreTargetError(f"{_show(rel)} is a folder that is not empty in the restore target "
                                             f"where the snapshot has a file",
                                             hint="move that folder away, or restore into an empty folder") from None
                raise
        else:
            os.unlink(name, dir_fd=parent)

    def create_file(self, rel: bytes, size: int) -> int:
        """A new, empty file of `size` bytes (holes), mode 0600; returns its inode."""
        with self._lock:
            parent, _dev, name = self._parent(rel, create=True)
            if self.overwrite:
                self._clear(parent, name, rel)
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _FILE_FLAGS, 0o600, dir_fd=parent)
        try:
            os.ftruncate(fd, size)  # the right length from the start; holes until written
            return os.fstat(fd).st_ino
        finally:
            os.close(fd)

    def create_open(self, rel: bytes) -> int:
        """A new, empty file, mode 0600, left open for reading and writing (its descriptor).
        For a file written in one piece, so it is never reopened by name: its inode is
        asked (fstat) only by a caller that needs it."""
        with self._lock:
            parent, _dev, name = self._parent(rel, create=True)
            if self.overwrite:
                self._clear(parent, name, rel)
            return os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL | _FILE_FLAGS, 0o600, dir_fd=parent)

    def open_created(self, rel: bytes, ino: int, flags: int) -> int:
        """Reopen a file this restore created; Replaced if its name now holds anything else."""
        with self._lock:
            parent, dev, name = self._parent(rel, create=False)
            fd = os.open(name, flags | _FILE_FLAGS, dir_fd=parent)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_ino != ino or st.st_dev != dev:
            os.close(fd)
            raise Replaced(rel)
        return fd

    def open_existing(self, rel: bytes) -> int | None:
        """A regular file already at `rel` (for --resume), opened without following a link;
        None if anything else is there (it is then replaced, never trusted)."""
        with self._lock:
            try:
                parent, _dev, name = self._parent(rel, create=True)
                fd = os.open(name, os.O_RDONLY | _FILE_FLAGS, dir_fd=parent)
            except OSError:
                return None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            return None
        return fd

    def remove_created(self, rel: bytes, ino: int) -> None:
        """Remove a file this restore created (a failed one), only if it is still ours."""
        with self._lock:
            try:
                parent, _dev, name = self._parent(rel, create=False)
                if os.stat(name, dir_fd=parent, follow_symlinks=False).st_ino == ino:
                    os.unlink(name, dir_fd=parent)
            except OSError:
                pass

    def inode(self, rel: bytes) -> int | None:
        st = self.lstat(rel)
        return st.st_ino if st is not None and stat.S_ISREG(st.st_mode) else None

    # ---- links --------------------------------------------------------------------------

    def symlink(self, rel: bytes, link_target: bytes, *, uid: int | None, gid: int, mtime_ns: int) -> None:
        """A symbolic link, owned and dated without ever being followed.

        In a folder that someone else can write to, the link could be swapped for another
        entry between its creation and lchown: there it is made, owned and dated in a
        private folder of ours first, then hard-linked into place (linkat never follows
        and never replaces)."""
        with self._lock:
            parent, _dev, name = self._parent(rel, create=True)
            if self.overwrite:
                self._clear(parent, name, rel)
            pst = os.fstat(parent)
            private = pst.st_uid == os.geteuid() and not pst.st_mode & 0o022
            if private:
                os.symlink(link_target, name, dir_fd=parent)
                _own_link(name, parent, uid=uid, gid=gid, mtime_ns=mtime_ns)
                return
            stage_name = b".backupctl-link-" + os.urandom(8).hex().encode()
            os.mkdir(stage_name, 0o700, dir_fd=parent)
            try:
                stage = os.open(stage_name, _DIR_FLAGS, dir_fd=parent)
                try:
                    if (os.fstat(stage).st_uid, os.fstat(stage).st_mode & 0o077) != (os.geteuid(), 0):
                        raise Replaced(rel)
                    os.symlink(link_target, b"l", dir_fd=stage)
                    try:
                        _own_link(b"l", stage, uid=uid, gid=gid, mtime_ns=mtime_ns)
                        os.link(b"l", name, src_dir_fd=stage, dst_dir_fd=parent, follow_symlinks=False)
                    finally:
                        os.unlink(b"l", dir_fd=stage)  # so that the private folder can go
                finally:
                    os.close(stage)
            finally:
                try:
                    os.rmdir(stage_name, dir_fd=parent)
                except OSError:
                    pass

    def hardlink(self, source: bytes, source_ino: int, rel: bytes) -> None:
        """`rel` as a second name of the file this restore created at `source`."""
        with self._lock:
            src_parent, _dev, src_name = self._parent(source, create=False)
            src_parent = os.dup(src_parent)  # the next walk may evict it from the cache
            try:
                if os.stat(src_name, dir_fd=src_parent, follow_symlinks=False).st_ino != source_ino:
                    raise Replaced(source)
                parent, _dev, name = self._parent(rel, create=True)
                if self.overwrite:
                    self._clear(parent, name, rel)
                os.link(src_name, name, src_dir_fd=src_parent, dst_dir_fd=parent, follow_symlinks=False)
                if os.stat(name, dir_fd=parent, follow_symlinks=False).st_ino != source_ino:
                    raise Replaced(rel)  # swapped in between: the link names something else
            finally:
                os.close(src_parent)


def _own_link(name: bytes, parent: int, *, uid: int | None, gid: int, mtime_ns: int) -> None:
    if uid is not None:
        os.chown(name, uid, gid, dir_fd=parent, follow_symlinks=False)
    if os.utime in os.supports_follow_symlinks:
        os.utime(name, ns=(mtime_ns, mtime_ns), dir_fd=parent, follow_symlinks=False)

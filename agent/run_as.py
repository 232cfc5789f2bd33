"""Who runs backupctl, and who owns the files it needs.

On an installed server the service user (`backupctl`) owns the state directory, the
local repositories and the disks, all private (0700 folders, 0600 files). Two things
follow, and both live here, the only module that asks who owns what:

* A permission error is never damage. `denied()` turns a refused read or write into a
  `PermissionDenied` (exit 22) that names the path that refused, its owner, group and
  mode, and the user running the command. The storage, the state files and the
  credentials call it; the engines let it through, so `check` and `repair` never count
  a pack the command may not read as damaged (repair would have deleted it).

* Root must not write the service's files. Run as root where the configured state
  directory belongs to another, non-root user, a command that may write in the state
  directory, a file:// repository or a disk would leave root-owned 0600 files the
  service can no longer read. `switch_or_refuse()` runs the command again through the
  installer's service wrapper (SERVICE_WRAPPER: it runs commands as the service user
  with its credentials), or refuses with the exact command to type.

Paths named in messages are repository objects, state files, folders of the state
directory or of a repository, and credentials files: never a source file, whose name
can be patient data (source read errors stay warnings of the backup).
"""

from __future__ import annotations

import grp
import os
import pwd
import shlex
import shutil
import stat
import sys
from typing import NoReturn, Sequence

from agent.errors import PermissionDenied

# The installer's wrapper, and the line that tells it apart from anything else there
# (another program, a link to the real one, which would loop). `install-service` writes
# it (agent/service_install/wrapper.py); both sides agree on the marker only.
SERVICE_WRAPPER = "/usr/local/bin/backupctl"
WRAPPER_MARKER = "# backupctl service wrapper"
# Set before running the wrapper: if the program comes back as root anyway (a wrapper
# that did not switch users), it refuses instead of running the wrapper again.
SWITCHED_ENV = "BACKUPCTL_SWITCHED_FROM_ROOT"
_WRAPPER_READ_LIMIT = 64 * 1024  # the marker is near the top; a huge file is not ours

COMMANDS_BY_HAND = 'docs/INSTALL.md, "Commands by hand on the server"'


# ---- names ---------------------------------------------------------------------------------


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def current_user() -> str:
    return user_name(os.geteuid())


def _sudo_user(uid: int) -> str:
    """How sudo names the user: by name, or "#uid" for a uid without one."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"#{uid}"


# ---- permission errors ---------------------------------------------------------------------


def _may(path: str, mode: int) -> bool:
    # The effective ids, as the kernel checks them for open() (a setuid-free process has
    # the same real ids, but say what is meant).
    return os.access(path, mode, effective_ids=os.access in os.supports_effective_ids)


def refusing_entry(path: str, *, write: bool) -> str | None:
    """The entry that refuses this user access to `path`: the first folder on the way it
    may not enter; else, for a write, the folder it may not write into; else the file
    itself when it may not read (and, for a write, write) it. None when nothing refuses."""
    path = os.path.abspath(path)
    folders = []  # from the file's folder up to /
    folder = os.path.dirname(path)
    while True:
        folders.append(folder)
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    for folder in reversed(folders):
        if not os.path.isdir(folder):
            break
        if not _may(folder, os.X_OK):
            return folder
    if write:
        existing = next((f for f in folders if os.path.isdir(f)), None)
        if existing is not None and not _may(existing, os.W_OK | os.X_OK) and not _read_only(existing):
            return existing
    if os.path.lexists(path) and not _may(path, os.R_OK) or \
            write and os.path.lexists(path) and not _may(path, os.W_OK) and not _read_only(path):
        return path
    return None


def _read_only(path: str) -> bool:
    """On a read-only file system nobody may write: not a matter of owners (StorageError says it)."""
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def describe_owner(path: str) -> str:
    """ "owned by root:root, mode 0600" (or why it cannot be told)."""
    try:
        st = os.lstat(path)
    except OSError as exc:
        return f"which cannot be examined ({exc.strerror})"
    return f"owned by {user_name(st.st_uid)}:{group_name(st.st_gid)}, mode {stat.S_IMODE(st.st_mode):04o}"


def owner_name(path: str) -> str | None:
    try:
        return user_name(os.stat(path).st_uid)
    except OSError:
        return None


def _owned_top(folder: str) -> str | None:
    """The highest private (0700) folder at or above `folder` with the same owner: the
    state directory for one of its files (/var/lib/backupctl for .../ledger/x.json, whose
    folders backupctl makes 0700), never a shared folder above it such as a home."""
    try:
        owner = os.stat(folder).st_uid
    except OSError:
        return None
    while True:
        parent = os.path.dirname(folder)
        try:
            found = os.stat(parent)
        except OSError:
            return folder
        if parent == folder or found.st_uid != owner or found.st_mode & 0o077:
            return folder
        folder = parent


def denied(path: str, action: str, *, root: str | None = None, what: str = "",
           hint: str | None = None) -> PermissionDenied:
    """The one-line error for a refused `action` ("read", "write", "delete", ...) on
    `path`, a file of the repository or state directory `root` (or a credentials file,
    `what` saying which). Names the entry that refused, its owner and mode, who runs the
    command, and what to do: run commands as the owner of `root`, or give the files back."""
    culprit = refusing_entry(path, write=action != "read") or os.path.abspath(path)
    me = current_user()
    where = f"{path}: {culprit} is" if culprit != os.path.abspath(path) else f"{path}:"
    message = f"cannot {action} {what + ' ' if what else ''}{where} {describe_owner(culprit)}, " \
              f"and this command runs as {me}"
    if hint is None:
        root = root or _owned_top(os.path.dirname(os.path.abspath(path)))
        owner = owner_name(root) if root else None
        if owner is not None and owner != me:
            hint = f"run commands as {owner} ({COMMANDS_BY_HAND})"
        elif root is not None:
            hint = (f"run commands as {me} ({COMMANDS_BY_HAND}), or give the files back: "
                    f"chown -R {shlex.quote(me)}: {shlex.quote(root)}")
        else:
            hint = f"check the owner and mode of {culprit}"
    return PermissionDenied(message, hint=hint)


def credentials_denied(path: str, what: str) -> PermissionDenied:
    """A credentials file (S3 keys, SMTP password, passphrase) that exists but that this
    user may not read. Checked before it is handed to a library: boto3 and configparser
    skip an unreadable file silently and then complain that the keys are missing."""
    me = current_user()
    return denied(path, "read", what=what,
                  hint=f"give it to the user that runs backupctl, keeping it private: chown {shlex.quote(me)}: "
                       f"{shlex.quote(path)} && chmod 600 {shlex.quote(path)}, or run commands as the "
                       f"service user ({COMMANDS_BY_HAND})")


def access_problem(path: str, *, write: bool) -> PermissionDenied | None:
    """A PermissionDenied when this user may not use `path` (read it, or read and write
    it and create files beside it), for libraries that do not say why they failed (SQLite)."""
    if refusing_entry(path, write=write) is None:
        return None
    return denied(path, "write" if write else "read")


def check_readable(path: str, what: str) -> None:
    """Raise `credentials_denied` when `path` exists but cannot be opened for reading."""
    try:
        with open(path, "rb"):
            pass
    except PermissionError:
        raise credentials_denied(path, what) from None
    except OSError:
        pass  # missing or otherwise unusable: the reader says so in its own words


# ---- root on an installed server -----------------------------------------------------------


def service_owner(state_dir: str) -> int | None:
    """The uid of the service user when this process runs as root and `state_dir`
    belongs to another, non-root user; else None (nothing to protect)."""
    if os.geteuid() != 0:
        return None
    try:
        owner = os.stat(state_dir).st_uid
    except OSError:
        return None  # not installed yet: the command creates what it needs, root-owned
    return owner if owner != 0 else None


def is_service_wrapper(path: str) -> bool:
    """Is `path` the installer's wrapper? A regular file (not a link: a link to the real
    program would loop), owned by root and writable by root only (it is about to be run
    as root), executable, holding the marker line."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o022 or not st.st_mode & 0o100:
            return False
        head = os.read(fd, _WRAPPER_READ_LIMIT)
    except OSError:
        return False
    finally:
        os.close(fd)
    return any(line.strip() == WRAPPER_MARKER.encode() for line in head.splitlines())


def program(argv0: str) -> list[str]:
    """The program as a command to type again: `python -m agent` stays one, a console
    script is named by its resolved path."""
    if os.path.basename(argv0) == "__main__.py":
        return [sys.executable, "-m", "agent"]
    if os.sep not in argv0:
        argv0 = shutil.which(argv0) or argv0
    return [os.path.realpath(argv0)]


def arguments(argv: Sequence[str], *, config_given: bool) -> list[str]:
    """The same arguments, with --config made explicit when it came from $BACKUPCTL_CONFIG
    (sudo and systemd-run do not pass the environment on)."""
    args = list(argv[1:])
    from_env = os.environ.get("BACKUPCTL_CONFIG")
    if not config_given and from_env:
        args = ["--config", os.path.abspath(from_env), *args]
    return args


def switch_or_refuse(argv: Sequence[str], *, state_dir: str, config_given: bool, note: str = "") -> None:
    """Return when this process may go on; else run the service wrapper in its place
    (same arguments), or raise PermissionDenied with the command to use. `note` adds
    what the command writes outside the state directory (a restore target)."""
    owner = service_owner(state_dir)
    if owner is None:
        return
    args = arguments(argv, config_given=config_given)
    came_back = os.environ.get(SWITCHED_ENV) == "1"
    if not came_back and is_service_wrapper(SERVICE_WRAPPER):
        _exec_wrapper(args)
    name = user_name(owner)
    command = shlex.join(["sudo", "-u", _sudo_user(owner), *program(argv[0]), *args])
    why = (f"run as root, this command would write into {state_dir} (owned by {name}) files the service "
           f"could not read back")
    if came_back:
        why += f"; {SERVICE_WRAPPER} ran it as root again"
    raise PermissionDenied(why, hint=f"run it as {name}{note.format(user=name)}: {command}")


def _exec_wrapper(args: list[str]) -> NoReturn:
    os.environ[SWITCHED_ENV] = "1"
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(SERVICE_WRAPPER, [SERVICE_WRAPPER, *args])

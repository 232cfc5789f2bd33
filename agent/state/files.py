"""Small private JSON files in the state directory (records, schedules, caches).

One way to read and write them: written whole to a temporary file (mode 0600) and
renamed into place, so a crash leaves the old or the new version, never half of one;
the temporary file has an unpredictable name made with O_CREAT | O_EXCL | O_NOFOLLOW
(`tempfile.mkstemp`) in the destination's own folder, so a local user who can write in
that folder (a shared folder chosen for the recovery sheet) cannot have the secret
written into a file or symbolic link they prepared;
read tolerantly, because each is a summary that a later run rebuilds, so a missing or
damaged file reads as empty rather than stopping a backup.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from typing import Any

from agent import run_as
from agent.errors import ConfigError, StateDirError

# A JSON document of the state directory, as read from disk: its shape is what some
# earlier version wrote (or a damaged file), so readers check each value they use.
JsonDoc = dict[str, Any]


def load_json(path: str) -> JsonDoc:
    """The document, or {} when it is missing or damaged; a file this user may not read
    is PermissionDenied: read as empty, it would silently drop what it guards (the
    ledger's record of snapshots, the last backups)."""
    try:
        with open(path, encoding="utf-8") as handle:
            doc = json.load(handle)
        return doc if isinstance(doc, dict) else {}
    except PermissionError:
        raise run_as.denied(path, "read") from None
    except (OSError, ValueError):
        return {}


def write_private(path: str, data: bytes, *, mode: int = 0o600) -> None:
    """Write `path` whole, mode 0600 (or `mode`), owned by the writer, atomically; raises OSError.

    Never opens a predictable name: the data goes into a fresh file from mkstemp in the
    same folder (same file system, so the rename is atomic), which is fsynced and renamed
    over `path`. Renaming replaces whatever `path` was (a symbolic link included) without
    following it. The folder is fsynced so the rename itself survives a crash."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        os.fchmod(fd, mode)  # mkstemp creates 0600 whatever the umask; a public file asks for more
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        _unlink_quietly(tmp)
        raise
    os.close(fd)
    try:
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    _fsync_dir(directory)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems (network mounts) refuse fsync on a folder; the data is synced
    finally:
        os.close(fd)


def save_bytes(path: str, data: bytes) -> None:
    try:
        write_private(path, data)
    except PermissionError:
        raise run_as.denied(path, "write") from None
    except OSError as exc:
        raise StateDirError(f"{path} cannot be written ({exc.strerror})") from None


def save_json(path: str, doc: JsonDoc) -> None:
    save_bytes(path, json.dumps(doc, indent=1).encode("utf-8"))


def read_private_file(path: str, *, where: str = "") -> bytes:
    """A secret (passphrase, password) from a file only its owner can read, without its
    line end. `where` prefixes messages with what the file is for."""
    try:
        st = os.stat(path)
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(f"{where}{path} is readable by others (mode {stat.S_IMODE(st.st_mode):04o})",
                              hint=f"run: chmod 600 {path}")
        with open(path, "rb") as handle:
            secret = handle.read().rstrip(b"\r\n")
    except FileNotFoundError:
        raise ConfigError(f"{where}{path} does not exist") from None
    except PermissionError:
        raise run_as.credentials_denied(path, where.strip()) from None
    if not secret:
        raise ConfigError(f"{where}{path} is empty")
    return secret

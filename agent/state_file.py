"""Small private JSON files in the state directory (records, schedules, caches).

One way to read and write them: written whole to a temporary file (mode 0600) and
renamed into place, so a crash leaves the old or the new version, never half of one;
read tolerantly, because each is a summary that a later run rebuilds, so a missing or
damaged file reads as empty rather than stopping a backup.
"""

from __future__ import annotations

import json
import os
import stat

from agent.errors import ConfigError, StateDirError


def load_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            doc = json.load(handle)
        return doc if isinstance(doc, dict) else {}
    except (OSError, ValueError):
        return {}


def save_bytes(path: str, data: bytes) -> None:
    tmp = path + ".tmp"
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise StateDirError(f"{path} cannot be written ({exc.strerror})") from None


def save_json(path: str, doc: dict) -> None:
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
        raise ConfigError(f"{where}{path} cannot be read (permission denied)") from None
    if not secret:
        raise ConfigError(f"{where}{path} is empty")
    return secret

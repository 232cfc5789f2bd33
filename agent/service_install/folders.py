"""The folders the configuration names, which the service must be able to write.

Under ProtectSystem=strict the whole file system is read-only for the service but for its
state directory and the folders listed in ReadWritePaths=. A file:// repository, the
disks' mount point, a state or report directory moved elsewhere: each is listed in the
paths drop-in (units.py) and created owned by the service user, 0700. Without this the
daemon's every backup failed with "Read-only file system" while `init`, run outside the
sandbox, had worked.
"""

from __future__ import annotations

import posixpath

from agent.config import Config
from agent.errors import ConfigError

STATE_DIR = "/var/lib/backupctl"  # the unit's StateDirectory=, already writable
MEDIA_DIR = "/media/backupctl"    # the unit's own ReadWritePaths=-/media/backupctl
# Folders that must never be handed to the service user: the system's own.
_SYSTEM = frozenset({"/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib64", "/media", "/mnt", "/opt",
                     "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/var", "/var/lib",
                     "/var/tmp", "/etc/backupctl", "/usr/local", "/usr/local/bin"})


def writable_folders(config: Config) -> tuple[str, ...]:
    """Every folder outside the state directory the service writes, sorted, each once."""
    found: list[str] = []
    where = config.path

    def add(path: str, what: str) -> None:
        path = posixpath.normpath(path)
        if any(c in '"\\%' or ord(c) < 32 or c == "\x7f" for c in path):
            raise ConfigError(f"{where}: {what} {path!r} holds a quote, backslash, % or control character, "
                              f"which a unit file cannot carry as it is",
                              hint="rename the folder (letters, digits, spaces, - _ . /)")
        if path in _SYSTEM:
            raise ConfigError(f"{where}: {what} is {path}, a system folder; the service user would own it",
                              hint="use a folder of its own, e.g. /srv/backup/repo")
        if path == STATE_DIR or path.startswith(STATE_DIR + "/"):
            return
        for source in config.source.paths:
            source = posixpath.normpath(source)
            if path == source or path.startswith(source.rstrip("/") + "/"):
                raise ConfigError(f"{where}: {what} {path} is inside the backed-up {source}",
                                  hint="keep repositories outside [source] paths")
        if path not in found:
            found.append(path)

    add(config.agent.state_dir, "[agent] state_dir")
    if config.agent.report_dir:
        add(config.agent.report_dir, "[agent] report_dir")
    for repository in config.repositories:
        if repository.url.startswith("file://"):
            add(repository.mount, f"[repositories.{repository.name}] url")
    return tuple(sorted(found))


def shared_folders(config: Config) -> tuple[str, ...]:
    """Folders the service writes in but does not own, listed in ReadWritePaths= only
    (never created nor given to the service user): [metrics] textfile_dir, which is
    node_exporter's and read by its own user (docs/INSTALL.md, "Monitoring a fleet")."""
    folder = config.metrics.textfile_dir
    if folder is None:
        return ()
    folder = posixpath.normpath(folder)
    if any(c in '"\\%' or ord(c) < 32 or c == "\x7f" for c in folder) or folder in _SYSTEM:
        raise ConfigError(f"{config.path}: [metrics] textfile_dir {folder!r} cannot be given to the service "
                          f"(a system folder, or a quote, backslash, % or control character)",
                          hint="node_exporter's own folder, e.g. /var/lib/prometheus/node-exporter")
    return (folder,)


def media_mounts(config: Config) -> tuple[str, ...]:
    """The mount points of the sets of rotated disks (a fresh disk's root is root's)."""
    return tuple(sorted({posixpath.normpath(r.mount) for r in config.repositories if r.media}))

"""The folders the configuration names, which the service must be able to write.

Under ProtectSystem=strict the whole file system is read-only for the service but for its
state directory and the folders listed in ReadWritePaths=. A file:// repository, the
disks' mount point, a state or report directory moved elsewhere: each is listed in the
paths drop-in (units.py) and created owned by the service user, 0700. Without this the
daemon's every backup failed with "Read-only file system" while `init`, run outside the
sandbox, had worked.
"""

from __future__ import annotations

import os
import posixpath
import stat

from agent.config import Config
from agent.errors import ConfigError, InstallError

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


# Where [metrics] textfile_dir may never be: the system's, and node_exporter's own folder,
# into which root's collectors write with `sponge` (which follows a symbolic link): a folder
# the service user may write there would let it have root overwrite any file (/etc/shadow).
_METRICS_NEVER_UNDER = ("/etc", "/usr", "/root", "/boot", "/var/lib/prometheus", "/proc", "/sys", "/dev",
                        "/run", "/bin", "/sbin", "/lib", "/lib64", "/tmp", "/var/tmp")


def shared_folders(config: Config, *, root: str = "/", service_uid: int | None = None) -> tuple[str, ...]:
    """[metrics] textfile_dir, for ReadWritePaths=: a folder of the service's own (created
    by the install, owned by the service user, 0755), which node_exporter reads through a
    root-owned symbolic link in its own folder (docs/INSTALL.md, "Monitoring a fleet").
    Refused: a system folder or one under /etc, /usr, /root, /boot, /var/lib/prometheus...,
    the state directory (0700: node_exporter could not read it), and an existing folder that
    is a symbolic link, not owned by the service user (`service_uid`, None: not created
    yet) or writable by its group or others. `root` is where the file system is (tests)."""
    folder = config.metrics.textfile_dir
    if folder is None:
        return ()
    folder = posixpath.normpath(folder)
    where = f"{config.path}: [metrics] textfile_dir {folder!r}"
    hint = "a folder of the service's own, e.g. /var/lib/backupctl-metrics (docs/INSTALL.md, \"Monitoring a fleet\")"
    if any(c in '"\\%' or ord(c) < 32 or c == "\x7f" for c in folder) or not folder.startswith("/"):
        raise InstallError(f"{where} holds a quote, backslash, % or control character, or is not absolute",
                           hint=hint)
    if folder in _SYSTEM or any(folder == top or folder.startswith(top + "/") for top in _METRICS_NEVER_UNDER):
        raise InstallError(f"{where} is a system folder or inside one (or node_exporter's): "
                           f"the service may not write there",
                           hint=hint + "; undo an earlier `chgrp backupctl`/`chmod g+w` of node_exporter's folder")
    if folder == STATE_DIR or folder.startswith(STATE_DIR + "/"):
        raise InstallError(f"{where} is inside {STATE_DIR}, which only the service user may enter: "
                           f"node_exporter could not read it", hint=hint)
    on_disk = os.path.join(root, folder.lstrip("/"))
    if os.path.realpath(on_disk) != os.path.join(os.path.realpath(root), folder.lstrip("/")):
        raise InstallError(f"{where} is or goes through a symbolic link", hint=hint)
    try:
        status = os.lstat(on_disk)
    except FileNotFoundError:
        return (folder,)  # the install creates it, the service's, 0755
    except OSError as exc:
        raise InstallError(f"{where} cannot be examined ({exc.strerror or exc})", hint=hint) from None
    if not stat.S_ISDIR(status.st_mode):
        raise InstallError(f"{where} is not a folder", hint=hint)
    if service_uid is None or status.st_uid != service_uid:
        raise InstallError(f"{where} is owned by uid {status.st_uid}, not by the service user "
                           f"(the install creates the folder itself when it does not exist)", hint=hint)
    if status.st_mode & 0o022:
        raise InstallError(f"{where} is writable by its group or others (mode {stat.S_IMODE(status.st_mode):04o})",
                           hint=f"chmod go-w it, or {hint}")
    return (folder,)


def media_mounts(config: Config) -> tuple[str, ...]:
    """The mount points of the sets of rotated disks (a fresh disk's root is root's)."""
    return tuple(sorted({posixpath.normpath(r.mount) for r in config.repositories if r.media}))

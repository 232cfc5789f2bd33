"""Where a database client's password lives while it runs: state_dir/credentials/.

pg_dump, psql and pg_restore read a password from a pgpass file (PGPASSFILE), mariadb-dump and
mariadb from an option file (--defaults-extra-file); never from the command line, which `ps`
shows to every local user. Those files are written into a private folder of the state
directory, not into /tmp, where any local user can plant a symlink or a folder first:

    state_dir/credentials/            0700, the agent's own
        <pid>-<random>/               0700, one per client run, removed when the client exits
            pgpass | client.cnf       0600, created with O_EXCL | O_NOFOLLOW

A run that crashed (SIGKILL, power cut) leaves its folder behind: every later run removes the
folders of processes that no longer exist before writing its own.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from typing import Iterator

from agent.errors import StateDirError
from agent.processes import process_exists
from agent.state.layout import StateLayout



def _base(state_dir: str) -> str:
    """state_dir/credentials, created private; refused if it is anything but a folder of the
    state dir's owner (the service user, whose folder root may use too: a run by hand as
    root must not leave the daemon a folder it cannot enter)."""
    base = StateLayout(state_dir).credentials()
    try:
        os.makedirs(state_dir, mode=0o700, exist_ok=True)
        owner = os.stat(state_dir)
        try:
            os.mkdir(base, 0o700)
            if os.geteuid() == 0 and owner.st_uid != 0:
                os.chown(base, owner.st_uid, owner.st_gid, follow_symlinks=False)
        except FileExistsError:
            pass
        found = os.lstat(base)
    except OSError as exc:
        raise StateDirError(f"{base} cannot be created ({exc.strerror})") from None
    ours = found.st_uid == os.geteuid() or (os.geteuid() == 0 and found.st_uid == owner.st_uid)
    if not stat.S_ISDIR(found.st_mode) or not ours:
        raise StateDirError(f"{base} is not a folder of this user",
                            hint="remove it; backupctl creates it again (mode 0700)")
    if stat.S_IMODE(found.st_mode) != 0o700:
        os.chmod(base, 0o700)
    return base


def clean_stale(state_dir: str) -> list[str]:
    """Remove the credentials folders left by runs that no longer exist; returns their names."""
    base = _base(state_dir)
    removed = []
    for name in os.listdir(base):
        pid, _, _rest = name.partition("-")
        if pid.isdigit() and int(pid) != os.getpid() and process_exists(int(pid)):
            continue  # a run still going (the daemon's and a manual one may overlap)
        shutil.rmtree(os.path.join(base, name), ignore_errors=True)
        removed.append(name)
    return removed


@contextlib.contextmanager
def private_folder(state_dir: str) -> Iterator[str]:
    """A fresh folder for one client's credentials files, removed on exit whatever happened."""
    base = _base(state_dir)
    clean_stale(state_dir)
    path = os.path.join(base, f"{os.getpid()}-{os.urandom(6).hex()}")
    os.mkdir(path, 0o700)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def private_file(folder: str, name: str, text: str) -> str:
    """Write `text` into folder/name, a new file (never an existing one, never through a symlink), 0600."""
    path = os.path.join(folder, name)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    with open(os.open(path, flags, 0o600), "w", encoding="utf-8") as handle:
        handle.write(text)
    return path

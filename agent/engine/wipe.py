"""Removing a restored tree: no recursion, no link followed, few descriptors.

`shutil.rmtree` recurses once per folder level, so a snapshot holding a folder nested
1,500 deep (which backup and restore handle) made the restore test fail with a
recursion error and leave the restored patient data behind. This walks with an explicit
stack of folders reached by descriptor (O_NOFOLLOW: a link is removed, never entered),
keeps at most OPEN_FOLDERS descriptors (a systemd service may open 1,024 files), and
climbs back through ".." only after checking it is the folder it came from.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

OPEN_FOLDERS = 64
_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


@dataclass
class _Folder:
    name: str | bytes  # its name in its parent
    identity: tuple[int, int]  # (st_dev, st_ino)
    subfolders: list[str | bytes] = field(default_factory=list)
    fd: int | None = None


def remove_tree(parent: int, name: str | bytes) -> None:
    """Remove `name` (in the folder open as `parent`) and everything below it. What cannot
    be removed is left; the caller checks whether `name` is gone."""
    stack: list[_Folder] = []
    _enter(stack, parent, name)
    try:
        while stack:
            top = stack[-1]
            assert top.fd is not None
            if top.subfolders:
                _enter(stack, top.fd, top.subfolders.pop())
                continue
            stack.pop()
            if not stack:
                _quietly(os.rmdir, top.name, dir_fd=parent)
            else:
                above = stack[-1]
                if above.fd is None:  # closed to spare descriptors: reopen it through ".."
                    fd = os.open("..", _FOLDER, dir_fd=top.fd)
                    st = os.fstat(fd)
                    if (st.st_dev, st.st_ino) != above.identity:
                        os.close(fd)
                        raise OSError("a folder moved while it was being removed")
                    above.fd = fd
                _quietly(os.rmdir, top.name, dir_fd=above.fd)
            os.close(top.fd)
    except OSError:
        pass  # left for the caller to see: it reports the scratch folder as not wiped
    finally:
        for folder in stack:
            if folder.fd is not None:
                os.close(folder.fd)


def _enter(stack: list[_Folder], parent: int, name: str | bytes) -> None:
    try:
        fd = os.open(name, _FOLDER, dir_fd=parent)
    except OSError:
        _quietly(os.unlink, name, dir_fd=parent)  # not a folder (or a link to one): the name goes
        return
    st = os.fstat(fd)
    folder = _Folder(name, (st.st_dev, st.st_ino), fd=fd)
    with os.scandir(fd) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                folder.subfolders.append(entry.name)
            else:
                _quietly(os.unlink, entry.name, dir_fd=fd)
    stack.append(folder)
    if len(stack) > OPEN_FOLDERS:
        far = stack[-OPEN_FOLDERS - 1]
        if far.fd is not None:
            os.close(far.fd)
            far.fd = None


def _quietly(operation: Callable[..., None], name: str | bytes, *, dir_fd: int) -> None:
    try:
        operation(name, dir_fd=dir_fd)
    except OSError:
        pass

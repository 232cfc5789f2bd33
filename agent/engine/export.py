"""A snapshot as a tar stream (rule K3: handing the practice's data back, in a format
every system reads, with no backupctl needed afterwards).

Python's tarfile writes the archive (POSIX pax format: long and non-UTF-8 names, large
files, exact mtimes); each file's bytes are read chunk by chunk from the repository and
checked against the SHA-256 recorded at backup as they stream. A file that does not
match is reported by path; the stream cannot take back bytes already written, so the
command then fails and says which files in the archive are not to be trusted.

Setuid, setgid and sticky bits are left out of the archive unless keep_special_bits:
whoever unpacks it as root would otherwise get them back. The tree is read through
agent.engine.expansion, so a crafted snapshot cannot make the stream exponential.
"""

from __future__ import annotations

import os
import tarfile
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from agent.crypto.ids import new_file_fingerprint
from agent.engine.expansion import Expansion
from agent.engine.target import permissions
from agent.errors import IntegrityError, StorageError
from agent.repo.lock import require_lock
from agent.repo.repository import Repository
from agent.repo.snapshot import Snapshot
from agent.repo.tree import DIR, FILE, SYMLINK, Node


@dataclass
class ExportReport:
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    bytes: int = 0
    verified: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:  # a JSON document (--json), read back by the commands
        return {"files": self.files, "dirs": self.dirs, "symlinks": self.symlinks, "bytes": self.bytes,
                "sha256_verified": self.verified,
                "failures": [{"path": p, "problem": m} for p, m in self.failures]}


class _ChunkReader:
    """A file object over a node's chunks, hashing as tarfile reads it."""

    def __init__(self, repo: Repository, node: Node) -> None:
        self._repo, self._chunks = repo, iter(node.chunks)
        self._buffer = b""
        self.digest = new_file_fingerprint()
        self.problem: str | None = None
        self.produced = 0
        self._size = node.size

    def read(self, size: int = -1) -> bytes:
        while (size < 0 or len(self._buffer) < size) and self.problem is None:
            chunk_id = next(self._chunks, None)
            if chunk_id is None:
                break
            try:
                data = self._repo.load_blob(chunk_id)
            except (IntegrityError, StorageError) as exc:
                self.problem = f"unreadable data: {exc}"
                break
            self.digest.update(data)
            self._buffer += data
        if self.problem is not None and len(self._buffer) < max(size, 0):
            # tarfile insists on `size` bytes: zeros stand in, and the file is reported.
            missing = min(size, self._size - self.produced) - len(self._buffer)
            self._buffer += b"\0" * max(missing, 0)
        out, self._buffer = (self._buffer, b"") if size < 0 else (self._buffer[:size], self._buffer[size:])
        self.produced += len(out)
        return out


def write_tar(repo: Repository, snapshot: Snapshot, stream: BinaryIO, *,
              keep_special_bits: bool = False) -> ExportReport:
    require_lock(repo, "export")  # no prune meanwhile
    return _write_tar(repo, snapshot, stream, keep_special_bits=keep_special_bits)


def _write_tar(repo: Repository, snapshot: Snapshot, stream: BinaryIO, *, keep_special_bits: bool) -> ExportReport:
    report = ExportReport()
    repo.load_index()

    def on_error(path: bytes, exc: Exception) -> None:
        report.failures.append((os.fsdecode(path) or "/", f"folder listing unreadable: {exc}"))

    # Refused before the first byte of the stream; listings read again as the walk goes,
    # so a streamed export holds one path of the tree in memory, not all of it.
    expansion = Expansion(repo, snapshot.tree, keep_listings=False)
    with tarfile.open(fileobj=stream, mode="w|", format=tarfile.PAX_FORMAT) as archive:
        for path, node in expansion.walk(on_error):
            name = path.decode("utf-8", "surrogateescape")
            info = tarfile.TarInfo(name)
            info.mode = permissions(node.mode, keep_special_bits=keep_special_bits)
            info.uid, info.gid = node.uid, node.gid
            info.uname, info.gname = node.user, node.group
            info.mtime = node.mtime_ns / 1e9
            if node.type == DIR:
                info.type = tarfile.DIRTYPE
                archive.addfile(info)
                report.dirs += 1
            elif node.type == SYMLINK:
                info.type, info.linkname = tarfile.SYMTYPE, (node.target or b"").decode("utf-8", "surrogateescape")
                archive.addfile(info)
                report.symlinks += 1
            elif node.type == FILE:
                info.size = node.size
                reader = _ChunkReader(repo, node)
                archive.addfile(info, reader)
                report.files += 1
                report.bytes += node.size
                if reader.problem:
                    report.failures.append((name, reader.problem))
                elif reader.digest.hexdigest() != node.sha256:
                    report.failures.append((name, "content does not match the SHA-256 recorded at backup"))
                else:
                    report.verified += 1
    return report

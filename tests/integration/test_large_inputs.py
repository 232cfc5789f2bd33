"""Reliability campaign, hostile and large input (issue 10, point 6): a single 5 GiB
sparse file is backed up without storing 5 GiB, restored sparse, and proven by SHA-256."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .support import Backupctl

GiB = 1024**3


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(8 << 20):
            digest.update(block)
    return digest.hexdigest()


def test_a_5_gib_sparse_file(bk: Backupctl):
    disk = bk.src / "disque-virtuel.img"
    with open(disk, "wb") as handle:
        handle.truncate(5 * GiB)
        for offset in (0, 2 * GiB + 12345, 5 * GiB - 4096):  # a little data among the holes
            handle.seek(offset)
            handle.write(os.urandom(4096))
    assert os.stat(disk).st_blocks * 512 < 64 * 1024 * 1024  # really sparse
    bk.init()
    report = bk.backup()
    assert report["bytes_total"] == 5 * GiB and report["bytes_added"] < 64 * 1024 * 1024  # zeros dedup
    restored = bk.base / "r"
    result = bk.ok_json("restore", "latest", "--target", str(restored))
    assert result["sha256_verified"] == 1
    copy = restored / str(disk).lstrip("/")
    assert copy.stat().st_size == 5 * GiB and copy.stat().st_blocks * 512 < 256 * 1024 * 1024  # holes kept
    assert _sha256(copy) == _sha256(disk)

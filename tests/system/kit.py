"""The rescue kit the system test installs from, offline: `make dist`'s own, built by
scripts/build_kit.py (wheels/, requirements.txt with every wheel's SHA-256, install.sh, and
the tar beside the folder), once per state of the sources it is made of, cached outside the
checkout.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .rootfs import CACHE, _log, cache_lock

KEEP = 3  # kits of other source states kept in the cache (switching branches back and forth)

CHECKOUT = Path(__file__).resolve().parents[2]
_SOURCES = ("pyproject.toml", "requirements.lock", "config.example.toml", "agent", "systemd", "scripts/install.sh",
            "scripts/build_kit.py", "docs/FORMAT.md", "docs/INSTALL.md", "docs/REFERENCE.md")


def _source_hash() -> str:
    digest = hashlib.sha256()
    for entry in _SOURCES:
        path = CHECKOUT / entry
        files = sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts) \
            if path.is_dir() else [path]
        for file in files:
            if file.exists():
                digest.update(str(file.relative_to(CHECKOUT)).encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()[:16]


def kit() -> tuple[Path, Path]:
    """(the kit folder, its tar), built when missing."""
    with cache_lock():
        found = _kit(CACHE / f"kit-{_source_hash()}")
        old = sorted((p for p in CACHE.glob("kit-*") if p != found[0].parent), key=lambda p: p.stat().st_mtime)
        for stale in old[:-KEEP] if len(old) > KEEP else []:
            shutil.rmtree(stale, ignore_errors=True)
    return found


def _kit(where: Path) -> tuple[Path, Path]:
    folder = where / "rescue-kit"
    if (where / ".complete").is_file():
        return folder, next(where.glob("backupctl-rescue-kit-*.tar"))
    shutil.rmtree(where, ignore_errors=True)
    started = time.monotonic()
    _log(f"building the rescue kit into {where} (cached for these sources)")
    where.mkdir(parents=True)
    subprocess.run([sys.executable, str(CHECKOUT / "scripts" / "build_kit.py"), "--out", str(where)],
                   check=True, cwd=CHECKOUT, stdout=subprocess.DEVNULL)
    tar = next(where.glob("backupctl-rescue-kit-*.tar"))
    version = tar.name.removeprefix("backupctl-rescue-kit-").removesuffix(".tar")
    (where / ".complete").write_text(version)
    _log(f"kit built in {time.monotonic() - started:.0f} s")
    return folder, tar


if __name__ == "__main__":
    print(kit())
    os._exit(0)

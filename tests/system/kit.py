"""The rescue kit the system test installs from, offline: wheels/, requirements.txt (every
wheel pinned with its SHA-256), install.sh, and its tar beside the folder.

The kit is `make dist`'s, built by its scripts/build_kit.py; in a checkout without that
script the same layout is built here with `pip wheel`. Either way it is built once per source state and
cached outside the checkout (the key is a hash of the sources the kit is made of).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from .rootfs import CACHE, _log

CHECKOUT = Path(__file__).resolve().parents[2]
_SOURCES = ("pyproject.toml", "requirements.lock", "config.example.toml", "agent", "systemd", "scripts/install.sh",
            "scripts/build_kit.py", "docs/FORMAT.md")


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
    where = CACHE / f"kit-{_source_hash()}"
    folder = where / "rescue-kit"
    if (where / ".complete").is_file():
        return folder, next(where.glob("backupctl-rescue-kit-*.tar"))
    shutil.rmtree(where, ignore_errors=True)
    started = time.monotonic()
    _log(f"building the rescue kit into {where} (cached for these sources)")
    where.mkdir(parents=True)
    if (CHECKOUT / "scripts" / "build_kit.py").is_file():
        # `make dist`'s own builder: the kit exactly as it is shipped, with its tar.
        subprocess.run([sys.executable, str(CHECKOUT / "scripts" / "build_kit.py"), "--out", str(where)],
                       check=True, cwd=CHECKOUT, stdout=subprocess.DEVNULL)
        tar = next(where.glob("backupctl-rescue-kit-*.tar"))
        version = _version(folder)
    else:
        _provisional_kit(folder)
        version = _version(folder)
        tar = where / f"backupctl-rescue-kit-{version}.tar"
        with tarfile.open(tar, "w") as archive:
            archive.add(folder, arcname="rescue-kit")
    (where / ".complete").write_text(version)
    _log(f"kit built in {time.monotonic() - started:.0f} s")
    return folder, tar


def _provisional_kit(folder: Path) -> None:
    folder.mkdir()
    wheels = folder / "wheels"
    build = folder.parent / "build"
    shutil.copytree(CHECKOUT, build, ignore=shutil.ignore_patterns(".git", ".venv", "demo", "dist", "build",
                                                                      "__pycache__", "*.egg-info", ".pytest_cache"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
                    "-w", str(wheels), str(build)], check=True)
    shutil.rmtree(build)
    lines = []
    for wheel in sorted(wheels.glob("*.whl")):
        name, version = wheel.name.split("-")[:2]
        sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
        lines.append(f"{name}=={version} --hash=sha256:{sha}")
    (folder / "requirements.txt").write_text("\n".join(lines) + "\n")
    shutil.copy2(CHECKOUT / "scripts" / "install.sh", folder / "install.sh")


def _version(folder: Path) -> str:
    for wheel in (folder / "wheels").glob("backupctl*.whl"):
        return wheel.name.split("-")[1]
    match = re.search(r'^version = "([^"]+)"', (CHECKOUT / "pyproject.toml").read_text(), re.M)
    assert match
    return match.group(1)


if __name__ == "__main__":
    print(kit())
    os._exit(0)

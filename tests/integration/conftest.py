"""Fixtures of the integration suite (helpers live in support.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.support import s3server
from tests.support.databases import start_mariadb, start_postgresql

from .support import Backupctl, random_file, write


@pytest.fixture(scope="module")
def postgresql():
    """A real PostgreSQL server (Debian's package) on loopback, one per test module."""
    server = start_postgresql()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def mariadb():
    """A real MariaDB server (Debian's package) on loopback, one per test module."""
    server = start_mariadb()
    yield server
    server.stop()


@pytest.fixture
def twenty_mib(bk: Backupctl) -> Backupctl:
    """A repository with one snapshot of four 5 MiB images and a letter (about 21 MiB)."""
    for i in range(4):
        random_file(bk.src / "imagerie" / f"irm-{i}.dcm", 5 * 1024 * 1024)
    write(bk.src / "lettre.txt", "Cher confrère\n")
    bk.init()
    bk.backup()
    return bk


@pytest.fixture(scope="module")
def s3():
    """A real S3 server process (moto_server) on loopback, one per test module."""
    endpoint = s3server.start()
    yield endpoint
    s3server.stop(endpoint)


@pytest.fixture
def s3_credentials(s3, monkeypatch):
    """The server's credentials in this process's environment, where boto3 reads them, for
    one test only: no later test or child process inherits them (tests/conftest.py)."""
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    return s3


@pytest.fixture
def bk(tmp_path: Path) -> Backupctl:
    """A fresh world: tmp_path/src (empty), tmp_path/repo (not created), a config."""
    return Backupctl(tmp_path)


@pytest.fixture
def make_bk(tmp_path: Path):
    """Several independent worlds in one test: make_bk("name", cipher=...)."""

    def make(name: str, **kwargs) -> Backupctl:
        return Backupctl(tmp_path / name, **kwargs)

    return make


@pytest.fixture
def open_dir():
    """A directory that other users can traverse (pytest's tmp root is 0700 root)."""
    path = Path(tempfile.mkdtemp(prefix="backupctl-it-", dir="/tmp"))
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def mount_tmpfs(tmp_path: Path):
    """mount_tmpfs(path, size="4m", read_only=False): a real small file system, always unmounted."""
    mounted: list[Path] = []

    def mount(path: Path, size: str = "4m", *, read_only: bool = False) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)], check=True)
        mounted.append(path)
        if read_only:
            subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)
        return path

    try:
        yield mount
    finally:
        for path in reversed(mounted):
            subprocess.run(["umount", "-l", str(path)], check=False)

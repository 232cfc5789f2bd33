"""remove_tree: deep and wide trees go, links are removed and never entered."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from agent.engine import wipe


@pytest.fixture(autouse=True)
def _no_deep_leftover(tmp_path: Path):
    """pytest's own clean-up of old temporary folders recurses: never leave it a deep tree."""
    yield
    subprocess.run(["rm", "-rf", str(tmp_path)], check=False)


def _deep(base: Path, levels: int) -> None:
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
    for level in range(levels):
        os.mkdir("d", dir_fd=fd)
        leaf = os.open(f"f{level}", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd)
        os.write(leaf, b"patient data")
        os.close(leaf)
        inner = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = inner
    os.close(fd)


def _remove(parent: Path, name: str) -> None:
    fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        wipe.remove_tree(fd, name)
    finally:
        os.close(fd)


@pytest.mark.parametrize("window", [wipe.OPEN_FOLDERS, 2])
def test_a_tree_1500_folders_deep_is_removed(tmp_path: Path, monkeypatch, window: int):
    """Deeper than the recursion limit and than the descriptors kept open (window 2 climbs
    back through ".." at almost every level)."""
    monkeypatch.setattr(wipe, "OPEN_FOLDERS", window)
    (tmp_path / "scratch").mkdir()
    _deep(tmp_path / "scratch", 1500)
    before = len(os.listdir("/proc/self/fd"))
    _remove(tmp_path, "scratch")
    assert not (tmp_path / "scratch").exists()
    assert len(os.listdir("/proc/self/fd")) == before  # every descriptor closed


def test_links_are_removed_never_entered(tmp_path: Path):
    victim = tmp_path / "victim"
    (victim / "inside").mkdir(parents=True)
    (victim / "inside" / "keep.txt").write_text("keep")
    scratch = tmp_path / "scratch"
    (scratch / "a" / "b").mkdir(parents=True)
    os.symlink(victim, scratch / "a" / "to-folder")
    os.symlink(victim / "inside" / "keep.txt", scratch / "a" / "b" / "to-file")
    os.mkfifo(scratch / "a" / "fifo")
    for number in range(2000):  # a wide folder: one scan, not one per subfolder
        (scratch / "a" / "b" / f"s{number}").mkdir()
    _remove(tmp_path, "scratch")
    assert not scratch.exists()
    assert (victim / "inside" / "keep.txt").read_text() == "keep"


def test_a_link_at_the_top_is_removed_not_followed(tmp_path: Path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("keep")
    os.symlink(victim, tmp_path / "scratch")
    _remove(tmp_path, "scratch")
    assert not os.path.lexists(tmp_path / "scratch")
    assert (victim / "keep.txt").read_text() == "keep"

"""Restore options: --include, --dry-run, existing files and --overwrite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .support import Backupctl, assert_error, assert_same_tree, file_sha256, set_mtimes, tree_state, write


@pytest.fixture
def saved(bk: Backupctl) -> Backupctl:
    """A repository with one snapshot of a small practice tree."""
    src = bk.src
    write(src / "courriers" / "2026" / "lettre-001.txt", "Cher confrère,\n")
    write(src / "courriers" / "2026" / "lettre-002.txt", "Chère consœur,\n")
    write(src / "courriers" / "2026" / "scan.pdf", b"%PDF-1.7\n" + os.urandom(5000))
    write(src / "courriers" / "2025" / "lettre-900.txt", "Bonne année\n")
    write(src / "patients" / "Élodie Müller" / "bilan.txt", "tension 12/8\n")
    write(src / "patients" / "Élodie Müller" / "radio.png", os.urandom(3000))
    write(src / "agenda.txt", "lundi 9h\n")
    set_mtimes(src)
    bk.init()
    bk.backup()
    return bk


def files_below(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir())


def test_include_a_folder_restores_it_whole_and_nothing_else(saved: Backupctl) -> None:
    bk = saved
    target = bk.base / "restored"
    result = bk.restore(target, "--include", f"{bk.src}/patients/Élodie Müller")
    assert result["files"] == 2 and result["sha256_verified"] == 2 and result["failures"] == []
    assert files_below(target) == sorted(str(bk.restored(target, bk.src / "patients" / "Élodie Müller" / n)
                                             .relative_to(target)) for n in ("bilan.txt", "radio.png"))
    assert_same_tree(bk.src / "patients" / "Élodie Müller",
                     bk.restored(target, bk.src / "patients" / "Élodie Müller"))


def test_include_accepts_a_leading_slash_free_path_and_several_patterns(saved: Backupctl) -> None:
    bk = saved
    target = bk.base / "restored"
    inside = str(bk.src).lstrip("/")
    result = bk.restore(target, "--include", f"{inside}/agenda.txt", "--include", f"{inside}/courriers/2025")
    assert result["files"] == 2 and result["sha256_verified"] == 2
    copy = bk.restored(target)
    assert files_below(copy) == ["agenda.txt", "courriers/2025/lettre-900.txt"]
    assert (copy / "agenda.txt").read_bytes() == (bk.src / "agenda.txt").read_bytes()


def test_include_a_file_glob_restores_only_matching_files(saved: Backupctl) -> None:
    """A glob that matches files (not their folders), as in docs/REFERENCE.md's
    `srv/cabinet/courriers/2026/*` example: the folders leading to them must be created."""
    bk = saved
    target = bk.base / "restored"
    result = bk.run("restore", "latest", "--target", str(target), "--include", "*.txt", "--json")
    assert result.returncode == 0, str(result)
    report = result.json()
    assert report["files"] == 5 and report["sha256_verified"] == 5 and report["failures"] == []
    copy = bk.restored(target)
    assert files_below(copy) == sorted([
        "agenda.txt", "courriers/2025/lettre-900.txt", "courriers/2026/lettre-001.txt",
        "courriers/2026/lettre-002.txt", "patients/Élodie Müller/bilan.txt"])
    for name in files_below(copy):
        assert file_sha256(copy / name) == file_sha256(bk.src / name)


def test_include_readme_example_folder_star(saved: Backupctl) -> None:
    bk = saved
    target = bk.base / "restored"
    inside = str(bk.src).lstrip("/")
    result = bk.run("restore", "latest", "--target", str(target), "--include", f"{inside}/courriers/2026/*")
    assert result.returncode == 0, str(result)
    copy = bk.restored(target)
    assert files_below(copy) == ["courriers/2026/lettre-001.txt", "courriers/2026/lettre-002.txt",
                                 "courriers/2026/scan.pdf"]


def test_include_that_matches_nothing_restores_nothing(saved: Backupctl) -> None:
    """Refused (exit 2), not "0 file(s)" and exit 0 (tests/integration/test_restore_incident.py)."""
    bk = saved
    target = bk.base / "restored"
    assert_error(bk.run("restore", "latest", "--target", str(target), "--include", "*/no such folder"), 2,
                 "--include '*/no such folder' matches nothing")
    assert not target.exists()


def test_dry_run_lists_and_writes_nothing(saved: Backupctl) -> None:
    bk = saved
    target = bk.base / "restored"
    result = bk.ok("restore", "latest", "--target", str(target), "--dry-run")
    assert not target.exists(), "a dry run must not even create the target"
    listed = [line.removeprefix("would restore ") for line in result.stdout.splitlines()
              if line.startswith("would restore ")]
    expected_files = [f"{bk.src}/{name}" for name in files_below(bk.src)]
    for path in expected_files:
        assert path in listed, f"{path} not listed by --dry-run:\n{result.stdout}"
    assert "7 file(s)" in result.stdout

    report = bk.restore(target, "--dry-run")
    assert not target.exists()
    assert report["dry_run"] is True and report["files"] == 7 and report["sha256_verified"] == 0
    assert set(p.lstrip("/") for p in expected_files) <= set(report["would_restore"])

    target.mkdir()
    bk.restore(target, "--dry-run", "--include", "*/agenda.txt")
    assert list(target.iterdir()) == []


def test_existing_file_in_target_is_refused_then_overwritten_on_request(saved: Backupctl) -> None:
    bk = saved
    target = bk.base / "restored"
    bk.restore(target)
    copy = bk.restored(target)
    mine = copy / "patients" / "Élodie Müller" / "bilan.txt"
    mine.write_text("modifié localement, à ne pas perdre\n")
    before = tree_state(target)

    result = bk.run("restore", "latest", "--target", str(target))
    assert_error(result, 15, "already exist", "--overwrite")
    assert mine.read_text() == "modifié localement, à ne pas perdre\n"
    assert tree_state(target) == before, "a refused restore must not write anything"

    # Only a single existing file: still refused, and named.
    other = bk.base / "other"
    write(bk.restored(other, bk.src / "agenda.txt"), "mon agenda\n")
    result = bk.run("restore", "latest", "--target", str(other))
    assert_error(result, 15, "agenda.txt")
    assert bk.restored(other, bk.src / "agenda.txt").read_text() == "mon agenda\n"
    assert files_below(other) == [str(bk.restored(other, bk.src / "agenda.txt").relative_to(other))]

    report = bk.restore(target, "--overwrite")
    assert report["failures"] == [] and report["sha256_verified"] == 7
    assert mine.read_text() == "tension 12/8\n"
    assert_same_tree(bk.src, copy)


def test_target_that_is_a_file_exits_15(saved: Backupctl) -> None:
    bk = saved
    target = bk.base / "pas un dossier"
    target.write_text("je suis un fichier\n")
    assert_error(bk.run("restore", "latest", "--target", str(target)), 15)
    assert target.read_text() == "je suis un fichier\n"

"""A restore as a practitioner lives it in an incident (issue 18, point 1): one file back by
its name, a name that matches nothing said with the closest names, `find -i`, a target
too small refused before anything is written, Ctrl-C that stops at once and says how to
go on with --resume."""

from __future__ import annotations

import json
import os
import shlex
import signal
import time
from pathlib import Path

import pytest

from .support import (Backupctl, assert_error, assert_same_tree, file_sha256, random_file, set_mtimes, typed_code,
                      wait_for, write)

MiB = 1024 * 1024
LETTER = "lettre-urgente Martin.odt"


@pytest.fixture
def practice(bk: Backupctl) -> Backupctl:
    src = bk.src
    write(src / "courriers" / "2026" / "novembre" / LETTER, b"PK\x03\x04" + os.urandom(3000))
    write(src / "courriers" / "2026" / "lettre-001.txt", "Cher confrère,\n")
    write(src / "courriers" / "2025" / "lettre-900.txt", "Bonne année\n")
    write(src / "patients" / "Élodie Müller" / "bilan.txt", "tension 12/8\n")
    write(src / "patients" / "Élodie Müller" / "radio.png", os.urandom(3000))
    write(src / "archives" / "Élodie Müller" / "ancien-bilan.txt", "2019\n")
    write(src / "agenda.txt", "lundi 9h\n")
    set_mtimes(src)
    bk.init()
    bk.backup()
    return bk


def files_below(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir())


# ---- a. a file by its name -------------------------------------------------------------


def test_include_a_bare_name_restores_that_file_wherever_it_is(practice: Backupctl) -> None:
    bk = practice
    target = bk.base / "restauration"
    result = bk.run("restore", "latest", "--target", str(target), "--include", LETTER)
    assert result.returncode == 0, str(result)
    assert "1 file(s)" in result.stdout and "SHA-256 verified for 1 of 1" in result.stdout, str(result)
    copy = bk.restored(target)
    assert files_below(copy) == [f"courriers/2026/novembre/{LETTER}"]
    original = bk.src / "courriers" / "2026" / "novembre" / LETTER
    assert file_sha256(copy / "courriers" / "2026" / "novembre" / LETTER) == file_sha256(original)


def test_include_a_bare_folder_name_brings_every_folder_of_that_name_whole(practice: Backupctl) -> None:
    bk = practice
    target = bk.base / "restauration"
    report = bk.restore(target, "--include", "Élodie Müller", "--exclude", "radio.png")
    assert report["files"] == 2 and report["sha256_verified"] == 2 and report["failures"] == []
    assert files_below(bk.restored(target)) == ["archives/Élodie Müller/ancien-bilan.txt",
                                                "patients/Élodie Müller/bilan.txt"]


def test_include_with_a_slash_still_matches_whole_paths_only(practice: Backupctl) -> None:
    """"courriers/2026" is a path: it names the snapshot's top-level courriers/2026 (there is
    none: the sources are below tmp), not any folder of that name."""
    bk = practice
    target = bk.base / "restauration"
    assert_error(bk.run("restore", "latest", "--target", str(target), "--include", "courriers/2026"), 2,
                 "'courriers/2026' matches nothing")
    inside = str(bk.src).lstrip("/")
    report = bk.restore(target, "--include", f"{inside}/courriers/2026")
    assert report["files"] == 2
    assert files_below(bk.restored(target)) == ["courriers/2026/lettre-001.txt", f"courriers/2026/novembre/{LETTER}"]


# ---- b. a pattern that matches nothing ------------------------------------------------------


def test_include_that_matches_nothing_exits_2_suggests_and_writes_nothing(practice: Backupctl) -> None:
    bk = practice
    target = bk.base / "restauration"
    before = bk.repo_digest()
    result = bk.run("restore", "latest", "--target", str(target), "--include", "lettre-urgente-martin.odt",
                    "--include", "agenda.txt", "--include", "ordonnance-zzz.pdf")
    line = assert_error(result, 2, "--include 'lettre-urgente-martin.odt' matches nothing",
                        f"closest names: '{LETTER}'", "--include 'ordonnance-zzz.pdf' matches nothing",
                        "nothing was written")
    assert "'agenda.txt' matches nothing" not in line, "a pattern that matched is not named"
    assert line.count("closest names") == 1, "no name close to ordonnance-zzz.pdf: none suggested"
    assert not target.exists(), "nothing may be written, not even the target folder"
    assert bk.repo_digest() == before
    audit = bk.state / "audit.jsonl"
    assert not audit.exists() or '"restore"' not in audit.read_text(), "no restore happened, none is recorded"

    # --json: the same refusal, no document claiming "0 files".
    result = bk.run("restore", "latest", "--target", str(target), "--include", "Lettre-Urgente Martin", "--json")
    assert_error(result, 2, "matches nothing", f"'{LETTER}'")
    assert result.stdout == "" and not target.exists()


# ---- c. find -i, and what to try when nothing matches -------------------------------------


def test_find_ignore_case_and_what_to_try_when_nothing_matches(practice: Backupctl) -> None:
    bk = practice
    result = bk.run("find", "LETTRE-URGENTE martin.ODT")
    assert_error(result, 2, "nothing matches 'LETTRE-URGENTE martin.ODT'", "try '*LETTRE-URGENTE martin.ODT*'",
                 "-i", f"closest names: '{LETTER}'")

    found = bk.ok_json("find", "-i", "LETTRE-URGENTE martin.ODT")["matches"]
    assert [m["path"] for m in found] == [f"{bk.src}/courriers/2026/novembre/{LETTER}"]
    text = bk.ok("find", "--ignore-case", "*MARTIN*").stdout
    assert f"{bk.src}/courriers/2026/novembre/{LETTER}" in text

    # A bare name: the '*NAME*' form is what to try.
    result = bk.run("find", "urgente")
    assert_error(result, 2, "nothing matches 'urgente'", "try '*urgente*'")
    assert bk.ok_json("find", "*urgente*")["matches"]

    # JSON: an empty list and the same exit code, the document still parses.
    result = bk.run("find", "introuvable-xyz", "--json")
    assert result.returncode == 2, str(result)
    assert result.json() == {"pattern": "introuvable-xyz", "ignore_case": False, "matches": []}
    assert_error(result, 2, "nothing matches 'introuvable-xyz'", "try '*introuvable-xyz*'")


# ---- d. free space, before anything is written ---------------------------------------------


def test_restore_into_a_target_too_small_is_refused_before_writing(twenty_mib: Backupctl, mount_tmpfs) -> None:
    bk = twenty_mib
    small = mount_tmpfs(bk.base / "petit disque", "8m")
    dry = bk.run("restore", "latest", "--target", str(small), "--dry-run")
    assert dry.returncode == 0, str(dry)
    assert "They need about 21." in dry.stdout and "MiB available) — not enough room" in dry.stdout, str(dry)
    report = bk.restore(small, "--dry-run")
    assert 20 * MiB < report["space_needed"] < 23 * MiB and report["space_available"] <= 8 * MiB

    for target in (small, small / "restauration"):
        result = bk.run("restore", "latest", "--target", str(target))
        line = assert_error(result, 15, "too full", "needs about 21.", "MiB, 8.0 MiB are available",
                            "nothing was written")
        assert list(small.iterdir()) == [], f"something was written before the refusal: {line}"

    # What fits is restored: one 5 MiB image and the letter.
    report = bk.restore(small, "--include", "irm-0.dcm", "--include", "lettre.txt")
    assert report["sha256_verified"] == 2 and report["failures"] == []


def test_resume_counts_what_is_already_in_the_target_as_room(twenty_mib: Backupctl, mount_tmpfs) -> None:
    """A target holding most of an interrupted restore has room for the rest: the files
    --resume keeps or replaces are not counted twice."""
    bk = twenty_mib
    disk = mount_tmpfs(bk.base / "disque", "24m")
    bk.restore(disk)
    copy = bk.restored(disk)
    (copy / "imagerie" / "irm-3.dcm").unlink()
    with open(copy / "imagerie" / "irm-2.dcm", "r+b") as handle:  # half written when interrupted
        handle.truncate(2 * MiB)
    assert_error(bk.run("restore", "latest", "--target", str(bk.base / "disque" / "ailleurs")), 15, "too full")
    report = bk.restore(disk, "--resume")
    assert report["already_restored"] == 3 and report["sha256_verified"] == 5 and report["failures"] == []
    assert_same_tree(bk.src, copy)


# ---- e. Ctrl-C ---------------------------------------------------------------------------


INTERRUPT_FILES = 96
# 290 MiB: the restore takes about a second, and the signal lands as soon as the first of
# the 96 files is finished, far from the end. One snapshot serves the three tests (each
# restores into its own target and keeps its own state), which saves two backups of it.
INTERRUPT_FILE_SIZE = 3 * MiB


def _finished_files(root: Path, source: Path) -> int:
    """Files the restore finished: verified, then given their recorded mtime."""
    return sum(1 for path in root.rglob("*.dcm")
               if path.stat().st_mtime_ns == (source / path.relative_to(root)).stat().st_mtime_ns)


def _intact_files(root: Path, source: Path) -> int:
    """Files of `root` whose bytes are the source's (finished and verified by the restore)."""
    count = 0
    for path in root.rglob("*.dcm"):
        original = source / path.relative_to(root)
        if path.stat().st_size == original.stat().st_size and file_sha256(path) == file_sha256(original):
            count += 1
    return count


@pytest.fixture(scope="module")
def big_snapshot(tmp_path_factory: pytest.TempPathFactory) -> Backupctl:
    bk = Backupctl(tmp_path_factory.mktemp("ctrl-c"))
    for i in range(INTERRUPT_FILES):
        random_file(bk.src / "imagerie" / f"scanner-{i:03d}.dcm", INTERRUPT_FILE_SIZE + i * 4099)
    bk.init()
    bk.backup()
    return bk


def _interrupt(bk: Backupctl, target: Path, *args: str) -> tuple[int, float, list[str]]:
    """Run `args`, send SIGINT once the first file is finished; (exit code, seconds from the
    signal to the exit, stderr lines)."""
    proc = bk.popen(*args)
    try:
        copy = bk.restored(target)
        wait_for(lambda: proc.poll() is not None or (copy.exists() and _finished_files(copy, bk.src) > 0),
                 timeout=120, what="the first finished file", interval=0.01)
        proc.send_signal(signal.SIGINT)
        signalled = time.monotonic()
        stdout, stderr = proc.communicate(timeout=120)
        stopped_after = time.monotonic() - signalled
    finally:
        proc.kill()
    print(f"exit {proc.returncode} {stopped_after:.2f} s after SIGINT\n--- stdout:\n{stdout.decode()}\n"
          f"--- stderr:\n{stderr.decode()}")
    return proc.returncode, stopped_after, stderr.decode().splitlines()


def test_ctrl_c_stops_a_restore_at_once_and_says_how_to_resume(big_snapshot: Backupctl) -> None:
    bk = big_snapshot
    target = bk.base / "restauration"
    code, stopped_after, lines = _interrupt(bk, target, "restore", "latest", "--target", str(target))
    assert code == 130, lines
    copy = bk.restored(target)
    done = _intact_files(copy, bk.src)
    assert done < INTERRUPT_FILES, f"the restore ran to its end ({done} files) instead of stopping"
    assert stopped_after < 5, f"stopped {stopped_after:.1f} s after Ctrl-C"
    assert len(lines) == 1 and lines[0].startswith("backupctl: error: restore interrupted (Ctrl-C)"), lines
    assert "nothing already stored was lost" not in lines[0], "the backup's message is not the restore's"
    command = lines[0].split("to finish it, run: ", 1)[1]
    words = shlex.split(command)
    assert words[0] == "backupctl" and words[-1] == "--resume", command
    assert words[1:-1] == ["--config", str(bk.config), "restore", "latest", "--target", str(target)], command

    # Rule T1: patient data went to the target, the interrupted restore is in the audit trail.
    records = [json.loads(line) for line in (bk.state / "audit.jsonl").read_text().splitlines()]
    assert [r for r in records if r["action"] == "restore"][-1]["interrupted"] is True

    # The command given, run as is, finishes the restore: every file bit-exact.
    resumed = bk.ok(*words[1 + 2:], "--json")  # bk.ok adds its own --config
    report = resumed.json()
    assert report["failures"] == [] and report["sha256_verified"] == INTERRUPT_FILES
    assert 0 < report["already_restored"] < INTERRUPT_FILES
    assert_same_tree(bk.src, copy)


def test_ctrl_c_stops_an_export_at_once_and_says_the_copy_is_incomplete(big_snapshot: Backupctl) -> None:
    bk = big_snapshot
    target = bk.base / "export"
    code, stopped_after, lines = _interrupt(bk, target, "export", "latest", "--target", str(target))
    assert code == 130, lines
    assert _intact_files(bk.restored(target), bk.src) < INTERRUPT_FILES, "the export ran to its end"
    assert stopped_after < 5, f"stopped {stopped_after:.1f} s after Ctrl-C"
    assert lines == [f"backupctl: error: export interrupted (Ctrl-C); {target} holds an incomplete copy — "
                     f"delete it and run the export again"], lines


def _code_file(bk: Backupctl) -> Path:
    """The recovery code as typed from the printed sheet, in a file (`recover --code-file`)."""
    sheet = bk.base / "fiche.html"
    bk.ok("key", "export", "--paper", str(sheet))
    code = bk.base / "code.txt"
    code.write_text(typed_code(sheet))
    return code


def test_ctrl_c_stops_a_recovery_and_says_how_to_resume(big_snapshot: Backupctl) -> None:
    """The new machine of the recovery sheet: `recover --restore` stops at once too, and the
    command it prints (with --resume) finishes it, keeping what was already verified."""
    bk = big_snapshot
    code = _code_file(bk)
    target = bk.base / "nouvelle-machine"
    where = ["recover", "--url", f"file://{bk.repo}", "--code-file", str(code), "--state-dir", str(bk.base / "b")]
    status, stopped_after, lines = _interrupt(bk, target, *where, "--restore", "latest", "--target", str(target))
    assert status == 130, lines
    copy = bk.restored(target)
    assert _intact_files(copy, bk.src) < INTERRUPT_FILES, "the recovery ran to its end instead of stopping"
    assert stopped_after < 5, f"stopped {stopped_after:.1f} s after Ctrl-C"
    assert len(lines) == 1 and lines[0].startswith("backupctl: error: recovery interrupted (Ctrl-C)"), lines
    words = shlex.split(lines[0].split("to finish it, run (the code is asked again): ", 1)[1])
    assert words[0] == "backupctl" and words[-1] == "--resume", words
    resumed = bk.ok(*words[1 + 2:], "--json")  # bk.ok adds its own --config
    report = resumed.json()
    assert report["failures"] == [] and report["sha256_verified"] == INTERRUPT_FILES
    assert 0 < report["already_restored"] < INTERRUPT_FILES
    assert_same_tree(bk.src, copy)

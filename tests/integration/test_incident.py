"""The incident desk (issue 8, points 1 and 4): restore by date, ls, find, dump, include
and exclude, dry run, resuming an interrupted restore, exporting as a folder or tar."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
from pathlib import Path

from .support import Backupctl, assert_error, base_env, random_file, write

MONDAY = "2026-11-02T18:00:00+01:00"
TUESDAY = "2026-11-03T18:00:00+01:00"
WEDNESDAY = "2026-11-04T18:00:00+01:00"


def _three_days(bk: Backupctl) -> dict[str, str]:
    """The letter is intact on Monday and Tuesday, damaged (by ransomware, say) on Wednesday."""
    letter = bk.src / "courriers" / "lettre-dupont.txt"
    write(letter, "Madame Dupont, votre rendez-vous. " * 200)
    write(bk.src / "courriers" / "lettre-martin.txt", "Monsieur Martin. " * 200)
    random_file(bk.src / "imagerie" / "radio.jpg", 1024 * 1024)
    write(bk.src / "cache-logiciel" / "cache.tmp", "cache")
    bk.init()
    ids = {"monday": bk.backup("--time", MONDAY)["snapshot_id"]}
    write(bk.src / "courriers" / "lettre-durand.txt", "Madame Durand. " * 100)
    ids["tuesday"] = bk.backup("--time", TUESDAY)["snapshot_id"]
    write(letter, b"\x8f\x02 chiffre par un rancongiciel " * 300)
    ids["wednesday"] = bk.backup("--time", WEDNESDAY)["snapshot_id"]
    return ids


def test_restore_at_a_date_takes_the_latest_snapshot_before_it(bk: Backupctl):
    ids = _three_days(bk)
    target = bk.base / "r"
    done = bk.ok_json("restore", "--at", "2026-11-03 20:00", "--target", str(target))
    assert done["snapshot_id"] == ids["tuesday"]
    letter = target / str(bk.src).lstrip("/") / "courriers" / "lettre-dupont.txt"
    assert letter.read_text().startswith("Madame Dupont")
    assert bk.ok_json("restore", "--at", "2026-11-02", "--target", str(bk.base / "r2"))["snapshot_id"] == ids["monday"]
    assert_error(bk.run("restore", "--at", "2026-11-01 12:00", "--target", str(bk.base / "r3")), 2,
                 "no snapshot was taken at or before")
    assert_error(bk.run("restore", "--at", "le 2 novembre", "--target", str(bk.base / "r3")), 2, "--at")
    assert_error(bk.run("restore", ids["monday"][:8], "--at", "2026-11-03", "--target", str(bk.base / "r3")), 2,
                 "either a SNAPSHOT or --at")


def test_find_says_when_a_letter_was_last_intact(bk: Backupctl):
    ids = _three_days(bk)
    found = bk.ok_json("find", "lettre-dupont*")["matches"]
    assert [m["snapshot_id"] for m in found] == [ids["monday"], ids["tuesday"], ids["wednesday"]]
    fingerprints = [m["sha256"] for m in found]
    assert fingerprints[0] == fingerprints[1] != fingerprints[2]  # changed on Wednesday
    intact = hashlib.sha256(("Madame Dupont, votre rendez-vous. " * 200).encode()).hexdigest()
    assert fingerprints[0] == intact and found[0]["size"] == len("Madame Dupont, votre rendez-vous. " * 200)
    by_path = bk.ok_json("find", "*/courriers/lettre-du*")["matches"]
    assert {m["path"].rsplit("/", 1)[-1] for m in by_path} == {"lettre-dupont.txt", "lettre-durand.txt"}
    assert len([m for m in by_path if m["path"].endswith("durand.txt")]) == 2  # since Tuesday
    text = bk.ok("find", "lettre-dupont*").stdout
    assert ids["monday"][:8] in text and "sha256" in text
    # Nothing found is exit 2 (tests/integration/test_restore_incident.py has the details).
    assert_error(bk.run("find", "introuvable*"), 2, "nothing matches 'introuvable*' in any of the 3 snapshot(s)")


def test_ls_and_dump(bk: Backupctl):
    ids = _three_days(bk)
    folder = str(bk.src / "courriers")
    entries = bk.ok_json("ls", ids["tuesday"][:8], folder)["entries"]
    assert sorted(e["path"].rsplit("/", 1)[-1] for e in entries) == [
        "lettre-dupont.txt", "lettre-durand.txt", "lettre-martin.txt"]
    assert all(e["type"] == "file" and len(e["sha256"]) == 64 for e in entries)
    everything = bk.ok_json("ls", "latest", "/", "--recursive")["entries"]
    assert any(e["path"].endswith("imagerie/radio.jpg") for e in everything)
    assert "lettre-martin.txt" in bk.ok("ls", "latest", folder).stdout
    dumped = bk.run("dump", ids["monday"][:8], f"{folder}/lettre-dupont.txt")
    assert dumped.returncode == 0 and dumped.stdout_bytes == ("Madame Dupont, votre rendez-vous. " * 200).encode()
    assert_error(bk.run("dump", "latest", folder), 2, "is not a file")
    assert_error(bk.run("ls", "latest", f"{folder}/absent.txt"), 2, "not in snapshot")


def test_include_exclude_and_dry_run(bk: Backupctl):
    _three_days(bk)
    plan = bk.ok_json("restore", "latest", "--target", str(bk.base / "r"), "--dry-run", "--include",
                      f"{str(bk.src).lstrip('/')}/courriers", "--exclude", "*martin*")["would_restore"]
    names = {p.rsplit("/", 1)[-1] for p in plan}
    assert {"lettre-dupont.txt", "lettre-durand.txt"} <= names and "lettre-martin.txt" not in names
    assert "radio.jpg" not in names and not (bk.base / "r").exists()  # a dry run writes nothing
    bk.ok("restore", "latest", "--target", str(bk.base / "r"), "--exclude", "cache-logiciel", "--exclude", "*.jpg")
    restored = bk.base / "r" / str(bk.src).lstrip("/")
    assert (restored / "courriers" / "lettre-martin.txt").exists()
    assert not (restored / "cache-logiciel").exists() and not (restored / "imagerie" / "radio.jpg").exists()


def test_an_interrupted_restore_resumes_and_keeps_what_is_intact(bk: Backupctl):
    _three_days(bk)
    target = bk.base / "r"
    bk.ok("restore", "latest", "--target", str(target))
    restored = target / str(bk.src).lstrip("/")
    # As if interrupted: one file never written, one cut short.
    (restored / "courriers" / "lettre-martin.txt").unlink()
    radio = restored / "imagerie" / "radio.jpg"
    radio.write_bytes(radio.read_bytes()[:1000])
    assert_error(bk.run("restore", "latest", "--target", str(target)), 15, "--resume")
    done = bk.ok_json("restore", "latest", "--target", str(target), "--resume")
    assert done["files"] == 5 and done["sha256_verified"] == 5 and done["already_restored"] == 3
    assert (restored / "courriers" / "lettre-martin.txt").read_text().startswith("Monsieur Martin")
    assert hashlib.sha256(radio.read_bytes()).hexdigest() == hashlib.sha256(
        (bk.src / "imagerie" / "radio.jpg").read_bytes()).hexdigest()


def test_export_as_a_folder_and_as_tar(bk: Backupctl):
    _three_days(bk)
    result = bk.ok_json("export", "latest", "--tar", str(bk.base / "cabinet.tar"))
    assert result["files"] == 5 == result["sha256_verified"] and result["failures"] == []
    with tarfile.open(bk.base / "cabinet.tar") as archive:
        members = {m.name: m for m in archive.getmembers()}
        prefix = str(bk.src).lstrip("/")
        martin = archive.extractfile(members[f"{prefix}/courriers/lettre-martin.txt"]).read()
    assert martin == (bk.src / "courriers" / "lettre-martin.txt").read_bytes()
    assert members[f"{prefix}/imagerie"].isdir()
    streamed = subprocess.run(bk.command("export", "latest", "--tar", "-"), capture_output=True, env=base_env(),
                              cwd=bk.base, timeout=600)
    assert streamed.returncode == 0
    with tarfile.open(fileobj=io.BytesIO(streamed.stdout)) as archive:
        assert sorted(m.name for m in archive.getmembers() if m.isfile()) == sorted(
            n for n, m in members.items() if m.isfile())
    folder = bk.ok_json("export", "latest", "--target", str(bk.base / "rendu"))
    assert folder["sha256_verified"] == 5
    assert_error(bk.run("export", "latest", "--target", str(bk.base / "rendu")), 2, "not empty")
    assert_error(bk.run("export", "latest", "--tar", str(bk.base / "cabinet.tar")), 2, "already exists")
    assert_error(bk.run("export", "latest"), 2, "--target DIR or --tar FILE")
    actions = [json.loads(line)["action"] for line in (Path(bk.state) / "audit.jsonl").read_text().splitlines()]
    assert actions.count("export") == 3


def test_export_names_damaged_files(bk: Backupctl):
    _three_days(bk)
    biggest = max((p for p in (bk.repo / "data").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    data = bytearray(biggest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    biggest.write_bytes(bytes(data))
    result = bk.run("export", "latest", "--tar", str(bk.base / "x.tar"))
    assert result.returncode == 13 and "FAILED" in result.stderr and "did not export intact" in result.stderr
    assert "Traceback" not in result.stderr

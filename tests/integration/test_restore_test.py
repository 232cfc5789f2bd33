"""`backupctl restore-test`: restores into a scratch folder, proves every file by SHA-256
(the latest snapshot, and a sample of the oldest), measures, wipes; fails naming the
files when data is damaged; refuses a scratch folder inside the sources or too small."""

from __future__ import annotations

import json
from pathlib import Path

from .support import Backupctl, assert_error, random_file, write


def _history(bk: Backupctl) -> None:
    for i in range(12):
        write(bk.src / "courriers" / f"lettre-{i}.txt", f"Madame, consultation {i}. " * 200)
    random_file(bk.src / "imagerie" / "radio.jpg", 3 * 1024 * 1024)
    assert bk.run("init").returncode == 0 and bk.run("backup").returncode == 0
    write(bk.src / "courriers" / "lettre-nouvelle.txt", "Monsieur, " * 100)
    assert bk.run("backup").returncode == 0


def test_a_passing_restore_test_is_measured_recorded_and_wiped(bk: Backupctl):
    _history(bk)
    scratch = bk.base / "scratch"
    result = bk.run("restore-test", "--scratch-dir", str(scratch), "--json")
    assert result.returncode == 0, str(result)
    doc = result.json()
    latest, oldest = doc["tests"]
    assert doc["ok"] is True and doc["failures"] == [] and doc["scratch_wiped"] is True
    assert latest["mode"] == "full" and latest["files"] == 14 and latest["sha256_verified"] == 14
    assert latest["bytes"] > 3 * 1024 * 1024 and latest["duration_s"] > 0 and latest["throughput_mib_s"] > 0
    assert oldest["mode"] == "sample" and oldest["files"] == 13 == oldest["sha256_verified"]  # all 13 < 20
    assert not any(scratch.iterdir())  # patient data wiped
    status = bk.run("status", "--json").json()["repositories"][0]
    assert status["last_restore_test"] is not None
    assert not any("restore test" in risk for risk in status["at_risk"])
    records = [json.loads(line) for line in (Path(bk.state) / "audit.jsonl").read_text().splitlines()]
    assert records[-1]["action"] == "restore_test" and records[-1]["ok"] is True and records[-1]["wiped"] is True


def test_sample_mode_restores_n_files(bk: Backupctl):
    _history(bk)
    doc = bk.run("restore-test", "--sample", "3", "--scratch-dir", str(bk.base / "s"), "--json").json()
    assert [t["files"] for t in doc["tests"]] == [3, 13] and doc["ok"] is True


def test_a_damaged_pack_fails_the_test_naming_the_files(bk: Backupctl):
    _history(bk)
    packs = sorted((p for p in (Path(bk.repo) / "data").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    biggest = packs[-1]  # the one holding the image and letters
    data = bytearray(biggest.read_bytes())
    data[len(data) // 3] ^= 0xFF
    biggest.write_bytes(bytes(data))
    result = bk.run("restore-test", "--scratch-dir", str(bk.base / "scratch"), "--json")
    assert result.returncode == 13
    doc = result.json()
    assert doc["ok"] is False and doc["failures"] and doc["scratch_wiped"] is True
    assert all(f["path"].startswith(str(bk.src).lstrip("/")) for f in doc["failures"])
    assert "restore test failed" in result.stderr
    status = bk.run("status", "--json").json()["repositories"][0]
    assert "the last restore test failed" in status["at_risk"]


def test_scratch_inside_the_sources_or_too_small_is_refused(bk: Backupctl, mount_tmpfs):
    _history(bk)
    assert_error(bk.run("restore-test", "--scratch-dir", str(bk.src / "tmp")), 2, "inside the backed-up folder")
    assert not (bk.src / "tmp").exists()
    small = mount_tmpfs(bk.base / "small", "1m")
    assert_error(bk.run("restore-test", "--scratch-dir", str(small)), 15, "MiB free")


def test_compliance_table_with_evidence(bk: Backupctl):
    _history(bk)
    before = bk.run("compliance", "--json")
    assert before.returncode == 4
    rules = {r["rule"]: r for r in before.json()["rules"]}
    assert rules["S7"]["status"] == "FAIL" and rules["S7"]["evidence"] == ["main: no restore test recorded"]
    assert rules["S1"]["status"] == "OK" and rules["C1-C4"]["status"] == "OK"
    assert rules["S6"]["status"] == "WARN" and rules["S8"]["status"] == "WARN"  # one local repository
    assert bk.run("restore-test", "--scratch-dir", str(bk.base / "s")).returncode == 0
    after = {r["rule"]: r for r in bk.run("compliance", "--json").json()["rules"]}
    assert after["S7"]["status"] == "OK" and "passed" in after["S7"]["evidence"][0]
    assert after["T2"]["status"] == "OK" and "intact" in after["T2"]["evidence"][0]
    assert after["K1"]["status"] == "FAIL"  # no recovery sheet yet
    text = bk.run("compliance")
    assert text.returncode == 4 and text.stdout.splitlines()[0].startswith("OK    S1")

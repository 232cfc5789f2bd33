"""Disaster recovery (issue 8): the recovery sheet, recovering on a new machine from the
sheet alone, passphrases, and leaving with one's data. Real processes, a real S3 server
(moto_server) on loopback."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path


from .support import ROOT, Backupctl, assert_error, base_env, random_file, tree_state, typed_code, write


def _practice(root: Path) -> None:
    for i in range(6):
        write(root / "courriers" / "2026" / f"lettre {i} Élodie.txt", f"Madame, consultation {i}. " * 400)
    random_file(root / "imagerie" / "radio.jpg", 3 * 1024 * 1024)
    (root / "vide").mkdir(parents=True, exist_ok=True)
    os.symlink("courriers/2026", root / "annee-en-cours")


def _recover(*args: str, code: str, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    """`backupctl recover` on "machine B": no config file, no state but its own."""
    return subprocess.run([sys.executable, "-m", "agent", "recover", *args], input=code, capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=600)


def test_disaster_recovery_from_the_sheet_alone_on_s3(tmp_path, s3):
    machine_a = tmp_path / "machine-a"
    source = machine_a / "srv" / "cabinet"
    _practice(source)
    original = tree_state(source)
    prefix = "cabinet-" + os.urandom(4).hex()
    config = machine_a / "config.toml"
    config.write_text(f"""
[agent]
state_dir = "{machine_a}/state"
practice_name = "Cabinet du Dr Martin"
[source]
paths = ["{source}"]
[repositories.cloud]
url = "s3://{s3.lock_bucket}/{prefix}"
endpoint = "{s3.url}"
region = "{s3.region}"
addressing = "path"
object_lock = "compliance"
lock_days = 3
""")
    env_a = {**base_env(), **s3.env()}

    def run_a(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "agent", "--config", str(config), *args], capture_output=True,
                              text=True, env=env_a, cwd=ROOT, timeout=600)

    assert run_a("init").returncode == 0
    assert run_a("backup").returncode == 0, run_a("backup").stderr
    sheet = machine_a / "fiche.html"
    export = run_a("key", "export", "--paper", str(sheet))
    assert export.returncode == 0, export.stderr
    assert stat.S_IMODE(sheet.stat().st_mode) == 0o600
    page = sheet.read_text(encoding="utf-8")
    assert s3.lock_bucket in page and prefix in page and s3.url in page and "<svg" in page
    typed = typed_code(sheet)
    secret_text = typed.replace(" ", "")
    trail_a = (machine_a / "state" / "audit.jsonl").read_text()
    # The key is never logged: not whole, not any line of it (the first holds only the
    # version and the repository id; test_security_keys.py looks in every file and output).
    assert secret_text not in trail_a
    for line in typed.splitlines():
        groups = line.rsplit(None, 1)[0]
        assert groups not in trail_a and groups.replace(" ", "") not in trail_a, line
    compliance = json.loads(run_a("compliance", "--json").stdout)
    assert {r["rule"]: r["status"] for r in compliance["rules"]}["K1"] == "OK"

    # The server burns: everything of machine A is gone but the printed sheet.
    shutil.rmtree(machine_a)
    machine_b = tmp_path / "machine-b"
    machine_b.mkdir()
    env_b = {**{k: v for k, v in os.environ.items() if not k.startswith("BACKUPCTL_")}, **s3.env(),
             "PYTHONPATH": str(ROOT), "BACKUPCTL_STATE_DIR": str(machine_b / "state")}
    where = ["--url", f"s3://{s3.lock_bucket}/{prefix}", "--endpoint", s3.url, "--region", s3.region,
             "--addressing", "path"]
    listed = _recover(*where, "--list", "--json", code=typed, env=env_b, cwd=machine_b)
    assert listed.returncode == 0, listed.stderr
    snapshots = json.loads(listed.stdout)["snapshots"]
    assert len(snapshots) == 1 and snapshots[0]["paths"] == [str(source)]
    restored = machine_b / "restauration"
    result = _recover(*where, "--restore", "latest", "--target", str(restored), "--json", code=typed, env=env_b,
                      cwd=machine_b)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["sha256_verified"] == 7
    assert tree_state(restored / str(source).lstrip("/")) == original
    trail = [json.loads(line) for line in (machine_b / "state" / "audit.jsonl").read_text().splitlines()]
    assert trail[-1]["action"] == "restore" and trail[-1]["target"] == str(restored)

    # The new machine gets its own passphrase and works as usual from then on.
    passphrase = machine_b / "passphrase"
    passphrase.write_text("une nouvelle phrase de passe pour la machine B\n")
    passphrase.chmod(0o600)
    added = _recover(*where, "--add-key", "--new-passphrase-file", str(passphrase), code=typed, env=env_b,
                     cwd=machine_b)
    assert added.returncode == 0, added.stderr
    config_b = machine_b / "config.toml"
    config_b.write_text(f"""
[agent]
state_dir = "{machine_b}/state"
[source]
paths = ["{restored}"]
[repositories.cloud]
url = "s3://{s3.lock_bucket}/{prefix}"
endpoint = "{s3.url}"
region = "{s3.region}"
addressing = "path"
[key]
passphrase_file = "{passphrase}"
""")
    snaps = subprocess.run([sys.executable, "-m", "agent", "--config", str(config_b), "snapshots", "--json"],
                           capture_output=True, text=True, env=env_b, cwd=machine_b, timeout=600)
    assert snaps.returncode == 0, snaps.stderr
    assert len(json.loads(snaps.stdout)["snapshots"]) == 1


def test_a_typo_is_named_by_line_and_a_wrong_code_opens_nothing(bk: Backupctl):
    write(bk.src / "lettre.txt", "Madame, " * 100)
    bk.init()
    bk.backup()
    sheet = bk.base / "fiche.html"
    bk.ok("key", "export", "--paper", str(sheet))
    typed = typed_code(sheet).splitlines()
    env = {**base_env(passphrase=None), "BACKUPCTL_STATE_DIR": str(bk.base / "b")}
    where = ["--url", f"file://{bk.repo}", "--list"]
    first = typed[2][0]
    typo = typed[:2] + [("B" if first != "B" else "C") + typed[2][1:]] + typed[3:]
    result = _recover(*where, code="\n".join(typo), env=env, cwd=bk.base)
    assert result.returncode == 2 and "line 3" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    other = bk.base / "other"
    other_bk = Backupctl(other)
    write(other_bk.src / "x.txt", "x")
    other_bk.init()
    other_sheet = other / "fiche.html"
    other_bk.ok("key", "export", "--paper", str(other_sheet))
    wrong = _recover(*where, code=typed_code(other_sheet), env=env, cwd=bk.base)
    assert wrong.returncode == 12 and "does not open" in wrong.stderr, wrong.stderr
    assert "BACKUPCTL_PASSPHRASE" not in wrong.stderr and "check --url against the sheet" in wrong.stderr
    # Digits typed for look-alike letters (0 for O, 1 for I) and lower case are accepted.
    relaxed = "\n".join(line.lower().replace("o", "0").replace("i", "1") for line in typed)
    assert _recover(*where, code=relaxed, env=env, cwd=bk.base).returncode == 0


def test_shares_any_two_of_three_recover_one_does_not(bk: Backupctl):
    write(bk.src / "lettre.txt", "Madame, " * 100)
    bk.init()
    bk.backup()
    bk.ok("key", "export", "--paper", str(bk.base / "part.html"), "--shares", "2/3")
    sheets = [bk.base / f"part-{n}-of-3.html" for n in (1, 2, 3)]
    assert all(s.exists() for s in sheets)
    assert "Part 2 sur 3" in sheets[1].read_text(encoding="utf-8")
    env = {**base_env(passphrase=None), "BACKUPCTL_STATE_DIR": str(bk.base / "b")}
    where = ["--url", f"file://{bk.repo}", "--list", "--json"]
    for pair in ((0, 1), (0, 2), (1, 2)):
        code = "\n\n".join(typed_code(sheets[i]) for i in pair)
        result = _recover(*where, code=code, env=env, cwd=bk.base)
        assert result.returncode == 0, (pair, result.stderr)
    alone = _recover(*where, code=typed_code(sheets[0]), env=env, cwd=bk.base)
    assert alone.returncode == 2 and "2 are needed" in alone.stderr
    assert_error(bk.run("key", "export", "--paper", str(bk.base / "x.html"), "--shares", "1/3"), 2, "--shares")
    assert_error(bk.run("key", "export", "--paper", str(bk.base / "x.txt")), 2, ".html or .pdf")


def test_pdf_sheet(bk: Backupctl):
    write(bk.src / "lettre.txt", "Madame, " * 100)
    bk.init()
    sheet = bk.base / "fiche.pdf"
    temporary = bk.base / "tmp"  # this test's own, not /tmp, which other suites on the machine share
    temporary.mkdir(mode=0o700)
    bk.ok("key", "export", "--paper", str(sheet), env={"TMPDIR": str(temporary)})
    assert sheet.read_bytes().startswith(b"%PDF-") and stat.S_IMODE(sheet.stat().st_mode) == 0o600
    assert list(temporary.iterdir()) == []  # the clear-text page did not stay behind


def test_passphrases_add_list_remove_change_without_touching_data(bk: Backupctl):
    write(bk.src / "lettre.txt", "Madame, " * 100)
    bk.init()
    bk.backup()
    data_before = {p: p.read_bytes() for p in (bk.repo / "data").rglob("*") if p.is_file()}
    second = bk.base / "second"
    second.write_text("deuxieme phrase de passe du cabinet\n")
    second.chmod(0o600)
    added = bk.ok_json("key", "add", "--new-passphrase-file", str(second))
    keys = bk.ok_json("key", "list")["keys"]
    assert len(keys) == 2 and sum(k["current"] for k in keys) == 1
    assert bk.run("snapshots", passphrase="deuxieme phrase de passe du cabinet").returncode == 0
    current = next(k["key_id"] for k in keys if k["current"])
    assert_error(bk.run("key", "remove", current[:8]), 2, "in use now")
    bk.ok("key", "remove", added["key_id"][:8])
    assert bk.run("snapshots", passphrase="deuxieme phrase de passe du cabinet").returncode == 12
    third = bk.base / "third"
    third.write_text("troisieme phrase de passe du cabinet\n")
    third.chmod(0o600)
    bk.ok("key", "passwd", "--new-passphrase-file", str(third))
    assert bk.run("snapshots").returncode == 12  # the old passphrase no longer opens it
    assert bk.run("snapshots", passphrase="troisieme phrase de passe du cabinet").returncode == 0
    assert {p: p.read_bytes() for p in (bk.repo / "data").rglob("*") if p.is_file()} == data_before
    actions = [json.loads(line)["action"] for line in (bk.state / "audit.jsonl").read_text().splitlines()]
    assert {"key_add", "key_remove"} <= set(actions)
    loose = bk.base / "loose"
    loose.write_text("phrase lisible par tous les comptes\n")
    loose.chmod(0o644)
    assert_error(bk.run("key", "add", "--new-passphrase-file", str(loose),
                        passphrase="troisieme phrase de passe du cabinet"), 2, "readable by others")

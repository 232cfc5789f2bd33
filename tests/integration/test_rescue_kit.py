"""The rescue kit end to end (issue 17, point 1): `scripts/build_kit.py` builds it, the agent
stores it in an S3 repository (moto_server on loopback), and a new machine, following the
recovery sheet's lines as printed, fetches it with `aws s3 cp`, checks its SHA-256 against the
sheet, installs backupctl into a fresh venv with no index at all, and that installation's
`backupctl recover` restores the snapshot bit for bit.

The kit is built once per module from this checkout, with the machine's package index (the
wheels are downloaded then; every later step is offline).
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agent import __version__

from .support import ROOT, base_env, random_file, tree_state, typed_code, write

KIT = f"backupctl-rescue-kit-{__version__}.tar"


def _build(out: Path) -> Path:
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_kit.py"), "--out", str(out)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return out / KIT


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(tmp_path_factory.mktemp("dist"))


def _offline_env(**extra: str) -> dict[str, str]:
    """No pip configuration of this machine (its mirror, find-links, constraints) and no
    network: a proxy that does not exist catches any attempt to reach an index."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PIP_", "BACKUPCTL_", "PYTHON", "VIRTUAL_ENV")) and k.lower() not in
           ("http_proxy", "https_proxy", "all_proxy", "no_proxy")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_INPUT="1", http_proxy="http://127.0.0.1:9",
               https_proxy="http://127.0.0.1:9", LANG="C.UTF-8", **extra)
    return env


def _sheet_codes(page: str) -> list[str]:
    return [html.unescape(code) for code in re.findall(r"<code[^>]*>(.*?)</code>", page)]


def test_two_builds_of_the_kit_give_the_same_sha256(kit: Path, tmp_path: Path) -> None:
    again = _build(tmp_path / "again")
    first = hashlib.sha256(kit.read_bytes()).hexdigest()
    assert hashlib.sha256(again.read_bytes()).hexdigest() == first
    assert (kit.parent / (KIT + ".sha256")).read_text() == f"{first}  {KIT}\n"
    wheels = sorted(p.name for p in (kit.parent / "rescue-kit" / "wheels").iterdir())
    assert f"backupctl_sante-{__version__}-py3-none-any.whl" in wheels
    lock = (ROOT / "requirements.lock").read_text()
    pinned = re.findall(r"^([a-z0-9_.-]+)==", lock, flags=re.M)
    assert len(wheels) == len(pinned) + 1  # one wheel per locked package, plus the project


def test_a_new_machine_installs_from_the_kit_in_the_bucket_alone_and_recovers(kit: Path, tmp_path: Path, s3) -> None:
    # ---- machine A: the practice's server, with its kit installed ----
    machine_a = tmp_path / "machine-a"
    source = machine_a / "srv" / "cabinet"
    for i in range(4):
        write(source / "courriers" / f"lettre {i} Élodie.txt", f"Madame, consultation {i}. " * 300)
    random_file(source / "imagerie" / "radio.jpg", 2 * 1024 * 1024)
    original = tree_state(source)
    prefix = "cabinet-" + os.urandom(4).hex()
    config = machine_a / "config.toml"
    config.write_text(f"""
[agent]
state_dir = "{machine_a}/state"
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
    env_a = {**base_env(), **s3.env(), "BACKUPCTL_RESCUE_KIT_DIR": str(kit.parent)}

    def run_a(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "agent", "--config", str(config), *args], capture_output=True,
                              text=True, env=env_a, cwd=ROOT, timeout=600)

    init = run_a("init")
    assert init.returncode == 0 and f"Rescue kit {KIT} stored in cloud" in init.stdout, init.stdout + init.stderr
    backup = run_a("backup", "--json")
    assert backup.returncode == 0, backup.stderr
    assert json.loads(backup.stdout)["rescue_kit"]["state"] == "present"  # one HEAD, not stored again
    trail = [json.loads(line) for line in (machine_a / "state" / "audit.jsonl").read_text().splitlines()]
    assert [t["action"] for t in trail].count("rescue_kit_stored") == 1
    client = s3.client()
    key = f"{prefix}/rescue/{KIT}"
    head = client.head_object(Bucket=s3.lock_bucket, Key=key)
    assert head["ObjectLockMode"] == "COMPLIANCE" and "ObjectLockRetainUntilDate" in head  # locked like the rest
    for plain in ("FORMAT.md", "READ-ME-FIRST.txt"):  # readable by a person, with no tool
        body = client.get_object(Bucket=s3.lock_bucket, Key=f"{prefix}/rescue/{plain}")["Body"].read()
        assert b"backupctl" in body
    sheet = machine_a / "fiche.html"
    export = run_a("key", "export", "--paper", str(sheet))
    assert export.returncode == 0, export.stderr
    page = sheet.read_text(encoding="utf-8")
    check = run_a("check")
    assert check.returncode == 0 and "rescue" not in check.stdout, check.stdout + check.stderr

    # ---- the server burns: machine B has the printed sheet and the bucket's access key ----
    shutil.rmtree(machine_a)
    machine_b = tmp_path / "machine-b"
    machine_b.mkdir()
    codes = _sheet_codes(page)
    fetch = next(c for c in codes if c.startswith("aws s3 cp "))
    assert fetch == (f"aws s3 cp s3://{s3.lock_bucket}/{prefix}/rescue/{KIT} . --endpoint-url {s3.url} "
                     f"--region {s3.region}")
    aws = Path(sys.executable).parent / "aws"
    assert aws.exists(), "awscli is missing from this venv: `make install-test` installs requirements-test.lock"
    fetched = subprocess.run(shlex.split(fetch), cwd=machine_b, capture_output=True, text=True, timeout=300,
                             env={**_offline_env(PATH=f"{aws.parent}:{os.environ['PATH']}"), **s3.env(),
                                  "no_proxy": "127.0.0.1"})
    assert fetched.returncode == 0, fetched.stdout + fetched.stderr

    # The sheet's check line, and the SHA-256 printed on the sheet.
    check_line = next(c for c in codes if c.startswith("sha256sum "))
    printed = next(c for c in codes if re.fullmatch(r"[0-9a-f]{64}", c))
    summed = subprocess.run(shlex.split(check_line), cwd=machine_b, capture_output=True, text=True, check=True)
    assert summed.stdout.split()[0] == printed == hashlib.sha256(kit.read_bytes()).hexdigest()

    # The sheet's install line, as printed, but into this test's folder instead of /opt/backupctl.
    install_line = next(c for c in codes if c.startswith("tar xf "))
    venv = machine_b / "opt-backupctl"
    assert "/opt/backupctl" in install_line and "--no-index" in install_line and "--require-hashes" in install_line
    installed = subprocess.run(["sh", "-ec", install_line.replace("/opt/backupctl", str(venv))], cwd=machine_b,
                               capture_output=True, text=True, timeout=300, env=_offline_env(PATH=os.environ["PATH"]))
    assert installed.returncode == 0, installed.stdout + installed.stderr
    config_of_venv = (venv / "pyvenv.cfg").read_text()
    assert "include-system-site-packages = false" in config_of_venv
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import agent; print(agent.__file__)"],
                           cwd=machine_b, capture_output=True, text=True, env=_offline_env(), check=True)
    assert where.stdout.strip().startswith(str(venv))  # the kit's backupctl, not this checkout's

    # That installation's `backupctl recover`, with the sheet's command and code.
    restore_line = next(c for c in codes if " --restore latest " in c)
    target = machine_b / "restauration"
    words = shlex.split(restore_line.replace("/srv/restauration", str(target)))
    assert words[0] == "backupctl"
    recovered = subprocess.run([str(venv / "bin" / "backupctl"), *words[1:], "--json"], cwd=machine_b,
                               input=typed_code(page), capture_output=True, text=True, timeout=600,
                               env={**_offline_env(BACKUPCTL_STATE_DIR=str(machine_b / "state")), **s3.env(),
                                    "PATH": os.environ["PATH"], "no_proxy": "127.0.0.1"})
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    assert tree_state(target / str(source).lstrip("/")) == original


def test_without_an_installed_kit_a_backup_says_so_once_and_succeeds(tmp_path: Path) -> None:
    from .support import Backupctl

    bk = Backupctl(tmp_path)
    write(bk.src / "lettre.txt", "Madame, " * 100)
    init = bk.run("init")
    assert init.returncode == 0, str(init)
    backup = bk.run("backup")
    assert backup.returncode == 0, str(backup)
    lines = [line for line in backup.stderr.splitlines() if "rescue kit" in line]
    assert len(lines) == 1 and lines[0].startswith("backupctl: warning: no rescue kit installed") \
        and "make dist" in lines[0], str(backup)
    as_json = bk.run("backup", "--json")
    assert as_json.returncode == 0 and as_json.stderr == "", str(as_json)
    assert as_json.json()["rescue_kit"]["state"] == "not_installed"
    assert not (bk.repo / "rescue").exists()
    status = bk.run("status")
    assert "warning: no rescue kit in the repository" in status.stdout, str(status)


def test_check_names_a_kit_replaced_in_a_folder_repository(kit: Path, tmp_path: Path) -> None:
    from .support import Backupctl

    bk = Backupctl(tmp_path / "world")
    write(bk.src / "lettre.txt", "Madame, " * 100)
    env = {"BACKUPCTL_RESCUE_KIT_DIR": str(kit.parent)}
    init = subprocess.run(bk.command("init"), env={**base_env(), **env}, capture_output=True, text=True, timeout=600)
    assert init.returncode == 0 and "Rescue kit" in init.stdout, init.stdout + init.stderr
    stored = bk.repo / "rescue" / KIT
    assert stored.read_bytes() == kit.read_bytes()
    assert bk.run("check").returncode == 0
    # Someone with write access to the storage swaps the kit and its .sha256 for their own.
    forged = bytearray(stored.read_bytes())
    forged[-1] ^= 1
    stored.write_bytes(bytes(forged))
    (bk.repo / "rescue" / (KIT + ".sha256")).write_text(f"{hashlib.sha256(forged).hexdigest()}  {KIT}\n")
    check = bk.run("check")
    assert check.returncode == 13, str(check)
    assert f"DAMAGED: rescue kit rescue/{KIT}" in check.stderr and "do not install from it" in check.stderr
    assert "the backups themselves are intact" in check.stderr

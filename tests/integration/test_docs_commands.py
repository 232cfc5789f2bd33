"""Issue 18, point 6: every command of docs/INSTALL.md runs, so the document cannot drift.

The ```sh blocks are taken from the document (tests/support/doc_commands.py) and run, in the
document's order, by /bin/sh against a real world this test makes: a practice tree, a local
repository and an off-site one on a real S3 server (moto_server) on loopback. Only the
document's own placeholders are replaced ("How to read the commands"): `backupctl` is this
checkout's CLI with BACKUPCTL_CONFIG pointing at the test's configuration (on the server, the
wrapper adds --config), `/srv/cabinet`, `/srv/restauration` and `/root/` are folders of the
test, the bucket, endpoint, region and key are the S3 server's (with `--addressing path`, which that
local server needs). Each command must exit 0 and
must have run (a shell that stops half-way is caught); then each section's outcome is checked:
the file named comes back bit for bit, the folder as it was at the date, the whole tree, the
new machine's copy from the recovery sheet's code. Lines marked `# [system test]` are run by
tests/system/test_installed_service.py, which reads them from the document; lines marked
`# [by hand]` are pinned below, so that marking a command to dodge this test shows in review.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import doc_commands
from tests.support.doc_commands import BY_HAND, SYSTEM_TEST

from .support import base_env, random_file, tree_digests, typed_code, write

# The only lines of docs/INSTALL.md no test runs, and why (see the module docstring).
EXPECTED_BY_HAND = [
    "tar xf backupctl-rescue-kit-0.1.0.tar && cd backupctl-rescue-kit-0.1.0",  # installs into /opt
    "python3 -m venv /opt/backupctl",
    "/opt/backupctl/bin/pip install --no-index --find-links wheels --require-hashes -r requirements.txt",
    "journalctl -u backupctl -f",  # follows the journal forever
    "systemctl stop backupctl",  # the installed service (run under systemd by the system test)
    "systemctl start backupctl",
    "aws s3 cp s3://cabinet-dupont-sauvegardes/serveur1/rescue/backupctl-rescue-kit-0.1.0.tar . "
    "--endpoint-url https://s3.gra.io.cloud.ovh.net",  # the real bucket; the kit: test_rescue_kit.py
    "sha256sum backupctl-rescue-kit-0.1.0.tar",
    "tar xf backupctl-rescue-kit-0.1.0.tar && cd backupctl-rescue-kit-0.1.0",
    "python3 -m venv /opt/backupctl && /opt/backupctl/bin/pip install --no-index --find-links wheels "
    "--require-hashes -r requirements.txt",
    "export PATH=/opt/backupctl/bin:$PATH",
]
SECTIONS_RUN = ["4. The first report, the recovery sheet, the handover", "5.1 One file, by its name",
                "5.2 A folder as it was at a date", "5.3 The whole server's data",
                "5.4 A new machine, from the recovery sheet"]
LETTER = "lettre-urgente Martin.odt"
BEFORE_ATTACK = "2026-11-01T18:00:00+01:00"  # the snapshot `--at 2026-11-02` must find


def _without_marker(line: str) -> str:
    return line.split("#", 1)[0].strip() if (BY_HAND in line or SYSTEM_TEST in line) else line


def test_the_markers_are_few_and_pinned() -> None:
    found = doc_commands.commands()
    assert [_without_marker(c.line) for c in found if c.marker == BY_HAND] == EXPECTED_BY_HAND
    system = [c for c in found if c.marker == SYSTEM_TEST]
    assert [c.section for c in system] == ["3. Installing on the practice server"] * 2, system
    assert sorted({c.section for c in found if c.marker is None}) == sorted(SECTIONS_RUN)
    # The system test's script is the document's lines, the version and `sudo` aside.
    script = doc_commands.install_script("9.9.9")
    assert "sh install.sh --config /root/config.toml --s3-credentials-file /root/s3.ini" in script
    assert "backupctl-rescue-kit-9.9.9.tar" in script and "sudo" not in script


class World:
    """The practice server of the document, in a temporary folder."""

    def __init__(self, base: Path, s3) -> None:  # type: ignore[no-untyped-def]
        self.base, self.s3 = base, s3
        self.src = base / "srv" / "cabinet"
        self.target = base / "srv" / "restauration"
        self.root = base / "root"
        self.state = base / "var" / "lib" / "backupctl"
        self.bin = base / "bin"
        self.config = base / "etc" / "config.toml"
        self.prefix = "serveur-" + os.urandom(4).hex()
        for folder in (self.src, self.root, self.bin, self.config.parent):
            folder.mkdir(parents=True, exist_ok=True)
        # `backupctl` as on the server: the program, its configuration implied.
        shim = self.bin / "backupctl"
        shim.write_text(f'#!/bin/sh\nexec {sys.executable} -m agent "$@"\n')
        shim.chmod(0o755)
        self.config.write_text(f"""
[agent]
state_dir = {json.dumps(str(self.state))}
practice_name = "Cabinet du Dr Dupont"
[source]
paths = [{json.dumps(str(self.src))}]
[repositories.main]
url = "file://{base}/sauvegardes"
[repositories.offsite]
url = "s3://{s3.lock_bucket}/{self.prefix}"
endpoint = "{s3.url}"
region = "{s3.region}"
addressing = "path"
object_lock = "compliance"
lock_days = 2
""", encoding="utf-8")

    def env(self, *, server: bool = True) -> dict[str, str]:
        env = {**base_env(), **self.s3.env(), "PATH": f"{self.bin}:{os.environ['PATH']}"}
        if server:
            env["BACKUPCTL_CONFIG"] = str(self.config)
        else:  # a new machine: no configuration, no passphrase, a state of its own
            env.pop("BACKUPCTL_PASSPHRASE")
            env["BACKUPCTL_STATE_DIR"] = str(self.base / "machine-b" / "state")
        return env

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        done = subprocess.run(["backupctl", *args], env=self.env(), capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, (args, done.stderr)
        return done

    def substitute(self, line: str) -> str:
        """The document's placeholders ("How to read the commands") replaced by this world's."""
        env = self.s3.env()
        for placeholder, value in (
                ("/srv/restauration", str(self.target)), ("/srv/cabinet", str(self.src)),
                ("/root/", f"{self.root}/"),
                ("s3://cabinet-dupont-sauvegardes/serveur1", f"s3://{self.s3.lock_bucket}/{self.prefix}"),
                ("https://s3.gra.io.cloud.ovh.net", self.s3.url),
                ("--region gra", f"--region {self.s3.region} --addressing path"),
                ("KEY-ID", env["AWS_ACCESS_KEY_ID"]), ("SECRET", env["AWS_SECRET_ACCESS_KEY"])):
            line = line.replace(placeholder, value)
        return line

    def run_section(self, section: str, *, stdin: str = "", server: bool = True) -> list[str]:
        """Run the section's commands as one /bin/sh script (cd and export carry over, as at a
        prompt); each must exit 0, and each must have run. Returns their standard outputs."""
        todo = [c for c in doc_commands.commands() if c.section == section and c.marker is None]
        assert todo, f"no command to run in section {section!r} of docs/INSTALL.md"
        ran, given = self.base / "ran", self.base / "stdin"
        ran.write_text("")
        given.write_text(stdin)
        outputs = [self.base / f"out-{i}" for i in range(len(todo))]
        script = "".join(
            f'{{ {self.substitute(c.line)}\n}} < "{given}" > "{outputs[i]}"\n'
            f'rc=$?; echo "{i} $rc" >> "{ran}"; [ $rc -eq 0 ] || exit $rc\n'
            for i, c in enumerate(todo))
        shutil.rmtree(self.target, ignore_errors=True)  # "an empty folder with room"
        done = subprocess.run(["/bin/sh", "-c", script], cwd=self.root, env=self.env(server=server),
                              capture_output=True, text=True, timeout=900)
        codes = dict(line.split() for line in ran.read_text().splitlines())
        for i, command in enumerate(todo):
            assert codes.get(str(i)) == "0", (
                f"docs/INSTALL.md, {section}: `{command.line}` "
                + (f"exited {codes[str(i)]}" if str(i) in codes else "did not run")
                + f"\n--- its output:\n{outputs[i].read_text() if outputs[i].exists() else ''}"
                + f"\n--- stderr:\n{done.stderr[-3000:]}")
        assert done.returncode == 0, done.stderr
        return [path.read_text() for path in outputs]


def test_every_command_of_install_md_runs_and_does_what_it_says(tmp_path: Path, s3) -> None:  # type: ignore[no-untyped-def]
    world = World(tmp_path, s3)
    october = world.src / "courriers" / "2026" / "10"
    for i in range(5):
        write(october / f"lettre-{i}.odt", f"Cher confrère, consultation d'octobre {i}. " * 300)
    letter = random_file(world.src / "courriers" / "2026" / LETTER, 300_000)
    random_file(world.src / "imagerie" / "radio.jpg", 1_000_000)
    for repo in ("main", "offsite"):
        world.cli("init", "--repo", repo)
        world.cli("backup", "--repo", repo, "--time", BEFORE_ATTACK)
    before_import = tree_digests(october)
    for i in range(5):  # the bad import of 3 November
        write(october / f"lettre-{i}.odt", f"IMPORT RATÉ {i}")
    for repo in ("main", "offsite"):
        world.cli("backup", "--repo", repo)
    latest = tree_digests(world.src)
    letter_bytes = letter.read_bytes()

    # 4. The first report and the recovery sheet.
    world.run_section(SECTIONS_RUN[0])
    for repo in ("main", "offsite"):
        assert list((world.state / "reports").glob(f"*-restore-test-{repo}-*.html")), repo
    assert not list(world.root.glob("fiche-de-recuperation.*")), "the sheet's file was not destroyed"

    # 5.1 One file, by its name: deleted by the practice, back bit for bit.
    letter.unlink()
    found, _restore, _copy = world.run_section(SECTIONS_RUN[1])
    assert LETTER in found
    assert letter.read_bytes() == letter_bytes

    # 5.2 A folder as it was at a date: the October letters from before the bad import.
    world.run_section(SECTIONS_RUN[2])
    assert tree_digests(october) == before_import

    # 5.3 The whole server's data: destroyed, back as the latest snapshot holds it.
    shutil.rmtree(world.src)
    world.src.mkdir()
    write(world.src / "LISEZ-MOI-RANCON.txt", "vos fichiers sont chiffrés")
    world.run_section(SECTIONS_RUN[3])
    assert tree_digests(world.src) == latest

    # 5.4 A new machine, from the recovery sheet of the off-site repository.
    sheet = tmp_path / "fiche-offsite.html"
    world.cli("key", "export", "--repo", "offsite", "--paper", str(sheet))
    code = typed_code(sheet)
    sheet.unlink()
    _export, listed, _restore, _passphrase, _added = world.run_section(SECTIONS_RUN[4], stdin=code, server=False)
    assert listed.count("\n") >= 2 and "2026-11-01" in listed, listed
    restored = world.target / str(world.src).lstrip("/")
    assert tree_digests(restored) == latest
    # The passphrase --add-key gave opens the repository.
    new_passphrase = (world.root / "passphrase.txt").read_text().strip()
    opened = subprocess.run(["backupctl", "snapshots", "--repo", "offsite"], capture_output=True, text=True,
                            env={**world.env(), "BACKUPCTL_PASSPHRASE": new_passphrase}, timeout=600)
    assert opened.returncode == 0, opened.stderr


@pytest.mark.parametrize("right, wrong", [
    ("backupctl find -i 'lettre-urgente martin.odt'", "backupctl find 'lettre-urgente martin.odt'"),
    ("--include 'lettre-urgente Martin.odt'", "--include 'lettre-urgente Martin.doc'"),
    ("cp -p '/srv/restauration/srv/cabinet/", "cp -p '/srv/restauration/"),
])
def test_a_command_changed_to_something_wrong_fails_the_run(tmp_path: Path, s3, right: str, wrong: str,  # type: ignore[no-untyped-def]
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The harness itself: a runbook line changed to something wrong stops the run, naming the line."""
    original = doc_commands.INSTALL_MD.read_text(encoding="utf-8")
    assert original.count(right) == 1
    doc = tmp_path / "INSTALL.md"
    doc.write_text(original.replace(right, wrong), encoding="utf-8")
    real = doc_commands.commands
    monkeypatch.setattr(doc_commands, "commands", lambda path=doc: real(path))
    world = World(tmp_path / "world", s3)
    random_file(world.src / "courriers" / "2026" / LETTER, 10_000)
    world.cli("init", "--repo", "main")
    world.cli("backup", "--repo", "main")
    (world.src / "courriers" / "2026" / LETTER).unlink()
    with pytest.raises(AssertionError, match=r"5\.1 One file, by its name: `[^`]*" + re.escape(wrong)):
        world.run_section(SECTIONS_RUN[1])

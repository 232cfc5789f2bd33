"""README.md: on a fresh Debian 12, git and make are enough; `make` installs python3 and
python3-venv (and `make test` the rest, systemd-analyze among it) before it makes the venv.
The script runs here against stub commands: no root, no apt, no network."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "install-system-packages.sh"


def _recipe(makefile: str, target: str) -> list[str]:
    block = makefile.split(f"\n{target}:", 1)[1].split("\n\n", 1)[0]
    return [line.strip() for line in block.splitlines()[1:] if line.startswith("\t")]


def test_the_debian_packages_come_before_the_venv() -> None:
    makefile = (ROOT / "Makefile").read_text()
    venv = _recipe(makefile, "$(BIN)/backupctl")
    assert "install-system-packages.sh venv" in venv[0] and "-m venv" in venv[1], venv
    tests = _recipe(makefile, "install-test")
    assert "install-system-packages.sh test" in tests[0] and "$(MAKE)" in tests[1] and "install" in tests[1], tests


def _run(tmp_path: Path, want: str, *, ensurepip: bool, uid: int) -> subprocess.CompletedProcess[str]:
    stubs = tmp_path / "bin"
    stubs.mkdir()
    # python3 without python3-venv: `import ensurepip` fails (Debian ships the module in python3.11-venv).
    (stubs / "python3").write_text(f"#!/bin/sh\nexit {0 if ensurepip else 1}\n")
    (stubs / "id").write_text(f"#!/bin/sh\necho {uid}\n")
    for stub in stubs.iterdir():
        stub.chmod(0o755)
    for tool in ("ls",):  # what the script runs besides the shell's builtins; no sudo, no apt-get
        os.symlink(f"/bin/{tool}", stubs / tool)
    return subprocess.run(["/bin/sh", str(SCRIPT), want], capture_output=True, text=True,
                          env={"PATH": str(stubs)}, timeout=30)


def test_quiet_when_nothing_is_missing(tmp_path: Path) -> None:
    done = _run(tmp_path, "venv", ensurepip=True, uid=1000)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_without_root_nor_sudo_it_names_what_to_install_and_fails(tmp_path: Path) -> None:
    done = _run(tmp_path, "venv", ensurepip=False, uid=1000)
    assert done.returncode == 1 and done.stdout == ""
    assert "apt-get install python3-venv\n" in done.stderr


def test_make_test_needs_systemd_analyze(tmp_path: Path) -> None:
    done = _run(tmp_path, "test", ensurepip=True, uid=1000)
    assert done.returncode == 1
    assert " systemd " in done.stderr and " chromium " in done.stderr and "python3-venv" not in done.stderr


def test_ci_makes_test_in_a_venv_of_its_own() -> None:
    # README.md: `.ci/run` runs `make test` in a venv made for the run, never one left from before.
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'scratch="$(mktemp -d)"' in ci and "trap 'rm -rf \"$scratch\"' EXIT" in ci
    assert 'make test VENV="$scratch/venv"' in ci

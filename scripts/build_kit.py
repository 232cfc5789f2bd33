#!/usr/bin/env python3
"""Build the rescue kit: everything a new machine needs to install backupctl offline.

    python scripts/build_kit.py [--out dist]

writes, under the output folder (dist/ by default):
  rescue-kit/wheels/            the project wheel and one wheel per line of requirements.lock,
                                for CPython 3.11 on manylinux (glibc 2.36, Debian 12) of this
                                machine's architecture
  rescue-kit/requirements.txt   requirements.lock plus the project wheel's line, every line
                                with its SHA-256 (`pip install --require-hashes`)
  rescue-kit/FORMAT.md          docs/FORMAT.md: the repository format, readable without a tool
  rescue-kit/INSTALL.md         docs/INSTALL.md: installing, and the incident runbook (a new machine: 5.4)
  rescue-kit/READ-ME-FIRST.txt  what the folder is and how to install from it (French, English)
  rescue-kit/install.sh         scripts/install.sh when the checkout has one
  backupctl_sante-<ver>-py3-none-any.whl     the project wheel (also in wheels/)
  backupctl-rescue-kit-<ver>.tar             the folder as one deterministic tar
  backupctl-rescue-kit-<ver>.tar.sha256      its SHA-256, in `sha256sum -c` form

The tar is deterministic (names sorted, fixed mtime, owner 0:0 without names, modes 0644/0755)
so that two builds from the same inputs give the same SHA-256: that hash is printed on the
recovery sheet, and a rebuild must not make the sheets already printed disagree with it.
Only the standard library and pip (run as a subprocess) are used: this runs from `make dist`
and from the test fixtures, in the project's venv, before anything else is installed.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The fixed mtime of every tar member and of every file in the project wheel, unless
# SOURCE_DATE_EPOCH says otherwise (reproducible-builds.org convention): 2000-01-01 UTC.
DEFAULT_EPOCH = 946684800

# The oldest target: Debian 12's glibc and Python. A wheel tagged for a newer glibc would
# install on the machine that built the kit and fail on the machine that needs it.
TARGET_GLIBC_MINOR = 36
TARGET_PYTHON = "3.11"
TARGET_ABI = "cp311"

KIT_PREFIX = "backupctl-rescue-kit-"


def project_version(root: Path = ROOT) -> str:
    with open(root / "pyproject.toml", "rb") as f:
        return str(tomllib.load(f)["project"]["version"])


def kit_name(version: str) -> str:
    """File name of the kit tar of one version (also its name under rescue/ in a repository)."""
    return f"{KIT_PREFIX}{version}.tar"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def source_epoch() -> int:
    value = os.environ.get("SOURCE_DATE_EPOCH", "")
    return int(value) if value.isdigit() else DEFAULT_EPOCH


def deterministic_tar(folder: Path, tar_path: Path, top: str, *, mtime: int) -> None:
    """Write `folder` as `tar_path`, every member under `top`/, byte-identical across builds.

    Only regular files and folders are taken (a kit has nothing else); executables keep 0755,
    everything else is 0644 (folders 0755), owner 0:0 with empty names, one fixed mtime.
    """
    members: list[tuple[str, Path]] = [(top, folder)]
    for path in folder.rglob("*"):
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            raise SystemExit(f"build_kit: {path} is neither a file nor a folder; a kit holds only those")
        members.append((f"{top}/{path.relative_to(folder).as_posix()}", path))
    members.sort(key=lambda m: m[0].encode())
    tmp = tar_path.with_name(tar_path.name + ".part")
    with open(tmp, "wb") as raw, tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, path in members:
            info = tarfile.TarInfo(name)
            info.mtime = mtime
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if path.is_dir():
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            else:
                info.mode = 0o755 if os.access(path, os.X_OK) else 0o644
                info.size = path.stat().st_size
                with open(path, "rb") as f:
                    tar.addfile(info, f)
    tmp.replace(tar_path)


def _pip(*args: str, env: dict[str, str] | None = None) -> None:
    command = [sys.executable, "-m", "pip", *args]
    result = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        sys.stderr.write(result.stdout)
        raise SystemExit(f"build_kit: {' '.join(command[2:5])} ... failed (exit {result.returncode}), output above")


def build_project_wheel(root: Path, out: Path, *, epoch: int) -> Path:
    """The project wheel, built from a clean copy of the sources.

    A copy, because setuptools builds in-tree and a stale build/ folder would put deleted
    modules into the wheel; SOURCE_DATE_EPOCH fixes the zip timestamps.
    """
    with tempfile.TemporaryDirectory(prefix="backupctl-wheel-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        # config.example.toml and systemd/: the wheel's data files, which `backupctl
        # install-service` installs (pyproject.toml, [tool.setuptools] data-files).
        for name in ("pyproject.toml", "README.md", "config.example.toml", "docs/INSTALL.md", "docs/REFERENCE.md"):
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / name, src / name)
        shutil.copytree(root / "systemd", src / "systemd")
        shutil.copytree(root / "agent", src / "agent",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
        env = dict(os.environ, SOURCE_DATE_EPOCH=str(epoch))
        _pip("wheel", "--quiet", "--no-deps", "--wheel-dir", str(Path(tmp) / "wheel"), str(src), env=env)
        wheels = list((Path(tmp) / "wheel").glob("*.whl"))
        if len(wheels) != 1:
            raise SystemExit(f"build_kit: expected one project wheel, got {[w.name for w in wheels]}")
        target = out / wheels[0].name
        shutil.copyfile(wheels[0], target)
        return target


def download_wheels(lock: Path, wheels: Path) -> None:
    """One wheel per line of the lock, checked against the lock's hashes by pip itself."""
    arch = platform.machine()
    # Every manylinux tag a glibc 2.36 accepts, spelled out: pip 23 (Debian 12's python3 -m
    # venv) does not widen one --platform to the older glibc tags by itself.
    platforms: list[str] = []
    for minor in range(TARGET_GLIBC_MINOR, 16, -1):
        platforms += ["--platform", f"manylinux_2_{minor}_{arch}"]
    platforms += ["--platform", f"manylinux2014_{arch}"]
    _pip("download", "--quiet", "--no-deps", "--require-hashes", "--only-binary=:all:",
         *platforms, "--implementation", "cp",
         "--python-version", TARGET_PYTHON, "--abi", TARGET_ABI,
         "--dest", str(wheels), "-r", str(lock))


READ_ME_FIRST = """\
backupctl {version} - RESCUE KIT / KIT DE SECOURS
==================================================

FRANCAIS

Ce dossier contient le logiciel de sauvegarde backupctl {version}, de quoi l'installer sur
une machine neuve SANS acces a Internet, la description du format du depot (FORMAT.md) et le
guide d'installation et de reprise apres incident (INSTALL.md, en anglais).
Il ne contient aucune donnee de patient : les sauvegardes sont chiffrees, a cote, dans le depot.
Les paquets (wheels/) sont pour Linux {arch} (glibc 2.36 ou plus recente, Debian 12 ou plus
recent) avec Python 3.11.

1. Verifier l'archive. Comparer l'empreinte SHA-256 de l'archive avec celle imprimee sur la
   fiche de recuperation papier :
       sha256sum {tar}
   Les 64 caracteres doivent etre identiques a ceux de la fiche. S'ils different : NE PAS
   INSTALLER (l'archive a ete modifiee) ; prendre le kit d'un autre depot ou d'un autre support.
2. Extraire :  tar xf {tar} && cd {top}
3. Installer, hors ligne :
       python3 -m venv /opt/backupctl
       /opt/backupctl/bin/pip install --no-index --find-links wheels --require-hashes -r requirements.txt
   (Debian : `apt-get install python3-venv` si `python3 -m venv` manque.)
{install_fr}4. Restaurer : suivre la fiche de recuperation, etape `backupctl recover`
   (/opt/backupctl/bin/backupctl recover ...).

ENGLISH

This folder holds the backup software backupctl {version}, what is needed to install it on a
new machine WITHOUT Internet access, the description of the repository format (FORMAT.md) and
the guide to installing and to incidents (INSTALL.md).
It holds no patient data: the backups are encrypted, next to it, in the repository.
The packages (wheels/) are for Linux {arch} (glibc 2.36 or newer, Debian 12 or newer) with
Python 3.11.

1. Check the archive. Compare its SHA-256 with the one printed on the paper recovery sheet:
       sha256sum {tar}
   All 64 characters must match the sheet. If they differ: DO NOT INSTALL (the archive was
   changed); take the kit from another repository or medium.
2. Unpack:  tar xf {tar} && cd {top}
3. Install, offline:
       python3 -m venv /opt/backupctl
       /opt/backupctl/bin/pip install --no-index --find-links wheels --require-hashes -r requirements.txt
   (Debian: `apt-get install python3-venv` if `python3 -m venv` is missing.)
{install_en}4. Restore: follow the recovery sheet, step `backupctl recover`
   (/opt/backupctl/bin/backupctl recover ...).
"""


def kit_requirements(lock_text: str, project: str, version: str, wheel_sha256: str) -> str:
    return ("# backupctl rescue kit: every package of this folder's wheels/, each pinned to its SHA-256.\n"
            "# pip install --no-index --find-links wheels --require-hashes -r requirements.txt\n"
            f"{lock_text.rstrip()}\n"
            f"{project}=={version} \\\n"
            f"    --hash=sha256:{wheel_sha256}\n"
            "    # the project itself (backupctl)\n")


def build(root: Path, out: Path) -> Path:
    """Build the kit folder, the tar and its .sha256 under `out`; return the tar's path."""
    with open(root / "pyproject.toml", "rb") as f:
        project = tomllib.load(f)["project"]
    version, name = str(project["version"]), str(project["name"])
    epoch = source_epoch()
    out.mkdir(parents=True, exist_ok=True)
    kit = out / "rescue-kit"
    if kit.exists():
        shutil.rmtree(kit)
    wheels = kit / "wheels"
    wheels.mkdir(parents=True)

    project_wheel = build_project_wheel(root, out, epoch=epoch)
    shutil.copyfile(project_wheel, wheels / project_wheel.name)
    lock = root / "requirements.lock"
    download_wheels(lock, wheels)

    (kit / "requirements.txt").write_text(
        kit_requirements(lock.read_text(), name, version, sha256_file(project_wheel)))
    shutil.copyfile(root / "docs" / "FORMAT.md", kit / "FORMAT.md")
    shutil.copyfile(root / "docs" / "INSTALL.md", kit / "INSTALL.md")
    tar = kit_name(version)
    top = tar.removesuffix(".tar")
    install_sh = root / "scripts" / "install.sh"
    if install_sh.is_file():
        shutil.copyfile(install_sh, kit / "install.sh")
        (kit / "install.sh").chmod(0o755)
    has_script = install_sh.is_file()
    (kit / "READ-ME-FIRST.txt").write_text(READ_ME_FIRST.format(
        version=version, tar=tar, top=top, arch=platform.machine(),
        install_fr=("   Pour l'installation complete du serveur (service, utilisateur, secrets), a la place :\n"
                    "       sudo sh install.sh\n") if has_script else "",
        install_en=("   For the full server install (service, user, secrets), instead:\n"
                    "       sudo sh install.sh\n") if has_script else ""))

    tar_path = out / tar
    deterministic_tar(kit, tar_path, top, mtime=epoch)
    digest = sha256_file(tar_path)
    (out / (tar + ".sha256")).write_text(f"{digest}  {tar}\n")
    return tar_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build backupctl's rescue kit (see the module docstring).")
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="output folder (default: dist/)")
    args = parser.parse_args(argv)
    tar_path = build(ROOT, args.out.resolve())
    print((tar_path.parent / (tar_path.name + ".sha256")).read_text().strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())

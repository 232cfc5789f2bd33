"""scripts/build_kit.py: the rescue kit's tar is byte-identical across builds of the same inputs.

The SHA-256 of the tar is printed on the recovery sheet; a rebuild that changed it (another
mtime, another order of the folder listing, another owner) would make every printed sheet
disagree with the kit in the repositories.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import tarfile
import time
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _build_kit() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_kit", ROOT / "scripts" / "build_kit.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build_kit = _build_kit()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _kit_folder(root: Path, names: list[str], *, mtime: float) -> Path:
    """A kit-like folder whose files are created in the order of `names`, all with `mtime`."""
    folder = root / "rescue-kit"
    (folder / "wheels").mkdir(parents=True)
    contents = {"wheels/b-1.0-py3-none-any.whl": b"wheel b", "wheels/a-2.0-py3-none-any.whl": b"wheel a",
                "requirements.txt": b"a==2.0 --hash=sha256:00\n", "READ-ME-FIRST.txt": b"lisez-moi\n",
                "install.sh": b"#!/bin/sh\necho install\n"}
    for name in names:
        path = folder / name
        path.write_bytes(contents[name])
        os.utime(path, (mtime, mtime))
    (folder / "install.sh").chmod(0o755)
    (folder / "requirements.txt").chmod(0o600)  # a umask of the builder must not leak either
    return folder


def test_two_builds_of_the_same_inputs_give_the_same_sha256(tmp_path: Path) -> None:
    names = ["wheels/b-1.0-py3-none-any.whl", "wheels/a-2.0-py3-none-any.whl", "requirements.txt",
             "READ-ME-FIRST.txt", "install.sh"]
    first = _kit_folder(tmp_path / "one", names, mtime=time.time() - 86400)
    second = _kit_folder(tmp_path / "two", list(reversed(names)), mtime=time.time())
    build_kit.deterministic_tar(first, tmp_path / "one.tar", "backupctl-rescue-kit-9.9", mtime=946684800)
    build_kit.deterministic_tar(second, tmp_path / "two.tar", "backupctl-rescue-kit-9.9", mtime=946684800)
    assert _sha(tmp_path / "one.tar") == _sha(tmp_path / "two.tar")

    with tarfile.open(tmp_path / "one.tar") as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == sorted(m.name for m in members)
    assert members[0].name == "backupctl-rescue-kit-9.9" and members[0].isdir()
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {(946684800, 0, 0, "", "")}
    modes = {m.name.split("/", 1)[-1]: m.mode for m in members}
    assert modes["install.sh"] == 0o755 and modes["requirements.txt"] == 0o644


def test_one_changed_byte_changes_the_sha256(tmp_path: Path) -> None:
    names = ["wheels/b-1.0-py3-none-any.whl", "wheels/a-2.0-py3-none-any.whl", "requirements.txt",
             "READ-ME-FIRST.txt", "install.sh"]
    first = _kit_folder(tmp_path / "one", names, mtime=0)
    second = _kit_folder(tmp_path / "two", names, mtime=0)
    (second / "wheels" / "a-2.0-py3-none-any.whl").write_bytes(b"wheel A")
    build_kit.deterministic_tar(first, tmp_path / "one.tar", "kit", mtime=0)
    build_kit.deterministic_tar(second, tmp_path / "two.tar", "kit", mtime=0)
    assert _sha(tmp_path / "one.tar") != _sha(tmp_path / "two.tar")


def test_a_symlink_is_refused_rather_than_followed(tmp_path: Path) -> None:
    folder = _kit_folder(tmp_path, ["requirements.txt", "READ-ME-FIRST.txt", "install.sh",
                                    "wheels/a-2.0-py3-none-any.whl", "wheels/b-1.0-py3-none-any.whl"], mtime=0)
    (folder / "wheels" / "link.whl").symlink_to("/etc/passwd")
    with pytest.raises(SystemExit, match="neither a file nor a folder"):
        build_kit.deterministic_tar(folder, tmp_path / "kit.tar", "kit", mtime=0)


def test_the_kit_requirements_pin_the_project_wheel_by_its_hash() -> None:
    text = build_kit.kit_requirements("a==1.0 \\\n    --hash=sha256:aa\n", "backupctl-sante", "0.1.0", "ff" * 32)
    assert text.splitlines()[2:] == ["a==1.0 \\", "    --hash=sha256:aa", "backupctl-sante==0.1.0 \\",
                                     f"    --hash=sha256:{'ff' * 32}", "    # the project itself (backupctl)"]


def test_the_distribution_is_not_named_after_the_stranger_on_the_public_index() -> None:
    import tomllib
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == "backupctl-sante"
    assert project["scripts"] == {"backupctl": "agent.cli.main:main"}
    assert build_kit.kit_name(project["version"]) == f"backupctl-rescue-kit-{project['version']}.tar"

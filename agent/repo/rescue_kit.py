"""The rescue kit in every repository: what installs backupctl on a new machine, offline.

`make dist` (scripts/build_kit.py) builds `backupctl-rescue-kit-<version>.tar`: the wheels of
this version and of every dependency, a hash-pinned requirements.txt, FORMAT.md and
READ-ME-FIRST.txt. An installed agent finds it in `<sys.prefix>/share/backupctl/` (the install
script, or `make dist` for a checkout, puts it there) and stores it in each repository, in
clear, under `rescue/` (docs/FORMAT.md section 12.5):

    rescue/backupctl-rescue-kit-<v>.tar          the kit, as built
    rescue/backupctl-rescue-kit-<v>.tar.sha256   its SHA-256, in `sha256sum -c` form
    rescue/FORMAT.md, rescue/READ-ME-FIRST.txt   taken from the kit, readable without a tool
    rescue/backupctl-rescue-kit-<v>.tar.record   encrypted, written last: the kit's SHA-256
                                                 and size, sealed with the repository's key

In clear on purpose: the day the server is gone there is no backupctl to decrypt anything,
and the kit is public software with no patient data. Someone who can write to the storage can
replace the tar and its .sha256; the recovery sheet prints the SHA-256 on paper, and `check`
compares the stored tar with the sealed record, which they cannot forge (docs/SECURITY.md).
On S3 the objects get the same object lock as every other object (agent/storage/s3.py).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

from agent import __version__, clock
from agent.errors import IntegrityError, ObjectNotFound, StorageError
from agent.repo import layout
from agent.repo.repository import Repository

# Where an installed agent keeps its kit: the venv's share/ (the install script copies the
# kit there; `make dist` does for a checkout's .venv). BACKUPCTL_RESCUE_KIT_DIR names another
# folder (the test suite points it away from a developer's .venv, whose kit every test's
# repository would otherwise receive).
KIT_DIR = Path(sys.prefix) / "share" / "backupctl"
KIT_DIR_VARIABLE = "BACKUPCTL_RESCUE_KIT_DIR"
# Reading the stored kit back for `check`: bounded blocks, never the whole tar in memory.
READ_BLOCK = 8 * 1024 * 1024
MAX_KIT_SIZE = 1024 * 1024 * 1024  # a kit is tens of MiB; a larger "installed kit" is refused unread

STORED = "stored"  # this run stored the kit
PRESENT = "present"  # the repository already had this version's kit
NOT_INSTALLED = "not_installed"  # no kit on this machine: nothing stored (a developer checkout)
UNUSABLE = "unusable"  # a file is there but is not a kit: nothing stored


@dataclass(frozen=True)
class KitRecord:
    version: str
    sha256: str
    size: int
    stored: str

    @property
    def file(self) -> str:
        return layout.rescue_kit_file(self.version)

    def encode(self) -> bytes:
        return json.dumps({"kit": self.file, "version": self.version, "sha256": self.sha256,
                           "size": self.size, "stored": self.stored}, indent=1).encode()

    @classmethod
    def decode(cls, version: str, plain: bytes) -> KitRecord:
        try:
            doc = json.loads(plain)
            record = cls(version=str(doc["version"]), sha256=str(doc["sha256"]), size=int(doc["size"]),
                         stored=str(doc["stored"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise IntegrityError(f"rescue kit record of {version}: not a record ({exc})") from None
        if record.version != version or doc.get("kit") != record.file:
            raise IntegrityError(f"rescue kit record of {version}: names another kit ({doc.get('kit')!r})")
        return record


@dataclass(frozen=True)
class KitOutcome:
    state: str  # STORED, PRESENT, NOT_INSTALLED or UNUSABLE
    version: str
    installed: Path  # where the kit was looked for
    record: KitRecord | None = None
    problem: str = ""  # for UNUSABLE: what is wrong with the installed file

    def as_dict(self) -> dict[str, object]:
        return {"state": self.state, "version": self.version, "kit": layout.rescue_kit_name(self.version),
                "sha256": self.record.sha256 if self.record else None, "installed": str(self.installed),
                **({"problem": self.problem} if self.problem else {})}

    def warning(self) -> str | None:
        """The one line a run says when it could not store the kit (None when it could)."""
        if self.state == NOT_INSTALLED:
            return (f"no rescue kit installed ({self.installed} is missing): the repositories get no "
                    f"rescue kit of backupctl {self.version}; run `make dist` in the checkout (or install "
                    f"from the kit with scripts/install.sh), then back up again")
        if self.state == UNUSABLE:
            return f"the installed rescue kit {self.installed} is not stored: {self.problem}"
        return None


def installed_kit(version: str = __version__, directory: Path | None = None) -> Path:
    """Where this version's kit is expected (it may be missing)."""
    folder = directory or Path(os.environ.get(KIT_DIR_VARIABLE) or KIT_DIR)
    return folder / layout.rescue_kit_file(version)


def stored_record(repo: Repository, version: str = __version__) -> KitRecord | None:
    """The sealed record of `version`'s kit, or None when the repository has none."""
    try:
        return KitRecord.decode(version, repo.load_rescue_record(version))
    except ObjectNotFound:
        return None


def ensure_kit(repo: Repository, *, version: str = __version__, directory: Path | None = None) -> KitOutcome:
    """Store this version's kit in `repo` unless it is there: one existence check when it is.

    Nothing here fails the caller's command: a missing or unusable kit is an outcome (to warn
    about), a storage error while storing the kit propagates like any other storage error."""
    path = installed_kit(version, directory)
    if repo.storage.exists(layout.rescue_record_name(version)):
        return KitOutcome(PRESENT, version, path)
    try:
        size = path.stat().st_size
        if size > MAX_KIT_SIZE:
            return KitOutcome(UNUSABLE, version, path, problem=f"{size} bytes, more than any kit")
        data = path.read_bytes()
    except FileNotFoundError:
        return KitOutcome(NOT_INSTALLED, version, path)
    except OSError as exc:
        return KitOutcome(UNUSABLE, version, path, problem=f"cannot be read ({exc.strerror})")
    try:
        plain = _plain_files(data, version)
    except (tarfile.TarError, KeyError) as exc:
        return KitOutcome(UNUSABLE, version, path, problem=f"not a rescue kit ({exc})")
    digest = hashlib.sha256(data).hexdigest()
    kit_name = layout.rescue_kit_name(version)
    # The tar first, the record last: a record exists only for a kit stored whole, and an
    # interrupted run leaves no record, so the next run stores the kit again.
    repo.storage.write(kit_name, data)
    repo.storage.write(kit_name + ".sha256", f"{digest}  {layout.rescue_kit_file(version)}\n".encode())
    repo.storage.write(layout.RESCUE_FORMAT, plain["FORMAT.md"])
    repo.storage.write(layout.RESCUE_README, plain["READ-ME-FIRST.txt"])
    record = KitRecord(version=version, sha256=digest, size=len(data), stored=clock.now().isoformat())
    repo.save_rescue_record(version, record.encode())
    return KitOutcome(STORED, version, path, record=record)


def _plain_files(data: bytes, version: str) -> dict[str, bytes]:
    """FORMAT.md and READ-ME-FIRST.txt out of the kit, to be stored beside it in clear."""
    top = layout.rescue_kit_file(version).removesuffix(".tar")
    found: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        for name in ("FORMAT.md", "READ-ME-FIRST.txt"):
            member = tar.getmember(f"{top}/{name}")
            handle = tar.extractfile(member) if member.isfile() else None
            if handle is None:
                raise KeyError(f"{top}/{name} is not a file")
            found[name] = handle.read()
    return found


@dataclass
class KitCheck:
    errors: list[str]
    warnings: list[str]
    kits: int  # kits whose record opened and whose tar matched it


def check_kits(repo: Repository) -> KitCheck:
    """Compare every stored kit with its sealed record (`check`): a kit replaced in the
    storage, or a record that does not open with this repository's key, is an error. A
    repository with no kit at all is not `check`'s business (its structure is whole):
    `status` warns of it."""
    result = KitCheck(errors=[], warnings=[], kits=0)
    listed = {info.name: info.size for info in repo.storage.list(layout.RESCUE_PREFIX)}
    versions = sorted(v for name in listed if (v := layout.rescue_version_from_record_name(name)) is not None)
    for kit_version in versions:
        name = layout.rescue_kit_name(kit_version)
        try:
            record = KitRecord.decode(kit_version, repo.load_rescue_record(kit_version))
        except (IntegrityError, StorageError) as exc:
            result.errors.append(f"rescue kit {name}: its sealed record does not open with this repository's "
                                 f"key ({exc}): it was not written by backupctl; do not install from this kit")
            continue
        problem = _compare(repo, name, record, listed)
        if problem:
            result.errors.append(f"rescue kit {name}: {problem}; it is not the kit backupctl stored (replaced "
                                 f"in the storage?): do not install from it, the recovery sheet's SHA-256 "
                                 f"({record.sha256}) names the right one")
        else:
            result.kits += 1
    for name in sorted(listed):
        if name.endswith(".tar") and name + layout.RESCUE_RECORD_SUFFIX not in listed:
            result.warnings.append(f"{name} has no sealed record: not stored by backupctl (or its upload "
                                   f"was interrupted); do not install from it")
    return result


def _compare(repo: Repository, name: str, record: KitRecord, listed: dict[str, int]) -> str:
    if name not in listed:
        return "missing from the storage"
    if listed[name] != record.size:
        return f"{listed[name]} bytes stored, {record.size} sealed"
    digest = hashlib.sha256()
    offset = 0
    try:
        while offset < record.size:
            block = repo.storage.read_range(name, offset, min(READ_BLOCK, record.size - offset))
            digest.update(block)
            offset += len(block)
    except (StorageError, IntegrityError) as exc:
        return f"cannot be read ({exc})"
    if digest.hexdigest() != record.sha256:
        return f"SHA-256 {digest.hexdigest()} stored, {record.sha256} sealed"
    try:
        side = repo.storage.read(name + ".sha256", max_size=4096).decode("ascii", "replace").split()
    except (StorageError, IntegrityError):
        side = []
    if not side or side[0] != record.sha256:
        return f"{name}.sha256 does not give the sealed SHA-256"
    return ""


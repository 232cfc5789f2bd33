"""Object names: the only place that builds the keys of stored objects.

    config                      repository config (encrypted)
    keys/<key id hex>           key files (JSON, master key wrapped by Argon2id)
    data/<2 hex>/<pack id hex>  packs; pack id = SHA-256 of the pack's bytes
    index/<index id hex>        index files (encrypted)
    snapshots/<snapshot id hex> snapshots (encrypted)
    locks/<lock id hex>         locks (encrypted; format version 2)
    reports/<report id hex>     restore-test reports (encrypted; format version 3)
    rescue/<kit>.tar ...        the rescue kit: public software, in clear on purpose
                                (agent/repo/rescue_kit.py); its .record is encrypted
"""

from __future__ import annotations

from typing import NewType

ChunkId = NewType("ChunkId", bytes)  # keyed BLAKE3 of a blob's plaintext, 32 bytes
PackId = NewType("PackId", bytes)  # SHA-256 of the pack object, 32 bytes
IndexId = NewType("IndexId", bytes)  # random, 16 bytes
SnapshotId = NewType("SnapshotId", bytes)  # random, 16 bytes
LockId = NewType("LockId", bytes)  # random, 16 bytes
ReportId = NewType("ReportId", bytes)  # random, 16 bytes

CONFIG = "config"
KEYS_PREFIX = "keys/"
DATA_PREFIX = "data/"
INDEX_PREFIX = "index/"
SNAPSHOTS_PREFIX = "snapshots/"
LOCKS_PREFIX = "locks/"
REPORTS_PREFIX = "reports/"
# The one prefix stored in clear, by design: the rescue kit (public software, no patient
# data) must be readable by a person with no tool on the day the server is gone.
RESCUE_PREFIX = "rescue/"
RESCUE_FORMAT = RESCUE_PREFIX + "FORMAT.md"
RESCUE_README = RESCUE_PREFIX + "READ-ME-FIRST.txt"
RESCUE_KIT_STEM = "backupctl-rescue-kit-"
RESCUE_RECORD_SUFFIX = ".record"

# Kinds bound into every object's associated data (docs/FORMAT.md "Associated data").
KIND_CONFIG = 1
KIND_INDEX = 2
KIND_SNAPSHOT = 3
KIND_DATA_BLOB = 4
KIND_TREE_BLOB = 5
KIND_PACK_HEADER = 6
KIND_LOCK = 7
KIND_REPORT = 8
# Format version 4: padded plaintexts get kinds of their own, so that no object of an
# older layout can ever be opened as one of these (docs/FORMAT.md section 4.3).
KIND_DATA_BLOB_V4 = 9
KIND_TREE_BLOB_V4 = 10
KIND_PACK_HEADER_V4 = 11
KIND_PACK_TRAILER_V4 = 12
KIND_INDEX_V4 = 13
# The sealed record of a rescue kit's SHA-256 (any format version: readers ignore rescue/).
KIND_RESCUE_RECORD = 14


def key_name(key_id: bytes) -> str:
    return KEYS_PREFIX + key_id.hex()


def pack_name(pack_id: PackId) -> str:
    hex_id = pack_id.hex()
    return f"{DATA_PREFIX}{hex_id[:2]}/{hex_id}"


def index_name(index_id: IndexId) -> str:
    return INDEX_PREFIX + index_id.hex()


def snapshot_name(snapshot_id: SnapshotId) -> str:
    return SNAPSHOTS_PREFIX + snapshot_id.hex()


def lock_name(lock_id: bytes) -> str:
    return LOCKS_PREFIX + lock_id.hex()


def report_name(report_id: bytes) -> str:
    return REPORTS_PREFIX + report_id.hex()


def rescue_kit_file(version: str) -> str:
    """The kit's file name: the same in dist/, in <venv>/share/backupctl/ and under rescue/."""
    if not version or not all(c.isalnum() or c in ".+-_" for c in version):
        raise ValueError(f"not a version: {version!r}")
    return f"{RESCUE_KIT_STEM}{version}.tar"


def rescue_kit_name(version: str) -> str:
    return RESCUE_PREFIX + rescue_kit_file(version)


def rescue_record_name(version: str) -> str:
    return rescue_kit_name(version) + RESCUE_RECORD_SUFFIX


def rescue_version_from_record_name(name: str) -> str | None:
    """The version a record name is for, or None for any other name under rescue/."""
    stem = name.removeprefix(RESCUE_PREFIX).removesuffix(".tar" + RESCUE_RECORD_SUFFIX)
    version = stem.removeprefix(RESCUE_KIT_STEM)
    try:
        return version if rescue_record_name(version) == name else None
    except ValueError:
        return None


def _id_from_name(name: str, prefix: str, size: int) -> bytes | None:
    tail = name[len(prefix):].rsplit("/", 1)[-1]
    if not name.startswith(prefix) or len(tail) != 2 * size:
        return None
    try:
        return bytes.fromhex(tail)
    except ValueError:
        return None


def pack_id_from_name(name: str) -> PackId | None:
    value = _id_from_name(name, DATA_PREFIX, 32)
    if value is None or pack_name(PackId(value)) != name:
        return None
    return PackId(value)


def index_id_from_name(name: str) -> IndexId | None:
    """The id of an index object, or None for any stray name (which is then ignored)."""
    value = _id_from_name(name, INDEX_PREFIX, 16)
    if value is None or index_name(IndexId(value)) != name:
        return None
    return IndexId(value)


def snapshot_id_from_name(name: str) -> SnapshotId | None:
    """The id of a snapshot object, or None for any stray name (which is then ignored)."""
    value = _id_from_name(name, SNAPSHOTS_PREFIX, 16)
    if value is None or snapshot_name(SnapshotId(value)) != name:
        return None
    return SnapshotId(value)


def lock_id_from_name(name: str) -> LockId | None:
    value = _id_from_name(name, LOCKS_PREFIX, 16)
    if value is None or lock_name(LockId(value)) != name:
        return None
    return LockId(value)


def report_id_from_name(name: str) -> ReportId | None:
    value = _id_from_name(name, REPORTS_PREFIX, 16)
    if value is None or report_name(ReportId(value)) != name:
        return None
    return ReportId(value)

"""The restore-test report as facts: one JSON document, from which the HTML page is drawn.

The page shows nothing that is not in this document, so an auditor's tool reading the JSON
and a person reading the page see the same facts. The document is also what is stored,
encrypted, in the repository (`reports/`, docs/FORMAT.md section 12.4), so the proof is
kept off-site with the data it proves.
"""

from __future__ import annotations

import datetime as _dt
import json
import socket
from typing import Any
from zoneinfo import ZoneInfo

from agent import __version__
from agent.config import Config, RepositorySettings
from agent.engine.compliance import BEFORE, FAIL, coverage
from agent.state.records import Records
from agent.engine.restore_testing import RestoreTestReport
from agent.engine.retention import calendar_periods
from agent.errors import IntegrityError
from agent.repo.repository import Repository
from agent.repo.snapshot import Snapshot, chronological
from agent.reports.facts import Gathered, snapshot_hex
from agent.reports.i18n import row_dict

SCHEMA = "backupctl-restore-test-report/1"
HISTORY_WEEKS = 53  # a year of weekly bars, both ends included
PAST_TESTS_SHOWN = 12  # three years of quarterly tests

CIPHER_NAMES = {"xchacha20-poly1305": "XChaCha20-Poly1305", "aes-256-gcm": "AES-256-GCM"}


def build(config: Config, settings: RepositorySettings, repo: Repository, result: RestoreTestReport,
          gathered: Gathered, *, report_id: bytes, past_tests: list[dict[str, Any]], medium: str | None = None,
          upload_verification: str | None = None) -> dict[str, Any]:
    now = gathered.now
    zone = config.retention.zone
    facts = next(f for f in gathered.repositories if f.name == settings.name)
    snapshots = gathered.snapshots.get(settings.name, [])
    rows = gathered.rows(config)
    language = config.agent.report_language
    this_test = {"report_id": report_id.hex(), **summary(result.as_dict())}
    return {
        "schema": SCHEMA,
        "report_id": report_id.hex(),
        "language": language,
        "generated": now.isoformat(),
        "time_zone": config.retention.timezone,
        "program": f"backupctl {__version__}",
        "practice": config.agent.practice_name,
        "host": config.agent.hostname or socket.gethostname(),
        "repository": describe_repository(settings, repo, medium, upload_verification),
        "algorithms": algorithms(repo),
        "restore_test": result.as_dict(),
        "retention": {
            "policy": {"weekly": config.retention.weekly, "monthly": config.retention.monthly,
                       "yearly": config.retention.yearly},
            "weeks": [p.as_dict() for p in coverage([facts], kind="week", count=config.retention.weekly,
                                                    now=now, zone=zone)],
            "months": [p.as_dict() for p in coverage([facts], kind="month", count=max(12, config.retention.monthly),
                                                     now=now, zone=zone)],
            "years": [p.as_dict() for p in coverage([facts], kind="year", count=config.retention.yearly,
                                                    now=now, zone=zone) if p.state != BEFORE],
        },
        "checks": {kind: _record(Records(config.agent.state_dir, settings.name), kind)
                   for kind in ("check", "read_data_check")},
        "history": {
            "backups": backup_history(snapshots, now=now, zone=zone),
            "restore_tests": (past_tests + [this_test])[-PAST_TESTS_SHOWN:],
        },
        "compliance": {"ok": not any(r.status == FAIL for r in rows),
                       "rules": [row_dict(r, language) for r in rows]},
    }


def summary(restore_test: dict[str, Any]) -> dict[str, Any]:
    """What the history of restore tests keeps of one test."""
    return {"time": restore_test["started"], "ok": restore_test["ok"], "files": restore_test["files"],
            "bytes": restore_test["bytes"], "sha256_verified": restore_test["sha256_verified"],
            "duration_s": round(sum(t["duration_s"] for t in restore_test["tests"]), 3),
            "throughput_mib_s": _throughput(restore_test)}


def _throughput(restore_test: dict[str, Any]) -> float:
    duration = sum(t["duration_s"] for t in restore_test["tests"])
    return round(restore_test["bytes"] / 2**20 / duration, 1) if duration > 0 else 0.0


def describe_repository(settings: RepositorySettings, repo: Repository, medium: str | None,
                        upload_verification: str | None = None) -> dict[str, Any]:
    """`upload_verification`: the mode an S3 endpoint's probe chose (agent/storage/verification.py),
    told by the caller: the reports know no storage."""
    described = {"name": settings.name, "kind": "s3" if settings.s3 else "disks" if settings.media else "local",
                 "repository_id": repo.config.repository_id.hex(), "format_version": repo.config.format_version,
                 "created": repo.config.created, "object_lock": "none", "lock_days": None, "endpoint": None,
                 "bucket": None, "prefix": None, "region": None, "location": None, "medium": None,
                 "upload_verification": None}
    if settings.s3:
        described.update(endpoint=settings.s3.endpoint or "Amazon S3", bucket=settings.s3.bucket,
                         prefix=settings.s3.prefix, region=settings.s3.region, object_lock=settings.s3.object_lock,
                         lock_days=settings.s3.lock_days if settings.s3.object_lock != "none" else None)
        described["upload_verification"] = upload_verification
    else:
        described.update(location=settings.mount, medium=medium)
    return described


def algorithms(repo: Repository) -> dict[str, Any]:
    kdf = repo.kdf_params
    level = repo.config.compression_level
    return {
        "cipher": CIPHER_NAMES.get(repo.config.cipher, repo.config.cipher),
        "kdf": "Argon2id" + (f" (m = {kdf.memory_kib // 1024} MiB, t = {kdf.iterations}, p = {kdf.parallelism})"
                             if kdf else ""),
        "chunk_id": "BLAKE3-256",  # keyed: the page says so in its language
        "file_fingerprint": "SHA-256",
        "pack_name": "SHA-256",
        "compression": {"algorithm": "zstd" if level is not None else "none", "level": level},
    }


def backup_history(snapshots: list[Snapshot], *, now: _dt.datetime, zone: ZoneInfo) -> list[dict[str, Any]]:
    """One entry per ISO week over the last year: the newest snapshot kept of that week
    (its total size and file count), or none."""
    weeks = []
    for name, start, end in calendar_periods("week", now, HISTORY_WEEKS, zone):
        inside = [s for s in snapshots if start <= s.time < end]
        newest = max(inside, key=chronological, default=None)
        weeks.append({"week": name, "start": start.date().isoformat(),
                      "snapshot": snapshot_hex(newest) if newest else None,
                      "time": newest.time.isoformat() if newest else None,
                      "bytes_total": int(newest.summary.get("bytes_total", 0)) if newest else 0,
                      "files": _files(newest.summary) if newest else 0})
    return weeks


def _files(summary: dict[str, Any]) -> int:
    return sum(int(summary.get(k, 0)) for k in ("files_new", "files_changed", "files_unchanged"))


def _record(records: Records, kind: str) -> dict[str, Any] | None:
    event = records.last(kind)
    return None if event is None else {"time": event.time.isoformat(), "ok": event.detail.get("ok")}


def shareable(document: dict[str, Any], *, full_report: str) -> dict[str, Any]:
    """The copy of a report that may leave the server (e-mail, webhook): the same facts
    (verdict, counts, snapshot ids, rule verdicts) without a single file name. A failed
    file's path, and a failed database's message (a database client may quote a row),
    stay in the full report (`full_report`, 0600 on the server) and its encrypted copy."""
    restore_test = document["restore_test"]
    withheld = len(restore_test.get("failures", []))
    return {
        **document,
        "restore_test": {
            **restore_test,
            "failures": [],
            "tests": [{**test, "failures": [], "failures_withheld": len(test.get("failures", []))}
                      for test in restore_test.get("tests", [])],
            "databases": [{**database, "path": "", "problem": None}
                          for database in restore_test.get("databases", [])],
        },
        "shared_copy": {"failures": withheld, "full_report": full_report},
    }


def encode_stored(document: dict[str, Any], html: str) -> bytes:
    """The plaintext of a `reports/` object: the JSON facts and the page, as one JSON."""
    return json.dumps({"document": document, "html": html}, ensure_ascii=False).encode("utf-8")


def decode_stored(plain: bytes, *, what: str) -> tuple[dict[str, Any], str]:
    try:
        doc = json.loads(plain)
    except (ValueError, RecursionError) as exc:
        raise IntegrityError(f"{what}: not a stored report ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("document"), dict) or not isinstance(doc.get("html"), str):
        raise IntegrityError(f"{what}: not a stored report")
    if doc["document"].get("schema") != SCHEMA:
        raise IntegrityError(f"{what}: unknown report schema {doc['document'].get('schema')!r}")
    return doc["document"], doc["html"]

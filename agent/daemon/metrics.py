"""The metrics of this server for a fleet's monitoring (Prometheus), from the state directory
alone: no passphrase, no network, no repository opened.

`read_facts` reads what the commands and the daemon left in the state directory (the jobs'
record, each repository's records and inventory: agent/engine/inventory.py, the audit
trail); `families` turns those facts into metric families, purely. The exposition format,
the textfile and the loopback HTTP server are agent/daemon/metrics_export.py's.

Conventions (docs/REFERENCE.md, "Metrics"): every name starts with `backupctl_`; times are
Unix timestamps in `_timestamp_seconds` (0: never happened), sizes in `_bytes`; labels are
`repository` (its name in the configuration), `task` (the daemon's job: weekly, daily, check,
restore-test; not `job`, which Prometheus sets to the scrape's),
`tier`, `rule`, `state`, `risk`, `mode`, `version`: never a path or a file name.
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass, field
from typing import Any, Callable

from agent import __version__
from agent.config import Config
from agent.daemon.jobs import BACKUP_SAVED, JobRecord
from agent.daemon.status import daemon_state, repository_risks
from agent.engine.alarm import open_alarm
from agent.engine.compliance import FAIL, OK, WARN, RepositoryFacts, Row, assess
from agent.engine.installation_copy import TAG as BEFORE_INSTALLATION, InstallationFacts, read_last_change
from agent.engine.inventory import INVENTORY_RECORD
from agent.engine.retention import RetentionPolicy, apply_policy
from agent.errors import BackupctlError, IntegrityError
from agent.reports.facts import DISK_ROTATION_WINDOW
from agent.reports.i18n import RISKS
from agent.state import media
from agent.state.alarm_state import ALARM_RECORD, acknowledged
from agent.state.audit import AuditTrail
from agent.state.records import Event, Records, restore_test_outcome
from agent.storage.options import LOCK_MODES

TIERS = (("daily", "newest of day "), ("weekly", "newest of ISO week "), ("monthly", "newest of month "),
         ("yearly", "newest of year "))
RULE_STATES = (OK, WARN, FAIL)
LEVELS = {OK: 0, WARN: 1, FAIL: 2}
# The obligations `status` judges per repository (agent.state.records.Risk codes); the
# service-wide one (the daemon stopped) is backupctl_daemon_up.
RISK_CODES = tuple(sorted(code for code in RISKS["en"] if code != "daemon_stopped"))
NO_INVENTORY = "no inventory yet: a backup, check or prune of this repository notes one"


@dataclass(frozen=True)
class Family:
    """One metric: its name, help text, label names and samples (label values, value)."""

    name: str
    help: str
    labels: tuple[str, ...] = ()
    samples: list[tuple[tuple[str, ...], float]] = field(default_factory=list)


@dataclass
class RepositoryState:
    name: str
    kind: str  # "local", "s3", "disks"
    object_lock: str
    backup: Event | None = None
    check: Event | None = None
    restore_test: Event | None = None
    inventory: Event | None = None
    ransomware_open: bool = False
    risks: list[str] = field(default_factory=list)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)  # by kind (the `task` label): weekly, ...


@dataclass
class Facts:
    now: _dt.datetime
    daemon_up: bool
    repositories: list[RepositoryState]
    rules: list[Row]
    retention: RetentionPolicy


def read_facts(config: Config, now: _dt.datetime, *, daemon_up: bool | None = None) -> Facts:
    """What the state directory says now. `daemon_up`: given by the daemon itself (True
    while it runs, False as it stops); else whether a daemon holds the state_dir's lock."""
    state_dir = config.agent.state_dir
    jobs = JobRecord(state_dir).load()
    repositories = []
    for settings in config.repositories:
        records = Records(state_dir, settings.name)
        alarm = records.last(ALARM_RECORD)  # detail "open": true while the alarm stands
        repositories.append(RepositoryState(
            settings.name, "s3" if settings.s3 else "disks" if settings.media else "local",
            settings.s3.object_lock if settings.s3 else "none",
            backup=records.last("backup"), check=records.last("check"), restore_test=records.last("restore_test"),
            inventory=records.last(INVENTORY_RECORD),
            ransomware_open=alarm is not None and alarm.detail.get("open") is True,
            risks=[r.code for r in repository_risks(config, settings.name, now)],
            jobs={job_id.partition(":")[0]: entry for job_id, entry in jobs.items()
                  if isinstance(entry, dict) and job_id.partition(":")[2] == settings.name}))
    if daemon_up is None:
        daemon_up = daemon_state(state_dir)["running"] is True
    judged = [_compliance_facts(config, r, now) for r in repositories]
    rules = assess(judged, now=now, zone=config.retention.zone, yearly=config.retention.yearly,
                   audit=_audit(state_dir), recovery_sheet=_recovery_sheet(config),
                   installation=_installation(config, repositories, judged))
    return Facts(now, daemon_up, repositories, rules, config.retention)


def _compliance_facts(config: Config, repository: RepositoryState, now: _dt.datetime) -> RepositoryFacts:
    """What agent.reports.facts.gather reads from an open repository, read from its inventory."""
    fact = RepositoryFacts(repository.name, repository.kind, object_lock=repository.object_lock)
    fact.last_restore_test = restore_test_outcome(repository.restore_test)
    inventory = repository.inventory
    if inventory is None:
        fact.unavailable = NO_INVENTORY
    else:
        fact.cipher = inventory.detail.get("cipher")
        fact.created = _time(inventory.detail.get("created"))
        fact.snapshots = [(s["id"], t) for s in _snapshots(inventory) if (t := _time(s.get("time")))]
        found = open_alarm(_kept(inventory), acknowledged(Records(config.agent.state_dir, repository.name)))
        fact.alarm = (found.suspects[0], found.last_good) if found is not None else None
    if repository.kind == "disks":
        seen = media.MediaState(config.agent.state_dir, repository.name).record().get("media", {})
        fact.disks_used_last_4_weeks = sum(1 for e in seen.values() if isinstance(e, dict)
                                           and (t := _time(e.get("last_backup"))) and t >= now - DISK_ROTATION_WINDOW)
    return fact


def _installation(config: Config, repositories: list[RepositoryState],
                  judged: list[RepositoryFacts]) -> InstallationFacts:
    """Rule S5 as agent.reports.facts.installation_facts judges it, the copies read from the
    inventories instead of the repositories."""
    facts = InstallationFacts(config.agent.dpkg_log)
    read_last_change(facts)
    facts.copies = [(r.name, k.id.hex(), k.time) for r in repositories if r.inventory is not None
                    for k in _kept(r.inventory) if k.id is not None and BEFORE_INSTALLATION in k.tags]
    facts.unreadable = [r.name for r in judged if r.unavailable is not None]
    return facts


def _audit(state_dir: str) -> dict[str, Any] | None:
    """As agent.reports.facts.gather judges the trail (rule T2)."""
    trail = AuditTrail(state_dir)
    if not os.path.exists(trail.path):
        return None
    try:
        return {"intact": True, **trail.verify()}
    except IntegrityError as exc:
        return {"intact": False, "records": "?", "first": None, "problem": str(exc)}
    except BackupctlError:
        return {"intact": False, "records": "?", "first": None, "problem": "not readable"}


def _recovery_sheet(config: Config) -> _dt.datetime | None:
    sheets = [Records(config.agent.state_dir, r.name).last("recovery_sheet") for r in config.repositories]
    return max((s.time for s in sheets if s is not None), default=None)


def _snapshots(inventory: Event) -> list[dict[str, Any]]:
    found = inventory.detail.get("snapshots")
    return [s for s in found if isinstance(s, dict) and isinstance(s.get("id"), str)] if isinstance(found, list) else []


def _time(text: object) -> _dt.datetime | None:
    if not isinstance(text, str):
        return None
    try:
        moment = _dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=_dt.timezone.utc)


# ---- facts -> metric families (pure) --------------------------------------------------------

@dataclass
class _Kept:
    """An inventory entry as retention sees a snapshot (agent.engine.retention.SnapshotLike)."""

    id: bytes | None
    time: _dt.datetime
    host: str  # the digest of host and paths: the groups are the same
    paths: list[str]
    tags: list[str]


def snapshots_per_tier(inventory: Event, policy: RetentionPolicy, now: _dt.datetime) -> dict[str, int]:
    """How many snapshots the retention policy keeps for each tier (one snapshot may count
    in several: the newest of a week is often the newest of its month too)."""
    counts = dict.fromkeys((tier for tier, _ in TIERS), 0)
    for decision in apply_policy(_kept(inventory), policy, now=now):
        for tier, prefix in TIERS:
            counts[tier] += any(reason.startswith(prefix) for reason in decision.reasons)
    return counts


def _kept(inventory: Event) -> list[_Kept]:
    """The inventory's snapshots as retention and the alarm see them, oldest first."""
    return [_Kept(bytes.fromhex(s["id"]), t, str(s.get("group", "")), [], [str(x) for x in s.get("tags") or []])
            for s in _snapshots(inventory) if (t := _time(s.get("time"))) is not None]


def _ts(moment: _dt.datetime | None) -> float:
    return moment.timestamp() if moment is not None else 0.0


def families(facts: Facts) -> list[Family]:
    out: dict[str, Family] = {}

    def add(name: str, help_: str, labels: tuple[str, ...], values: tuple[str, ...], value: float) -> None:
        family = out.setdefault(name, Family(name, help_, labels))
        family.samples.append((values, float(value)))

    add("backupctl_info", "The agent's version (value 1).", ("version",), (__version__,), 1)
    add("backupctl_daemon_up", "1 while the backupctl daemon runs (its scheduled jobs run), 0 otherwise.",
        (), (), int(facts.daemon_up))
    add("backupctl_metrics_timestamp_seconds", "When these metrics were computed (the daemon's heartbeat: "
        "every minute while it runs).", (), (), _ts(facts.now))
    for rule in facts.rules:
        for state in RULE_STATES:
            add("backupctl_compliance_rule_state", "Compliance rule state (docs/COMPLIANCE.md), one-hot: "
                "1 for the rule's current state (OK, WARN or FAIL).", ("rule", "state"), (rule.rule, state),
                int(rule.status == state))
        add("backupctl_compliance_rule_level", "Compliance rule state as a number: 0 OK, 1 WARN, 2 FAIL.",
            ("rule",), (rule.rule,), LEVELS.get(rule.status, 2))
    for repo in facts.repositories:
        _repository_families(add, repo, facts)
    return list(out.values())


Adder = Callable[[str, str, tuple[str, ...], tuple[str, ...], float], None]


def _repository_families(add: Adder, repo: RepositoryState, facts: Facts) -> None:
    name = (repo.name,)
    r = ("repository",)
    backup, check, test = repo.backup, repo.check, repo.restore_test
    add("backupctl_last_backup_timestamp_seconds", "Time of the last snapshot saved (0: none yet).", r, name,
        _ts(backup.time if backup else None))
    add("backupctl_last_backup_partial", "1 when the last snapshot was saved with files left out.", r, name,
        int(bool(backup and backup.detail.get("partial"))))
    add("backupctl_last_check_timestamp_seconds", "Time of the last check (0: none yet).", r, name,
        _ts(check.time if check else None))
    add("backupctl_last_check_success", "1 when the last check found no damage, 0 when it found some or none "
        "was made.", r, name, int(bool(check and check.detail.get("ok") is True)))
    add("backupctl_last_restore_test_timestamp_seconds", "Time of the last restore test (0: none yet).", r, name,
        _ts(test.time if test else None))
    add("backupctl_last_restore_test_success", "1 when the last restore test passed (SHA-256 of every file "
        "compared), 0 when it failed or none was made.", r, name, int(bool(test and test.detail.get("ok") is True)))
    add("backupctl_ransomware_suspected", "1 while a suspected ransomware event is open for the repository.", r,
        name, int(repo.ransomware_open))
    for mode in LOCK_MODES:
        add("backupctl_object_lock_mode", "The repository's S3 object-lock mode, one-hot (none for a local "
            "repository or disks).", ("repository", "mode"), (repo.name, mode), int(repo.object_lock == mode))
    for code in RISK_CODES:
        add("backupctl_obligation_at_risk", "1 for each obligation `backupctl status` says is at risk "
            "(risk: its code, docs/REFERENCE.md).", ("repository", "risk"), (repo.name, code),
            int(code in repo.risks))
    inventory = repo.inventory
    if inventory is not None:
        detail = inventory.detail
        add("backupctl_inventory_timestamp_seconds", "When the repository's inventory (size, snapshots) was "
            "last taken, by a backup, check, prune, repair or restore test.", r, name, _ts(inventory.time))
        add("backupctl_repository_size_bytes", "Bytes of the repository's packs (its stored data).", r, name,
            float(detail.get("size_bytes") or 0))
        add("backupctl_repository_packs", "Number of the repository's packs.", r, name,
            float(detail.get("packs") or 0))
        add("backupctl_snapshots", "Number of snapshots in the repository.", r, name,
            float(len(_snapshots(inventory))))
        for tier, count in snapshots_per_tier(inventory, facts.retention, facts.now).items():
            add("backupctl_snapshots_kept", "Snapshots the retention policy keeps for each tier (daily, weekly, "
                "monthly, yearly).", ("repository", "tier"), (repo.name, tier), count)
        latest = detail.get("latest") if isinstance(detail.get("latest"), dict) else None
        if latest is not None:
            files = sum(int(latest.get(k) or 0) for k in ("files_new", "files_changed", "files_unchanged"))
            add("backupctl_backup_last_files", "Files in the newest snapshot.", r, name, files)
            add("backupctl_backup_last_bytes", "Bytes of the files in the newest snapshot.", r, name,
                float(latest.get("bytes_total") or 0))
            add("backupctl_backup_last_added_bytes", "Bytes the newest snapshot added to the repository "
                "(after deduplication and compression).", r, name, float(latest.get("bytes_added") or 0))
            add("backupctl_backup_last_duration_seconds", "How long the newest snapshot's backup took.", r, name,
                float(latest.get("duration_s") or 0))
            add("backupctl_backup_last_warnings", "Warnings of the newest snapshot (files not read, failed "
                "dumps or hooks).", r, name, float(latest.get("warnings") or 0))
    for kind, entry in sorted(repo.jobs.items()):
        labels = (repo.name, kind)
        rj = ("repository", "task")
        last_run, last_success = _time(entry.get("last_run")), _time(entry.get("last_success"))
        codes = [c for c in entry.get("last_exit") or [] if isinstance(c, int)]
        # the failing step's code; else a backup's 3 (saved with warnings); else 0
        failing = next((c for c in codes if c not in BACKUP_SAVED), next((c for c in codes if c), 0))
        steps = [s for s in entry.get("steps") or [] if isinstance(s, dict)]
        add("backupctl_job_last_run_timestamp_seconds", "When the daemon's job last started.", rj, labels,
            _ts(last_run))
        add("backupctl_job_last_success_timestamp_seconds", "When the daemon's job last succeeded (0: never).",
            rj, labels, _ts(last_success))
        add("backupctl_job_last_run_success", "1 when the job's last run succeeded, 0 when it failed.", rj, labels,
            int(last_run is not None and last_run == last_success))
        add("backupctl_job_last_exit_code", "The exit code of the job's last run: its failing step's, "
            "else 3 for a backup saved with warnings, else 0 (docs/REFERENCE.md).", rj, labels, failing)
        add("backupctl_job_last_duration_seconds", "How long the job's last run took (all its steps).", rj,
            labels, sum(float(s.get("seconds") or 0) for s in steps))

"""Gathering what the compliance table judges, from every configured repository and the
state directory. The judging is pure (agent.engine.compliance); this is the part that
reads: repositories (through the caller's `open_repository`, which knows the passphrase
and the mounted disk), restore-test records, disks' use and the audit trail.
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass, field
from typing import Any, Callable

from agent import clock
from agent.state.audit import AuditTrail
from agent.config import Config
from agent.state import media
from agent.engine.compliance import RepositoryFacts, Row, assess
from agent.engine.installation_copy import TAG as BEFORE_INSTALLATION, InstallationFacts, read_last_change
from agent.state.records import Records, restore_test_outcome
from agent.engine.alarm import open_alarm
from agent.state.alarm_state import acknowledged
from agent.errors import BackupctlError, IntegrityError
from agent.repo.repository import Repository
from agent.repo.snapshot import Snapshot

DISK_ROTATION_WINDOW = _dt.timedelta(days=28)


@dataclass
class Gathered:
    now: _dt.datetime
    repositories: list[RepositoryFacts]
    snapshots: dict[str, list[Snapshot]] = field(default_factory=dict)  # by repository name, oldest first
    audit: dict[str, Any] | None = None
    recovery_sheet: _dt.datetime | None = None
    installation: InstallationFacts | None = None  # rule S5

    def rows(self, config: Config) -> list[Row]:
        return assess(self.repositories, now=self.now, zone=config.retention.zone, yearly=config.retention.yearly,
                      audit=self.audit, recovery_sheet=self.recovery_sheet, installation=self.installation)


def snapshot_hex(snapshot: Snapshot) -> str:
    """The id of a snapshot read from a repository (Repository.snapshots gives each its id;
    only a snapshot still being written has none)."""
    assert snapshot.id is not None, "a snapshot read from a repository has its id"
    return snapshot.id.hex()


def gather(config: Config, open_repository: Callable[[str], Repository], *,
           opened: dict[str, Repository] | None = None) -> Gathered:
    """Facts of every configured repository; one that cannot be opened now (a disk not
    mounted, a network down) is described as unavailable instead of failing the table.
    `opened`: repositories the caller already has open, by name (not opened twice)."""
    now = clock.now()
    gathered = Gathered(now, [])
    for settings in config.repositories:
        fact = RepositoryFacts(settings.name, "s3" if settings.s3 else "disks" if settings.media else "local",
                               object_lock=settings.s3.object_lock if settings.s3 else "none")
        try:
            repo = (opened or {}).get(settings.name) or open_repository(settings.name)
            snapshots = repo.snapshots()
            fact.cipher = repo.config.cipher
            fact.created = clock.parse_iso(repo.config.created) if repo.config.created else None
            fact.snapshots = [(snapshot_hex(s), s.time) for s in snapshots]
            found = open_alarm(snapshots, acknowledged(Records(config.agent.state_dir, settings.name)))
            fact.alarm = (found.suspects[0], found.last_good) if found is not None else None
            gathered.snapshots[settings.name] = snapshots
        except BackupctlError as exc:
            fact.unavailable = exc.one_line()
        test = Records(config.agent.state_dir, settings.name).last("restore_test")
        fact.last_restore_test = restore_test_outcome(test)
        if settings.media:
            seen = media.MediaState(config.agent.state_dir, settings.name).record().get("media", {})
            recent = now - DISK_ROTATION_WINDOW
            fact.disks_used_last_4_weeks = sum(
                1 for entry in seen.values()
                if entry.get("last_backup") and _dt.datetime.fromisoformat(entry["last_backup"]) >= recent)
        gathered.repositories.append(fact)
    trail = AuditTrail(config.agent.state_dir)
    if os.path.exists(trail.path):
        try:
            gathered.audit = {"intact": True, **trail.verify()}
        except IntegrityError as exc:
            gathered.audit = {"intact": False, "records": "?", "first": None, "problem": str(exc)}
    sheets = [Records(config.agent.state_dir, r.name).last("recovery_sheet") for r in config.repositories]
    gathered.recovery_sheet = max((s.time for s in sheets if s is not None), default=None)
    gathered.installation = installation_facts(config, gathered)
    return gathered


def installation_facts(config: Config, gathered: Gathered) -> InstallationFacts:
    """Rule S5: dpkg's last package change, and the snapshots tagged before installations."""
    facts = InstallationFacts(config.agent.dpkg_log)
    read_last_change(facts)
    facts.copies = [(name, snapshot_hex(s), s.time) for name, snapshots in gathered.snapshots.items()
                    for s in snapshots if BEFORE_INSTALLATION in s.tags]
    facts.unreadable = [r.name for r in gathered.repositories if r.unavailable is not None]
    return facts

"""Where each file of the state directory lives: the one place that builds their paths.

The state directory ([agent] state_dir, /var/lib/backupctl by default) holds what this
machine knows and the repositories do not: records, ledgers, caches, the audit trail, the
daemon's job store. Nothing in it is needed to restore (the repository and the passphrase
suffice); losing it loses history and speed, never backups. Its tree:

    records/<repository name>.json        last backup, check, restore test, probe (records.py)
    ledger/<repository id>.json           the snapshots seen, to notice deletions (ledger.py)
    keys.json                             which key file opened each repository (known_keys.py)
    media/<set>/set-key.json              a disk set's master key, wrapped (media.py)
    media/<set>/record.json               which disk was used and verified when (media.py)
    audit.jsonl, audit.head               the hash-chained audit trail and its head (audit.py)
    cache/<repository id>/files.sqlite    the files cache of backups (files_cache.py)
    cache/<repository id>/lock-dates.json   when each pack's object lock ends (engine/lock_dates.py)
    cache/<repository id>/repository/     a copy of an S3 repository's metadata (repo/cache.py)
    credentials/                          a database client's password file while it runs
    restore-test/                         the quarterly restore test's scratch folder
    restore-test-databases/               the throwaway database servers of that test
    reports/                              restore-test reports, unless [agent] report_dir
    daemon/daemon.lock                    held by the one daemon of this state directory
    daemon/schedule.sqlite                the scheduler's job store
    daemon/jobs.json                      each job's last run, success and exit code
    daemon/alerts.json                    which alerts were sent, to send each once
    daemon/config.sha256                  the configuration the daemon last started with

Folders are created 0700 and files 0600 by the modules that write them (files.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class StateLayout:
    root: str  # the state directory itself

    def _path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    # -- per repository (by name: records; by id: what must not follow a renamed entry)

    def records(self, repository_name: str) -> str:
        return self._path("records", f"{repository_name}.json")

    def ledger(self, repository_id: bytes) -> str:
        return self._path("ledger", f"{repository_id.hex()}.json")

    def cache_root(self) -> str:
        return self._path("cache")

    def repository_cache(self, repository_id: bytes) -> str:
        return self._path("cache", repository_id.hex())

    def files_cache(self, repository_id: bytes) -> str:
        return os.path.join(self.repository_cache(repository_id), "files.sqlite")

    def lock_dates(self, repository_id: bytes) -> str:
        return os.path.join(self.repository_cache(repository_id), "lock-dates.json")

    # -- keys, disks, trail

    def known_keys(self) -> str:
        return self._path("keys.json")

    def media_set(self, set_name: str) -> str:
        return self._path("media", set_name)

    def audit_trail(self) -> str:
        return self._path("audit.jsonl")

    def audit_head(self) -> str:
        return self._path("audit.head")

    # -- restore tests and database dumps

    def credentials(self) -> str:
        return self._path("credentials")

    def restore_test_scratch(self) -> str:
        return self._path("restore-test")

    def restore_test_databases(self) -> str:
        return self._path("restore-test-databases")

    def reports(self) -> str:
        return self._path("reports")

    # -- the daemon

    def daemon(self) -> str:
        return self._path("daemon")

    def daemon_lock(self) -> str:
        return self._path("daemon", "daemon.lock")

    def job_store(self) -> str:
        return self._path("daemon", "schedule.sqlite")

    def job_record(self) -> str:
        return self._path("daemon", "jobs.json")

    def alert_record(self) -> str:
        return self._path("daemon", "alerts.json")

    def daemon_config_fingerprint(self) -> str:
        return self._path("daemon", "config.sha256")

"""`backupctl daemon`: the scheduler process (systemd Type=notify service).

* One daemon per state_dir (an flock on state_dir/daemon/daemon.lock).
* Jobs persist in an APScheduler SQLite job store (state_dir/daemon/schedule.sqlite); a
  job whose schedule did not change keeps its stored next run, so runs missed while the
  server was off are run (coalesced into one) when it starts again. On top of that,
  agent.daemon.schedule.catch_ups runs at once any job whose latest scheduled run has
  not succeeded (interrupted, failed, or a fresh install).
* One job at a time (a one-thread executor, and the runner's own lock).
* SIGTERM/SIGINT: the running command gets SIGTERM (it keeps what it stored and exits),
  the scheduler stops, the daemon exits 0; the interrupted job is caught up next start.
* SIGHUP: the configuration is read again and the jobs rescheduled. `backupctl daemon
  --reload` (the unit's ExecReload=) checks the configuration the same way first
  (check_config) and sends the SIGHUP only when it would be taken.
* sd_notify: READY=1 once scheduled, STATUS= with the last failure (until that job next
  succeeds) and the next run, WATCHDOG=1 when asked.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import hashlib
import logging
import os
import signal
import threading
import time
from types import FrameType
from typing import TextIO

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler

from agent import clock, timefmt
from agent import config as config_module
from agent.state.audit import AuditTrail
from agent.daemon import jobs, metrics_export, notify
from agent.daemon.outcomes import meaning
from agent.daemon.schedule import catch_ups, planned_jobs
from agent.state.records import Records
from agent.errors import AlreadyRunning, ConfigError, StateDirError, UsageError
from agent.state.files import write_private
from agent.state.layout import StateLayout

log = logging.getLogger("backupctl.daemon")
JOB_FUNCTION = "agent.daemon.jobs:run_job"
HEARTBEAT = 60  # seconds between two writes of the metrics' textfile (the loop wakes at least this often)


def check_config(config_path: str) -> config_module.Config:
    """The configuration as the daemon takes it (parsed, and its schedule planned), or
    ConfigError with the one-line reason: the same check at a reload and before one."""
    config = config_module.load(config_path)
    try:
        planned_jobs(config)
    except ValueError as exc:  # a trigger APScheduler refuses
        raise ConfigError(f"{config_path}: [schedule]: {exc}") from None
    return config


def reload_daemon(config_path: str, pid: int | None) -> int:
    """`backupctl daemon --reload [PID]`: refuse a configuration the daemon would refuse
    (ConfigError, exit 2: the daemon keeps running its schedule), else SIGHUP the daemon
    (PID, or the one holding state_dir/daemon/daemon.lock). Returns the pid signalled."""
    config = check_config(config_path)
    if pid is None:
        pid = running_daemon(config.agent.state_dir)
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        raise UsageError(f"no process {pid}: the daemon is not running",
                         hint="start it (systemctl start backupctl) instead of reloading it") from None
    except PermissionError:
        raise UsageError(f"process {pid} cannot be signalled by this user",
                         hint="run the reload as the daemon's user (systemctl reload backupctl)") from None
    return pid


def running_daemon(state_dir: str) -> int:
    """The pid of the daemon that holds state_dir/daemon/daemon.lock (UsageError if none)."""
    path = StateLayout(state_dir).daemon_lock()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        fd = None
    if fd is not None:
        with open(fd, encoding="ascii") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:  # held: a daemon runs, and its pid is in the file
                text = handle.read().strip()
                if text.isdigit() and int(text) > 1:
                    return int(text)
    raise UsageError(f"no backupctl daemon runs for {state_dir}",
                     hint="start it (backupctl daemon, or systemctl start backupctl) instead of reloading it")


class Daemon:
    def __init__(self, config_path: str) -> None:
        self.config_path = config_path
        self.config = config_module.load(config_path)
        self.layout = StateLayout(self.config.agent.state_dir)
        self.folder = self.layout.daemon()
        self._wake = threading.Event()
        self._stop = False
        self._reload = False
        self._lock_handle: TextIO | None = None
        self._last_heartbeat = 0.0
        self._metrics_server: metrics_export.Server | None = None

    # ---- life cycle ------------------------------------------------------------------

    def run(self) -> None:
        """Run the schedule until SIGTERM or SIGINT; returns once everything stopped."""
        self._single_instance()
        runner = jobs.JobRunner(self.config_path, self.config.agent.state_dir)
        jobs.install(runner, self.config)
        scheduler = BackgroundScheduler(
            jobstores={"default": SQLAlchemyJobStore(url=f"sqlite:///{self.layout.job_store()}"),
                       "catch_up": MemoryJobStore()},
            executors={"default": ThreadPoolExecutor(1)},
            job_defaults={"coalesce": True, "max_instances": 1,
                          "misfire_grace_time": self.config.schedule.catch_up_days * 86400},
            timezone=self.config.retention.zone,
        )
        previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, self._on_stop),
                    signal.SIGINT: signal.signal(signal.SIGINT, self._on_stop),
                    signal.SIGHUP: signal.signal(signal.SIGHUP, self._on_reload)}
        scheduler.add_listener(lambda _event: self._wake.set())
        scheduler.start(paused=True)
        try:
            self._reschedule(scheduler)
            scheduler.resume()
            notify.notify("READY=1")
            notify.notify(f"STATUS={self.status_text(scheduler)}")  # a failure recorded before this start
            log.info("daemon started (pid %s)", os.getpid())
            self._metrics_server = self._start_metrics()
            self._loop(scheduler, runner)
        finally:
            notify.notify("STOPPING=1")
            runner.terminate_child()
            scheduler.shutdown(wait=True)
            self._stop_metrics(self._metrics_server)
            for number, handler in previous.items():
                signal.signal(number, handler)
            log.info("daemon stopped")

    def _loop(self, scheduler: BackgroundScheduler, runner: jobs.JobRunner) -> None:
        interval = notify.watchdog_interval()
        while not self._stop:
            self._wake.wait(timeout=interval or 60)
            self._wake.clear()
            if interval:
                notify.notify("WATCHDOG=1")
            if self._stop:
                break
            if self._reload:
                self._reload = False
                try:
                    previous_listen = self.config.metrics.listen
                    self.config = check_config(self.config_path)
                    jobs.install(runner, self.config)
                    self._reschedule(scheduler)
                    if self.config.metrics.listen != previous_listen:  # served where the new one says
                        self._stop_server(self._metrics_server)
                        self._metrics_server = self._serve_metrics()
                    self._heartbeat(force=True)  # a new textfile_dir at once
                    log.info("configuration reloaded")
                except ConfigError as exc:  # keep the running schedule; say why
                    log.error("configuration not reloaded: %s", exc.one_line())
            notify.notify(f"STATUS={self.status_text(scheduler)}")
            self._heartbeat()

    # ---- metrics ([metrics]: agent/daemon/metrics_export.py) ---------------------------

    def _start_metrics(self) -> metrics_export.Server | None:
        """At start: the textfile (backupctl_daemon_up 1), and the loopback server."""
        self._heartbeat(force=True)
        return self._serve_metrics()

    def _serve_metrics(self) -> metrics_export.Server | None:
        """A port taken does not stop the backups: logged, and the textfile still written."""
        try:
            return metrics_export.serve(self.config, lambda: self.config)
        except StateDirError as exc:
            log.error("metrics not served: %s", exc.one_line())
            return None

    def _heartbeat(self, *, force: bool = False) -> None:
        """The textfile again, at most every HEARTBEAT seconds (its timestamp is what a
        fleet's "metrics stale" alert watches); jobs write it as they end (jobs.run_job)."""
        moment = time.monotonic()
        if force or moment - self._last_heartbeat >= HEARTBEAT:
            self._last_heartbeat = moment
            metrics_export.publish(self.config, daemon_up=True)

    def _stop_metrics(self, server: metrics_export.Server | None) -> None:
        """A clean stop says so (backupctl_daemon_up 0): "daemon down", not "metrics stale"."""
        self._stop_server(server)
        metrics_export.publish(self.config, daemon_up=False)

    @staticmethod
    def _stop_server(server: metrics_export.Server | None) -> None:
        if server is not None:
            server.stop()

    def _on_stop(self, _signum: int, _frame: FrameType | None) -> None:
        self._stop = True
        if jobs._runner is not None:
            jobs._runner.terminate_child()
        self._wake.set()

    def _on_reload(self, _signum: int, _frame: FrameType | None) -> None:
        self._reload = True
        self._wake.set()

    def _single_instance(self) -> None:
        try:
            os.makedirs(self.folder, mode=0o700, exist_ok=True)
            # O_NOFOLLOW: the lock file is never a link planted in a folder someone else could write.
            fd = os.open(self.layout.daemon_lock(), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
            handle = open(fd, "r+", encoding="ascii")
        except OSError as exc:
            raise StateDirError(f"{self.folder} cannot be written ({exc.strerror})") from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            pid = handle.read().strip() or "?"
            handle.close()
            raise AlreadyRunning(
                f"a backupctl daemon already runs for {self.config.agent.state_dir} (pid {pid})") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._lock_handle = handle  # held until the process exits

    # ---- jobs --------------------------------------------------------------------------

    def _note_config(self) -> None:
        """Rule T1: a change of the configuration is traced (its SHA-256, at start and reload)."""
        with open(self.config_path, "rb") as handle:
            digest = hashlib.sha256(handle.read()).hexdigest()
        marker = self.layout.daemon_config_fingerprint()
        try:
            with open(marker, encoding="ascii") as handle:
                known = handle.read().strip()
        except OSError:
            known = None
        if known != digest:
            AuditTrail(self.config.agent.state_dir).append("config_changed", config=self.config_path,
                                                          sha256=digest, previous_sha256=known)
            write_private(marker, digest.encode("ascii"))

    def _reschedule(self, scheduler: BackgroundScheduler) -> None:
        self._note_config()
        planned = planned_jobs(self.config)
        wanted = {job.job_id for job in planned}
        for existing in scheduler.get_jobs(jobstore="default"):
            if existing.id not in wanted:
                existing.remove()
        for job in planned:
            existing = scheduler.get_job(job.job_id, jobstore="default")
            if existing is not None and str(existing.trigger) == str(job.trigger):
                continue  # keep its stored next run: that is how missed runs are caught up
            scheduler.add_job(JOB_FUNCTION, job.trigger, id=job.job_id, name=job.describe(), args=[job.job_id],
                              jobstore="default", replace_existing=True)
        now = clock.now()
        succeeded = jobs.JobRecord(self.config.agent.state_dir).last_success()
        for name in {job.repository for job in planned}:  # a restore test run by hand counts too
            test = Records(self.config.agent.state_dir, name).last("restore_test")
            key = f"restore-test:{name}"
            if test is not None and test.detail.get("ok") and (key not in succeeded or succeeded[key] < test.time):
                succeeded[key] = test.time
        # Backups first, then checks, then restore tests (which need the backups), one
        # second apart so the one-thread executor takes them in that order.
        order = {"weekly": 0, "daily": 1, "check": 2, "restore-test": 3}
        due = sorted(catch_ups(planned, succeeded, now, self.config.schedule.catch_up_days),
                     key=lambda job: order[job.kind])
        for position, job in enumerate(due):
            stored = scheduler.get_job(job.job_id, jobstore="default")
            jobs.note_queued(job.job_id)  # its risks wait for it (jobs._risks)
            if stored is not None and stored.next_run_time is not None and stored.next_run_time <= now:
                continue  # APScheduler runs it now anyway (a missed run of a kept job)
            log.info("catching up: %s", job.describe())
            scheduler.add_job(JOB_FUNCTION, "date", run_date=now + _dt.timedelta(seconds=position),
                              id=f"catch-up:{job.job_id}",
                              name=f"catch-up {job.describe()}", args=[job.job_id], jobstore="catch_up",
                              replace_existing=True, misfire_grace_time=None)

    def status_text(self, scheduler: BackgroundScheduler) -> str:
        """systemctl status's "Status:" line: the last failure first, so that a failing
        service does not look healthy, then the next run."""
        failure = self.last_failure_text()
        return f"{failure}; {self.next_run_text(scheduler)}" if failure else self.next_run_text(scheduler)

    def last_failure_text(self) -> str | None:
        """E.g. "last failure: weekly backup of main, exit 14 (meaning) at 2026-12-06 20:00"
        (exit code and its plain meaning only: the child's error line may name a file)."""
        names = {job.job_id: job.describe() for job in planned_jobs(self.config)}
        failure = jobs.JobRecord(self.config.agent.state_dir).last_failure(set(names))
        if failure is None:
            return None
        job_id, code, when = failure
        return (f"last failure: {names.get(job_id, job_id)}, exit {code} ({meaning(code)}) "
                f"at {timefmt.shown(when, self.config.retention.zone)}")

    @staticmethod
    def next_run_text(scheduler: BackgroundScheduler) -> str:
        upcoming = sorted((j for j in scheduler.get_jobs() if j.next_run_time is not None),
                          key=lambda j: j.next_run_time)
        if not upcoming:
            return "no job scheduled"
        first = upcoming[0]
        return f"next: {first.name} at {timefmt.shown(first.next_run_time, None)}"  # the scheduler's zone

"""`backupctl daemon` as a real process: catch-up at start, one daemon per state_dir,
SIGTERM during a backup (clean stop, caught up at the next start), SIGHUP reload, and
the sd_notify messages systemd expects (READY, STATUS, WATCHDOG, STOPPING)."""

from __future__ import annotations

import datetime as dt
import json
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.waits import wait_until

from .support import ROOT, Backupctl, assert_error, base_env, random_file, write

SCHEDULE = '\n[schedule]\nbackup = "fri 20:00"\nmonthly_check = "1 03:00"\n'


_started: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def no_daemon_left_running():
    """A test that fails half-way does not leave its daemon running on the machine."""
    yield
    while _started:
        daemon = _started.pop()
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait(timeout=60)


def start_daemon(bk: Backupctl, *, env: dict | None = None) -> subprocess.Popen:
    """The daemon's log goes to a file (daemon.log_path) that a test can read while it runs."""
    log_path = bk.base / f"daemon-{time.monotonic_ns()}.log"
    with open(log_path, "wb") as log:
        daemon = subprocess.Popen([sys.executable, "-m", "agent", "--config", str(bk.config), "daemon"],
                                  env={**base_env(), **(env or {})}, cwd=ROOT, stdout=subprocess.DEVNULL,
                                  stderr=log)
    _started.append(daemon)
    daemon.log_path = log_path  # type: ignore[attr-defined]
    return daemon


def daemon_log(daemon: subprocess.Popen) -> str:
    return daemon.log_path.read_text()  # type: ignore[attr-defined]


def jobs_record(bk: Backupctl) -> dict:
    path = Path(bk.state) / "daemon" / "jobs.json"
    return json.loads(path.read_text()) if path.exists() else {}


def wait_for(predicate, timeout: float = 180, what: str = "condition"):  # type: ignore[no-untyped-def]
    return wait_until(predicate, timeout=timeout, interval=0.1, what=what)


def stop(daemon: subprocess.Popen) -> tuple[int, str]:
    daemon.send_signal(signal.SIGTERM)
    daemon.wait(timeout=60)
    return daemon.returncode, daemon_log(daemon)


def earliest_stored_run(bk: Backupctl) -> float:
    """The earliest next run time (epoch seconds) among the scheduler's stored jobs."""
    with sqlite3.connect(Path(bk.state) / "daemon" / "schedule.sqlite") as db:
        (earliest,) = db.execute("SELECT min(next_run_time) FROM apscheduler_jobs").fetchone()
    return earliest


def backups_recorded(bk: Backupctl) -> int:
    trail = Path(bk.state) / "audit.jsonl"
    lines = trail.read_text().splitlines() if trail.exists() else []
    return sum(1 for line in lines if json.loads(line).get("action") == "backup")


def snapshot_count(bk: Backupctl) -> int:
    result = bk.run("snapshots", "--json")
    assert result.returncode == 0, str(result)
    return len(result.json()["snapshots"])


@pytest.fixture
def scheduled(bk: Backupctl) -> Backupctl:
    write(bk.src / "lettre.txt", "Madame, " * 500)
    bk.config.write_text(bk.config.read_text() + SCHEDULE)
    assert bk.run("init").returncode == 0
    return bk


def test_first_start_catches_up_the_weekly_backup_then_a_restart_does_not_repeat_it(scheduled):
    bk = scheduled
    daemon = start_daemon(bk)
    wait_for(lambda: jobs_record(bk).get("weekly:main", {}).get("last_success"), what="the catch-up backup")
    # The quarterly restore test of this quarter was never made either: caught up after it.
    wait_for(lambda: jobs_record(bk).get("restore-test:main", {}).get("last_success"), what="the restore test")
    code, err = stop(daemon)
    assert code == 0 and "daemon stopped" in err and "Traceback" not in err
    assert jobs_record(bk)["restore-test:main"]["last_exit"] == [0]
    entry = jobs_record(bk)["weekly:main"]
    assert [s["command"] for s in entry["steps"]] == ["backup", "prune", "check"]
    assert entry["last_exit"] == [0, 0, 0]
    assert entry["steps"][2]["summary"]["read_data_subset"].endswith("/13")  # 91 days in weekly slices
    assert "lettre" not in err  # no file name in the daemon's log
    assert snapshot_count(bk) == 1
    # Started again: the latest scheduled run has succeeded, nothing to catch up. The
    # moment has passed once the daemon logged its start (the catch-ups are decided and
    # logged before) and no stored job is due any more (a missed run of a kept job is
    # started by the scheduler itself, without a "catching up" line).
    before = jobs_record(bk)
    daemon = start_daemon(bk)
    wait_for(lambda: "daemon started" in daemon_log(daemon), what="the daemon's start line")
    wait_for(lambda: earliest_stored_run(bk) > time.time(), what="no stored job due any more")
    code, err = stop(daemon)
    assert code == 0 and "catching up" not in err
    assert jobs_record(bk) == before  # no job ran, not even one cut short by the stop
    assert snapshot_count(bk) == 1


def test_a_run_missed_while_the_server_was_off_is_caught_up(scheduled):
    bk = scheduled
    daemon = start_daemon(bk)
    wait_for(lambda: jobs_record(bk).get("weekly:main", {}).get("last_success"), what="the first backup")
    stop(daemon)
    # Pretend the last success was before last Friday's run: the server was off then.
    record = jobs_record(bk)
    record["weekly:main"]["last_success"] = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=8)).isoformat()
    (Path(bk.state) / "daemon" / "jobs.json").write_text(json.dumps(record))
    daemon = start_daemon(bk)
    # Counted in the audit trail: the prune after the catch-up forgets the first snapshot
    # (both are from today), so the snapshot count may be 2 only for a moment.
    wait_for(lambda: backups_recorded(bk) == 2, what="the caught-up backup")
    code, err = stop(daemon)
    assert code == 0 and "catching up: weekly backup of main" in err


def test_one_daemon_per_state_dir(scheduled):
    bk = scheduled
    first = start_daemon(bk)
    wait_for(lambda: (Path(bk.state) / "daemon" / "daemon.lock").exists()
             and (Path(bk.state) / "daemon" / "daemon.lock").read_text().strip() == str(first.pid),
             what="the first daemon's lock")
    second = bk.run("daemon")
    assert_error(second, 16, "already runs")
    assert str(first.pid) in second.stderr
    assert stop(first)[0] == 0


def test_sigterm_during_a_backup_stops_cleanly_and_the_backup_is_caught_up(scheduled):
    bk = scheduled
    random_file(bk.src / "imagerie.bin", 300 * 1024 * 1024)  # long enough to be interrupted
    daemon = start_daemon(bk)
    locks = Path(bk.repo) / "locks"
    wait_for(lambda: locks.exists() and any(locks.iterdir()), what="the backup to start")
    # Stopped once part of the data is stored, so that the catch-up below has something to reuse.
    wait_for(lambda: bk.packs() or daemon.poll() is not None, what="the backup's first pack")
    assert daemon.poll() is None, daemon_log(daemon)
    code, err = stop(daemon)
    assert code == 0 and "Traceback" not in err
    entry = jobs_record(bk)["weekly:main"]
    assert entry["last_exit"] == [143] and "last_success" not in entry
    assert snapshot_count(bk) == 0
    assert not list(locks.iterdir())  # the interrupted backup removed its lock
    # The next start catches it up, reusing what was already stored.
    daemon = start_daemon(bk)
    wait_for(lambda: jobs_record(bk)["weekly:main"].get("last_success"), what="the caught-up backup")
    assert stop(daemon)[0] == 0
    assert snapshot_count(bk) == 1
    assert bk.run("check", "--read-data").returncode == 0


def test_sighup_reloads_the_schedule(scheduled):
    bk = scheduled
    daemon = start_daemon(bk)
    wait_for(lambda: jobs_record(bk).get("weekly:main", {}).get("last_success"), what="the first backup")
    bk.config.write_text(bk.config.read_text().replace('backup = "fri 20:00"', 'backup = "mon 07:15"'))
    daemon.send_signal(signal.SIGHUP)
    database = Path(bk.state) / "daemon" / "schedule.sqlite"

    def next_weekly() -> dt.datetime:
        with sqlite3.connect(database) as db:
            (stamp,) = db.execute("SELECT next_run_time FROM apscheduler_jobs WHERE id='weekly:main'").fetchone()
        paris = __import__("zoneinfo").ZoneInfo("Europe/Paris")
        return dt.datetime.fromtimestamp(stamp, dt.timezone.utc).astimezone(paris)

    wait_for(lambda: next_weekly().weekday() == 0, what="the new schedule")
    assert (next_weekly().hour, next_weekly().minute) == (7, 15)
    # A broken configuration is refused and the running schedule kept.
    bk.config.write_text(bk.config.read_text().replace('backup = "mon 07:15"', 'backup = "someday"'))
    daemon.send_signal(signal.SIGHUP)
    wait_for(lambda: "configuration not reloaded" in daemon_log(daemon), what="the refusal in the daemon's log")
    assert daemon.poll() is None and next_weekly().weekday() == 0
    code, err = stop(daemon)
    assert code == 0 and "configuration reloaded" in err


def test_systemd_notifications(scheduled, tmp_path):
    bk = scheduled
    address = str(tmp_path / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(address)
    listener.settimeout(120)
    daemon = start_daemon(bk, env={"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "1000000"})
    messages: list[str] = []
    try:
        while not ({"READY=1", "WATCHDOG=1"} <= set(messages) and any(m.startswith("STATUS=") for m in messages)):
            messages.append(listener.recv(4096).decode())
        assert messages.index("READY=1") < messages.index("WATCHDOG=1")
        status = next(m for m in messages if m.startswith("STATUS="))
        assert "next:" in status or "no job" in status
        assert stop(daemon)[0] == 0
        while "STOPPING=1" not in messages:
            messages.append(listener.recv(4096).decode())
    finally:
        if daemon.poll() is None:
            daemon.kill()
        listener.close()


def _listen(tmp_path: Path) -> tuple[socket.socket, str]:
    address = str(tmp_path / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(address)
    listener.settimeout(180)
    return listener, address


def _status_until(listener: socket.socket, predicate, seen: list[str], timeout: float = 180) -> str:
    """The first STATUS= message that satisfies predicate (every message kept in seen)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = listener.recv(4096).decode()
        seen.append(message)
        if message.startswith("STATUS=") and predicate(message):
            return message
    raise AssertionError(f"no such STATUS within {timeout} s; received: {seen[-5:]}")


def test_a_failed_job_is_an_error_in_the_journal_and_in_the_status_until_it_succeeds(bk, tmp_path):
    """Issue 17.4: under systemd (JOURNAL_STREAM set) a failed job's line carries syslog
    priority 3 with its exit code and plain meaning, never the child's error line (which
    names the missing folder); sd_notify STATUS names the failure until the job succeeds."""
    from agent.daemon.outcomes import meaning

    folder = bk.src / "Dupont Jean"  # a patient's name, in the child's own error line
    bk.write_config(paths=[folder])
    bk.config.write_text(bk.config.read_text() + SCHEDULE)
    assert bk.run("init").returncode == 0
    listener, address = _listen(tmp_path)
    daemon = start_daemon(bk, env={"NOTIFY_SOCKET": address, "JOURNAL_STREAM": "8:12345"})
    seen: list[str] = []
    try:
        failed = _status_until(listener, lambda m: "last failure: weekly backup of main" in m, seen)
        assert f"exit 17 ({meaning(17)}) at " in failed and "Dupont" not in failed
        assert "next: " in failed
        assert "Dupont" in jobs_record(bk)["weekly:main"]["steps"][0]["error_detail"]  # kept on the server only
        # Fixed, and the configuration reloaded (`daemon --reload`, the unit's ExecReload):
        # the failed jobs are caught up and succeed; the status no longer names a failure.
        write(folder / "lettre.txt", "Madame, " * 500)
        reload = bk.run("daemon", "--reload")
        assert reload.returncode == 0, str(reload)
        _status_until(listener, lambda m: "last failure" not in m and "next: " in m
                      and jobs_record(bk).get("weekly:main", {}).get("last_success") is not None, seen)
        code, err = stop(daemon)
    finally:
        if daemon.poll() is None:
            daemon.kill()
        listener.close()
    assert code == 0 and "Traceback" not in err
    failure = [line for line in err.splitlines() if "job weekly:main FAILED" in line]
    assert len(failure) == 1 and failure[0].startswith("<3>ERROR "), err
    assert f"backup exit 17: {meaning(17)}" in failure[0]
    assert "Dupont" not in err  # no file or folder name in any journal line
    assert any(line.startswith("<6>INFO job weekly:main succeeded") for line in err.splitlines()), err
    assert all(line[:3] in ("<3>", "<4>", "<6>") for line in err.splitlines() if line), err


def test_without_systemd_the_log_has_no_priority_prefix(scheduled):
    bk = scheduled
    daemon = start_daemon(bk)
    wait_for(lambda: jobs_record(bk).get("weekly:main", {}).get("last_success"), what="the first backup")
    code, err = stop(daemon)
    assert code == 0 and "INFO job weekly:main succeeded" in err
    assert not any(line.startswith("<") for line in err.splitlines()), err


def test_reload_command_refuses_a_broken_configuration_and_keeps_the_schedule(scheduled):
    """`daemon --reload` (ExecReload=): exit 2 with the reason on a configuration the
    daemon would refuse, which is then not even signalled; exit 0 and reloaded otherwise."""
    bk = scheduled
    daemon = start_daemon(bk)
    lock = Path(bk.state) / "daemon" / "daemon.lock"
    wait_for(lambda: jobs_record(bk).get("weekly:main", {}).get("last_success"), what="the first backup")
    database = Path(bk.state) / "daemon" / "schedule.sqlite"

    def next_weekly() -> tuple[int, int, int]:
        with sqlite3.connect(database) as db:
            (stamp,) = db.execute("SELECT next_run_time FROM apscheduler_jobs WHERE id='weekly:main'").fetchone()
        local = dt.datetime.fromtimestamp(stamp, dt.timezone.utc).astimezone(
            __import__("zoneinfo").ZoneInfo("Europe/Paris"))
        return local.weekday(), local.hour, local.minute

    assert next_weekly() == (4, 20, 0)
    good = bk.config.read_text()
    bk.config.write_text(good.replace('backup = "fri 20:00"', 'backup = "someday"'))
    refused = bk.run("daemon", "--reload", str(daemon.pid))
    assert_error(refused, 2, "someday")
    assert daemon.poll() is None and next_weekly() == (4, 20, 0)
    bk.config.write_text(good.replace('backup = "fri 20:00"', 'backup = "mon 07:15"'))
    taken = bk.run("daemon", "--reload")  # the pid from state_dir/daemon/daemon.lock
    assert taken.returncode == 0 and str(daemon.pid) in taken.stderr and lock.read_text().strip() == str(daemon.pid)
    wait_for(lambda: next_weekly() == (0, 7, 15), what="the new schedule")
    # The daemon handles its signals in order: once the good reload is logged, a signal
    # the refused command had sent (with the broken file in place) would have been logged
    # before it as a refusal.
    wait_for(lambda: "configuration reloaded" in daemon_log(daemon), what="the reload in the daemon's log")
    assert "configuration not reloaded" not in daemon_log(daemon)  # the broken one never reached the daemon
    code, err = stop(daemon)
    assert code == 0 and "configuration not reloaded" not in err
    # No daemon: nothing to reload, one line, exit 2.
    assert_error(bk.run("daemon", "--reload"), 2, "no backupctl daemon runs")

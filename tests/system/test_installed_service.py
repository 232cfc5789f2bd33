"""Issue 17, point 2, under a real systemd as PID 1: a Debian 12 container (debootstrap,
cached; systemd-nspawn --boot) gets backupctl from the rescue kit with `sh install.sh`,
offline, and the installed service is then driven as an IT provider would drive it.

The tests run in this file's order against one container (module fixture `machine`, see
conftest.py); each step's time is printed in the summary. The unit's watchdog is lowered
to 20 s by a drop-in of the test (the shipped 10 min would need an hour to prove anything),
so the two minutes it must hold span six periods.
"""

from __future__ import annotations

import json
import re
import time
from contextlib import contextmanager
from typing import Iterator

import pytest

from .conftest import TIMINGS
from .machine import Machine

KIT = "/root/kit/rescue-kit"
PASSPHRASE = "a passphrase typed for the system test"
CONFIG = """
[agent]
state_dir = "/var/lib/backupctl"
practice_name = "Cabinet du test"
report_language = "en"

[source]
paths = ["/srv/cabinet"]

[repositories.main]
url = "file:///srv/backup/repo"

[repositories.disques]
url = "file:///media/backupctl"
media = ["DISQUE-A", "DISQUE-B"]

[retention]
weekly = 4
monthly = 12
yearly = 20
timezone = "Europe/Paris"

[schedule]
repositories = ["main"]

[[hooks]]
name = "practice software"
before = ["systemctl", "stop", "dummy.service"]
after = ["systemctl", "start", "dummy.service"]
"""
DUMMY_UNIT = "[Unit]\nDescription=the practice software\n[Service]\nExecStart=/bin/sleep infinity\n" \
             "[Install]\nWantedBy=multi-user.target\n"
WATCHDOG = 20  # seconds, the test's drop-in
HOLD = 120     # seconds the watchdog must hold (issue 17)
seen: dict[str, str] = {}


@contextmanager
def timed(what: str) -> Iterator[None]:
    started = time.monotonic()
    try:
        yield
    finally:
        TIMINGS.append((what, time.monotonic() - started))


def _wait_for(what: str, predicate, timeout: float = 180, every: float = 1.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def _write(machine: Machine, path: str, text: str, mode: str = "0644") -> None:
    machine.run("sh", "-c", f'mkdir -p "$(dirname {path})" && cat > {path} && chmod {mode} {path}', input=text)


def test_without_a_terminal_or_a_passphrase_file_the_install_refuses(machine: Machine) -> None:
    with timed("install refused without a terminal"):
        done = machine.run("sh", f"{KIT}/install.sh", check=False)
    assert done.returncode == 2, done
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "no terminal" in errors[0] and "--passphrase-file" in errors[0], done.stderr
    for absent in ("/etc/systemd/system/backupctl.service", "/etc/credstore.encrypted/backupctl-passphrase",
                   "/usr/local/bin/backupctl", "/etc/sysusers.d/backupctl.conf"):
        assert machine.run("test", "-e", absent, check=False).returncode == 1, absent


def test_install_from_the_kit_offline_starts_the_service_ready(machine: Machine) -> None:
    # The practice: documents, a folder only root may read, its software as a unit the hooks stop.
    machine.sh("mkdir -p /srv/cabinet/docs /srv/cabinet/private"
               " && for i in 1 2 3; do echo \"letter $i\" > /srv/cabinet/docs/letter-$i.txt; done"
               " && head -c 100000 /dev/urandom > /srv/cabinet/private/dossier.bin"
               " && chmod 0700 /srv/cabinet/private && chmod 0600 /srv/cabinet/private/dossier.bin")
    _write(machine, "/etc/systemd/system/dummy.service", DUMMY_UNIT)
    machine.run("systemctl", "enable", "--now", "dummy.service")
    _write(machine, "/etc/systemd/system/backupctl.service.d/zz-test-watchdog.conf",
           f"[Service]\nWatchdogSec={WATCHDOG}s\n")
    _write(machine, "/root/config.toml", CONFIG)
    _write(machine, "/root/passphrase", PASSPHRASE + "\n", "0600")
    with timed("sh install.sh (offline, from the kit)"):
        done = machine.run("sh", f"{KIT}/install.sh", "--config", "/root/config.toml",
                           "--passphrase-file", "/root/passphrase", timeout=600)
    assert "created the repository main" in done.stdout and "destroy /root/passphrase" in done.stdout, done.stdout
    assert PASSPHRASE not in done.stdout + done.stderr
    # Type=notify: "active" is reached only with READY=1; STATUS= comes from the daemon.
    state = machine.show("backupctl.service", "ActiveState", "SubState", "StatusText", "MainPID", "NRestarts",
                         "WatchdogUSec", "ActiveEnterTimestampMonotonic")
    assert (state["ActiveState"], state["SubState"]) == ("active", "running"), state
    assert state["StatusText"], state
    assert state["WatchdogUSec"] == f"{WATCHDOG}s", state
    seen.update(main_pid=state["MainPID"], active_since_us=state["ActiveEnterTimestampMonotonic"])
    # The secret is stored encrypted only, for root only; the kit is kept for the uploads.
    credential = machine.run("stat", "-c", "%a %U", "/etc/credstore.encrypted/backupctl-passphrase").stdout.split()
    assert credential == ["600", "root"]
    assert machine.run("grep", "-c", PASSPHRASE, "/etc/credstore.encrypted/backupctl-passphrase",
                       check=False).stdout.strip() == "0"
    assert machine.run("sh", "-c", "ls /opt/backupctl/share/backupctl/backupctl-rescue-kit-*.tar").returncode == 0
    assert machine.run("head", "-2", "/usr/local/bin/backupctl").stdout.splitlines()[1] == "# backupctl service wrapper"


def test_the_catch_up_backup_lands_and_belongs_to_the_service_user(machine: Machine) -> None:
    def snapshots() -> list[dict]:
        done = machine.run("backupctl", "snapshots", "--json", check=False)
        return json.loads(done.stdout)["snapshots"] if done.returncode == 0 else []

    with timed("catch-up backup seen through the wrapper"):
        found = _wait_for("the daemon's catch-up backup", snapshots)
    assert found[0]["paths"] == ["/srv/cabinet"] and found[0]["files"] == 4 and not found[0]["partial"], found
    # The hooks ran as the service user, allowed by the polkit rule: the software was stopped
    # and started again around the backup, which was not aborted.
    log = machine.run("journalctl", "--no-pager", "-o", "cat", "-u", "dummy.service").stdout
    assert "Stopped dummy.service" in log and log.count("Started dummy.service") >= 2, log
    assert machine.run("systemctl", "is-active", "dummy.service").stdout.strip() == "active"
    strangers = machine.run("find", "/srv/backup/repo", "/var/lib/backupctl", "!", "-user", "backupctl").stdout
    assert strangers == "", strangers


def test_the_polkit_rule_allows_only_the_units_and_verbs_the_hooks_name(machine: Machine) -> None:
    _write(machine, "/etc/systemd/system/other.service", "[Service]\nExecStart=/bin/sleep infinity\n")
    machine.run("systemctl", "daemon-reload")
    machine.run("systemctl", "start", "other.service")

    def as_service(*argv: str) -> int:
        return machine.run("systemd-run", "--quiet", "--wait", "--pipe", "-p", "User=backupctl", *argv,
                           check=False).returncode

    assert as_service("systemctl", "stop", "other.service") != 0          # not named by a hook
    assert as_service("systemctl", "restart", "dummy.service") != 0       # named, not with this verb
    assert as_service("systemctl", "stop", "dummy.service") == 0
    assert as_service("systemctl", "start", "dummy.service") == 0


def test_a_root_only_file_is_backed_up_and_restored_with_its_owner(machine: Machine) -> None:
    with timed("restore of the root-only file through the wrapper"):
        machine.sh("cd /root && backupctl restore latest --target restored --include 'srv/cabinet/private/*'")
    machine.run("cmp", "/srv/cabinet/private/dossier.bin", "/root/restored/srv/cabinet/private/dossier.bin")
    assert machine.run("stat", "-c", "%U %a", "/root/restored/srv/cabinet/private/dossier.bin").stdout.split() == \
        ["root", "600"]


def test_the_wrapper_gives_the_programs_exit_code_and_arguments_unchanged(machine: Machine) -> None:
    assert machine.run("backupctl", "find", check=False).returncode == 2           # usage error
    assert machine.run("backupctl", "restore", "feedface", "--target", "/root/x", check=False).returncode != 0
    listing = machine.run("backupctl", "find", "$HOME*", check=False)  # "$" reaches the program as typed
    assert listing.returncode == 0, listing
    assert machine.run("sh", "-c", "cd /tmp && backupctl status --json >/dev/null; echo $?").stdout.strip() in ("0", "4")
    assert machine.run("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "/usr/local/bin/backupctl",
                       "status", check=False).returncode == 2


def test_a_disk_mounted_after_the_start_is_written_by_the_service(machine: Machine) -> None:
    # A fresh file system, root's as mkfs leaves it, mounted while the daemon runs.
    machine.run("mount", "-t", "tmpfs", "-o", "mode=0755,size=128m", "DISQUE-A", "/media/backupctl")
    with timed("media init + backup --repo disques through the wrapper"):
        machine.run("backupctl", "media", "init", "DISQUE-A", "--repo", "disques")
        done = machine.run("backupctl", "backup", "--repo", "disques", check=False)
    assert done.returncode in (0, 3) and "on disk DISQUE-A" in done.stdout, done
    assert machine.run("find", "/media/backupctl", "!", "-user", "backupctl").stdout == ""
    # The daemon's own mount namespace, set up before the disk came, sees it writable too.
    pid = machine.show("backupctl.service", "MainPID")["MainPID"]
    uid, gid = (machine.run("id", flag, "backupctl").stdout.strip() for flag in ("-u", "-g"))
    machine.run("nsenter", "-t", pid, "-m", f"--setuid={uid}", f"--setgid={gid}", "sh", "-c",
                "touch /media/backupctl/repository/.probe && rm /media/backupctl/repository/.probe")


def test_reload_takes_a_good_configuration_and_refuses_a_bad_one(machine: Machine) -> None:
    assert machine.run("systemctl", "reload", "backupctl.service", check=False).returncode == 0
    machine.run("cp", "/etc/backupctl/config.toml", "/root/good.toml")
    machine.sh("printf '\\n[bogus]\\nx = 1\\n' >> /etc/backupctl/config.toml")
    refused = machine.run("systemctl", "reload", "backupctl.service", check=False)
    machine.run("cp", "/root/good.toml", "/etc/backupctl/config.toml")
    assert refused.returncode != 0, refused
    state = machine.show("backupctl.service", "ActiveState", "MainPID")
    assert state == {"ActiveState": "active", "MainPID": seen["main_pid"]}, state
    assert "unknown section(s) bogus" in machine.run("journalctl", "-u", "backupctl", "-o", "cat", "--no-pager").stdout


def test_a_second_install_changes_nothing(machine: Machine) -> None:
    with timed("second sh install.sh"):
        done = machine.run("sh", f"{KIT}/install.sh", "--config", "/root/config.toml", timeout=600)
    assert "nothing to change" in done.stdout, done.stdout
    assert machine.show("backupctl.service", "MainPID")["MainPID"] == seen["main_pid"]


def test_the_watchdog_holds_for_two_minutes(machine: Machine) -> None:
    uptime_us = float(machine.run("cat", "/proc/uptime").stdout.split()[0]) * 1e6
    left = HOLD - (uptime_us - int(seen["active_since_us"])) / 1e6
    with timed(f"watchdog hold ({HOLD} s since the start, {WATCHDOG} s period)"):
        if left > 0:
            time.sleep(left + 2)
    state = machine.show("backupctl.service", "ActiveState", "SubState", "NRestarts", "MainPID")
    assert state == {"ActiveState": "active", "SubState": "running", "NRestarts": "0",
                     "MainPID": seen["main_pid"]}, state
    journal = machine.run("journalctl", "-u", "backupctl", "-o", "cat", "--no-pager").stdout
    assert not re.search(r"[Ww]atchdog timeout", journal), journal[-3000:]


def test_stop_is_clean(machine: Machine) -> None:
    with timed("systemctl stop"):
        machine.run("systemctl", "stop", "backupctl.service", timeout=400)
    state = machine.show("backupctl.service", "ActiveState", "Result", "ExecMainStatus")
    assert state["ActiveState"] == "inactive" and state["Result"] == "success", state


def test_uninstall_removes_the_service_and_keeps_the_data(machine: Machine) -> None:
    listing_before = machine.run("find", "/srv/backup/repo", "-type", "f").stdout
    done = machine.run("sh", f"{KIT}/install.sh", "--uninstall")
    assert "Kept" in done.stdout, done.stdout
    for gone in ("/etc/systemd/system/backupctl.service", "/etc/systemd/system/backupctl.service.d/paths.conf",
                 "/usr/local/bin/backupctl", "/etc/polkit-1/rules.d/50-backupctl.rules", "/opt/backupctl"):
        assert machine.run("test", "-e", gone, check=False).returncode == 1, gone
    for kept in ("/etc/backupctl/config.toml", "/etc/credstore.encrypted/backupctl-passphrase",
                 "/var/lib/backupctl", "/media/backupctl/repository"):
        assert machine.run("test", "-e", kept).returncode == 0, kept
    assert machine.run("find", "/srv/backup/repo", "-type", "f").stdout == listing_before
    assert machine.run("systemctl", "is-enabled", "backupctl.service", check=False).stdout.strip() != "enabled"

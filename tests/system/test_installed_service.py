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
import tomllib
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from agent.engine.backup import PROCESS_MIN_FILES
from agent.engine.restore import PROCESSES_FROM_FILES
from agent.service_install import apt_hook, layout
from tests.support import doc_commands

from . import loopback
from .conftest import TIMINGS
from .machine import Machine

KIT = "/root/kit/backupctl-rescue-kit-*"  # the kit's tar unpacked (conftest.py); the shell expands it
INSTALL = ("sh", "-c", f'exec sh {KIT}/install.sh "$@"', "install.sh")  # `sh install.sh ARGS...` in the kit
# The first install is docs/INSTALL.md's own lines (those marked "# [system test]"), run as
# written in the folder the kit's tar was copied to: the document cannot drift from what works.
# /root/config.toml, /root/s3.ini and /root/smtp.txt are the files the document has you prepare.
KIT_VERSION = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"]["version"]
DOC_INSTALL = ("sh", "-ec", "cd /root/kit\n" + doc_commands.install_script(KIT_VERSION))
REPO = "/srv/sauvegardes/dépôt principal"  # a space and accents, as a practice names its folders
S3_PORT, S3_BUCKET = 19000, "cabinet-offsite"
S3_KEYS = {"aws_access_key_id": "AKIASYSTEMTEST", "aws_secret_access_key": "system-test-secret%key"}
SMTP_PASSWORD = "mot de passe smtp"  # tests/support/mailserver.py's server wants it
CONFIG = """
[agent]
state_dir = "/var/lib/backupctl"
practice_name = "Cabinet du test"
report_language = "en"

[source]
paths = ["/srv/cabinet"]

[repositories.main]
url = "file://{repo}"

[repositories.disques]
url = "file:///media/backupctl"
media = ["DISQUE-A", "DISQUE-B"]

[repositories.offsite]
url = "s3://cabinet-offsite/serveur"
endpoint = "http://127.0.0.1:{s3_port}"
region = "us-east-1"
addressing = "path"
object_lock = "governance"
lock_days = 2

[retention]
weekly = 4
monthly = 12
yearly = 20
timezone = "Europe/Paris"

[schedule]
repositories = ["main", "offsite"]

[alerts]
email_to = ["docteur@cabinet.test"]
email_from = "backupctl@cabinet.test"
smtp_host = "127.0.0.1"
smtp_port = {smtp_port}
smtp_security = "starttls"
smtp_user = "cabinet"
smtp_ca_file = "/etc/backupctl/smtp-ca.pem"

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


@pytest.fixture(scope="module")
def servers(machine: Machine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """The off-site S3 server and the mail server, on the container's loopback."""
    mail = tmp_path_factory.mktemp("mail")
    s3 = loopback.start_s3(machine.leader, S3_PORT, access_key=S3_KEYS["aws_access_key_id"],
                           secret_key=S3_KEYS["aws_secret_access_key"], bucket=S3_BUCKET)
    try:
        smtp, smtp_port = loopback.start_smtp(machine.leader, mail)
        try:
            yield {"smtp_port": smtp_port, "mail": mail}
        finally:
            loopback.stop(smtp)
    finally:
        loopback.stop(s3)


def test_without_a_terminal_or_a_passphrase_file_the_install_refuses(machine: Machine) -> None:
    with timed("install refused without a terminal"):
        done = machine.run(*INSTALL, check=False)
    assert done.returncode == 2, done
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "no terminal" in errors[0] and "--passphrase-file" in errors[0], done.stderr
    for absent in ("/etc/systemd/system/backupctl.service", "/etc/credstore.encrypted/backupctl-passphrase",
                   "/usr/local/bin/backupctl", "/etc/sysusers.d/backupctl.conf", "/opt/backupctl"):
        assert machine.run("test", "-e", absent, check=False).returncode == 1, absent


def test_install_from_the_kit_offline_starts_the_service_ready(machine: Machine, servers: dict) -> None:
    # The practice: documents, a folder only root may read, its software as a unit the hooks stop.
    machine.sh("mkdir -p /srv/cabinet/docs /srv/cabinet/private"
               " && for i in 1 2 3; do echo \"letter $i\" > /srv/cabinet/docs/letter-$i.txt; done"
               " && head -c 100000 /dev/urandom > /srv/cabinet/private/dossier.bin"
               " && chmod 0700 /srv/cabinet/private && chmod 0600 /srv/cabinet/private/dossier.bin")
    _write(machine, "/etc/systemd/system/dummy.service", DUMMY_UNIT)
    machine.run("systemctl", "enable", "--now", "dummy.service")
    _write(machine, "/etc/systemd/system/backupctl.service.d/zz-test-watchdog.conf",
           f"[Service]\nWatchdogSec={WATCHDOG}s\n")
    _write(machine, "/root/config.toml", CONFIG.format(repo=REPO, s3_port=S3_PORT, smtp_port=servers["smtp_port"]))
    _write(machine, "/etc/backupctl/smtp-ca.pem", (servers["mail"] / "smtp.pem").read_text())
    _write(machine, "/root/s3.ini", "[default]\n" + "".join(f"{k} = {v}\n" for k, v in S3_KEYS.items()), "0600")
    _write(machine, "/root/smtp.txt", SMTP_PASSWORD + "\n", "0600")
    shown: dict[str, bytes] = {}

    def type_it_back(output: bytes) -> bytes | None:
        found = re.search(rb"\n    ([A-Za-z0-9+/]{43}=)\r?\n", output)
        if found and b"Type it back" in output:
            shown["passphrase"] = found.group(1)
            return found.group(1) + b"\n"
        return None

    with timed("docs/INSTALL.md's install lines at a terminal (offline, from the kit)"):
        code, output = machine.at_a_terminal(*DOC_INSTALL, answer=type_it_back)
    text = output.decode("utf-8", "replace")
    assert code == 0, text
    assert "passphrase" in shown and "Write this on the paper sheet" in text and "Confirmed." in text, text
    assert "created the repository main" in text and "created the repository offsite" in text, text
    assert "destroy /root/s3.ini" in text and "destroy /root/smtp.txt" in text, text
    # What was shown is what the service gets, and it is stored only encrypted, for root only.
    stored = machine.run("systemd-creds", "decrypt", "--name=passphrase",
                         "/etc/credstore.encrypted/backupctl-passphrase", "-").stdout.strip()
    assert stored.encode() == shown["passphrase"]
    seen["passphrase"] = stored
    for name in ("passphrase", "s3-credentials", "smtp-password"):
        path = f"/etc/credstore.encrypted/backupctl-{name}"
        assert machine.run("stat", "-c", "%a %U", path).stdout.split() == ["600", "root"], path
        assert machine.run("grep", "-c", "-e", stored, "-e", "system-test-secret", "-e", SMTP_PASSWORD, path,
                           check=False).stdout.strip() == "0", path
    # Type=notify: "active" is reached only with READY=1; STATUS= comes from the daemon.
    state = machine.show("backupctl.service", "ActiveState", "SubState", "StatusText", "MainPID", "NRestarts",
                         "WatchdogUSec", "ActiveEnterTimestampMonotonic")
    assert (state["ActiveState"], state["SubState"]) == ("active", "running"), state
    assert state["StatusText"], state
    assert state["WatchdogUSec"] == f"{WATCHDOG}s", state
    seen.update(main_pid=state["MainPID"], active_since_us=state["ActiveEnterTimestampMonotonic"])
    # The unit with the drop-ins written for this configuration passes systemd's own check.
    verify = machine.run("systemd-analyze", "verify", "backupctl.service", check=False)
    assert verify.returncode == 0 and "backupctl.service" not in verify.stderr, verify
    assert f'ReadWritePaths="-{REPO}"' in machine.run("systemctl", "cat", "backupctl.service").stdout
    # The kit is kept for the uploads into the repositories.
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
    strangers = machine.run("find", REPO, "/var/lib/backupctl", "!", "-user", "backupctl").stdout
    assert strangers == "", strangers


def test_the_off_site_backup_and_the_mail_use_their_credentials(machine: Machine, servers: dict) -> None:
    # The service has no AWS variable nor file of its own: the keys come from the credential
    # s3-credentials (AWS_SHARED_CREDENTIALS_FILE=%d/s3-credentials), and so for the wrapper.
    def offsite() -> list[dict]:
        done = machine.run("backupctl", "snapshots", "--repo", "offsite", "--json", check=False)
        return json.loads(done.stdout)["snapshots"] if done.returncode == 0 else []

    with timed("catch-up backup of the S3 repository"):
        found = _wait_for("the daemon's catch-up backup to S3", offsite)
    assert found[0]["files"] == 4, found
    # The server takes mail only after a login with the password of the credential smtp-password.
    with timed("first alert e-mail"):
        mails = _wait_for("an e-mail from the daemon", lambda: sorted(servers["mail"].glob("*.eml")))
    assert b"docteur@cabinet.test" in mails[0].read_bytes()


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
    assert machine.run("backupctl", "find", check=False).returncode == 2           # usage error, --pipe
    code, output = machine.at_a_terminal("backupctl", "find", answer=lambda _: None, timeout=120)
    assert code == 2 and b"Missing argument" in output, output                  # the same through --pty
    code, output = machine.at_a_terminal("backupctl", "snapshots", answer=lambda _: None, timeout=120)
    assert code == 0 and b"/srv/cabinet" in output, output
    assert machine.run("backupctl", "restore", "feedface", "--target", "/root/x", check=False).returncode != 0
    listing = machine.run("backupctl", "find", "$HOME*", check=False)  # "$" reaches the program as typed
    assert listing.returncode == 2 and "nothing matches '$HOME*'" in listing.stdout + listing.stderr, listing
    status = machine.run("sh", "-c", "cd /tmp && backupctl status --json >/dev/null; echo $?").stdout.strip()
    assert status in ("0", "4")  # 4: an obligation at risk (no restore test yet, this week's disk)
    assert machine.run("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "/usr/local/bin/backupctl",
                       "status", check=False).returncode == 2


def test_a_disk_mounted_after_the_start_is_written_by_the_service(machine: Machine) -> None:
    # A fresh file system, root's as mkfs leaves it, mounted while the daemon runs.
    machine.run("mount", "-t", "tmpfs", "-o", "mode=0755,size=128m", "DISQUE-A", "/media/backupctl")
    with timed("media init + backup --repo disques through the wrapper"):
        machine.run("backupctl", "media", "init", "DISQUE-A", "--repo", "disques")
        done = machine.run("backupctl", "backup", "--repo", "disques", check=False)
    assert done.returncode == 0 and "on disk DISQUE-A" in done.stdout, done  # /srv/cabinet is whole
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
        done = machine.run(*INSTALL, "--config", "/root/config.toml", timeout=600)
    assert "nothing to change" in done.stdout, done.stdout
    assert machine.show("backupctl.service", "MainPID")["MainPID"] == seen["main_pid"]


def test_apt_takes_a_snapshot_before_installing_and_compliance_sees_it(machine: Machine) -> None:
    # Rule S5: the install put the apt hook in place; a real apt-get install of a local package,
    # offline, runs it (as root, through the wrapper, as the service user) before dpkg.
    assert machine.run("cat", layout.APT_HOOK).stdout == apt_hook.render()
    machine.sh("mkdir -p /root/pkg/DEBIAN /root/pkg/usr/share/doc/backupctl-test-pkg"
               " && printf 'Package: backupctl-test-pkg\\nVersion: 1.0\\nArchitecture: all\\n"
               "Maintainer: tests <tests@example.org>\\nDescription: a package of the tests\\n'"
               " > /root/pkg/DEBIAN/control && echo hi > /root/pkg/usr/share/doc/backupctl-test-pkg/README"
               " && dpkg-deb --build --root-owner-group /root/pkg /root/backupctl-test-pkg.deb")
    with timed("apt-get install of a local package, the hook's snapshot first"):
        done = machine.run("apt-get", "install", "-y", "/root/backupctl-test-pkg.deb", check=False, timeout=900,
                           env={"DEBIAN_FRONTEND": "noninteractive"})
    assert done.returncode == 0, done
    assert "(avant-installation) saved in main" in done.stdout, done
    assert machine.run("dpkg-query", "-W", "-f=${Status}", "backupctl-test-pkg").stdout == "install ok installed"
    snapshots = json.loads(machine.run("backupctl", "snapshots", "--json").stdout)["snapshots"]
    assert [s for s in snapshots if "avant-installation" in s["tags"]], snapshots
    rules = json.loads(machine.run("backupctl", "compliance", "--json", check=False).stdout)["rules"]
    s5 = next(r for r in rules if r["rule"] == "S5")
    assert s5["status"] == "OK" and s5["evidence_codes"][0]["package"] == "backupctl-test-pkg:all", s5
    # A second apt run the same day takes none, says so, and apt succeeds.
    done = machine.run("apt-get", "remove", "-y", "backupctl-test-pkg", check=False, timeout=600,
                       env={"DEBIAN_FRONTEND": "noninteractive"})
    assert done.returncode == 0 and "already taken today" in done.stdout, done
    # The hook never fails apt: today's snapshot forgotten (the record edited in place, its owner
    # kept) and the repository gone (moved away), apt installs with one warning line.
    machine.run("python3", "-c", "import json, sys\nwith open(sys.argv[1], 'r+') as f:\n"
                "    d = json.load(f); d.pop('before_installation'); f.seek(0); f.truncate(); json.dump(d, f)",
                "/var/lib/backupctl/records/main.json")
    machine.run("mv", REPO, REPO + ".away")
    try:
        done = machine.run("apt-get", "install", "-y", "/root/backupctl-test-pkg.deb", check=False, timeout=600,
                           env={"DEBIAN_FRONTEND": "noninteractive"})
    finally:
        machine.run("mv", REPO + ".away", REPO)
    assert done.returncode == 0, done
    warnings = [line for line in done.stderr.splitlines() if line.startswith("backupctl:")]
    assert len(warnings) == 1 and "the repository main cannot be opened" in warnings[0], done
    assert machine.run("dpkg-query", "-W", "-f=${Status}", "backupctl-test-pkg").stdout == "install ok installed"


def test_many_letters_are_backed_up_and_restored_by_worker_processes_inside_the_sandbox(machine: Machine) -> None:
    # Past these counts the backup reads and seals small files in spawned worker processes
    # (a spool in /dev/shm, semaphores) and the restore writes one-chunk files in forked ones:
    # both must work under the unit's sandbox (PrivateDevices, ProtectSystem=strict,
    # SystemCallFilter), through the wrapper as through the daemon.
    letters = max(PROCESS_MIN_FILES, PROCESSES_FROM_FILES) + 904
    machine.sh(f"mkdir -p /srv/cabinet/lettres && cd /srv/cabinet/lettres"
               f" && i=0; while [ $i -lt {letters} ];"
               f" do echo \"Cher confrère, lettre $i\" > l-$i.txt; i=$((i+1)); done")
    with timed(f"backup and restore of {letters} letters through the wrapper"):
        done = machine.run("backupctl", "backup", "--repo", "main", "--json", check=False, timeout=600)
        assert done.returncode == 0, done
        assert json.loads(done.stdout)["files_new"] >= letters, done.stdout
        machine.sh("cd /root && backupctl restore latest --target many --include 'srv/cabinet/lettres'", timeout=600)
    machine.run("diff", "-r", "/srv/cabinet/lettres", "/root/many/srv/cabinet/lettres")
    assert machine.run("sh", "-c", "ls /root/many/srv/cabinet/lettres | wc -l").stdout.strip() == str(letters)


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
    listing_before = machine.run("find", REPO, "-type", "f").stdout
    done = machine.run(*INSTALL, "--uninstall")
    assert "Kept" in done.stdout, done.stdout
    for gone in ("/etc/systemd/system/backupctl.service", "/etc/systemd/system/backupctl.service.d/paths.conf",
                 "/usr/local/bin/backupctl", "/etc/polkit-1/rules.d/50-backupctl.rules", "/opt/backupctl",
                 layout.APT_HOOK):
        assert machine.run("test", "-e", gone, check=False).returncode == 1, gone
    # apt works without the hook (and without backupctl).
    assert machine.run("apt-get", "remove", "-y", "backupctl-test-pkg", check=False).returncode == 0
    for kept in ("/etc/backupctl/config.toml", "/etc/credstore.encrypted/backupctl-passphrase",
                 "/var/lib/backupctl", "/media/backupctl/repository"):
        assert machine.run("test", "-e", kept).returncode == 0, kept
    assert machine.run("find", REPO, "-type", "f").stdout == listing_before
    assert machine.run("systemctl", "is-enabled", "backupctl.service", check=False).stdout.strip() != "enabled"

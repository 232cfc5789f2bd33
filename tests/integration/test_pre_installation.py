"""Rule S5, a copy before every installation, end to end: `backupctl pre-installation` (the apt
hook's command) with real repositories, a real dpkg installing a package built with dpkg-deb
(into a private root and database, never this machine's), the dpkg log it writes judged by
`backupctl compliance`, and a real apt-get run reading the hook's snippet.

dpkg and apt act on a folder of the test: --root, --admindir and --log for dpkg (with
--force-not-root --force-script-chrootless), and for apt-get its state, cache, log and status
file in the test's folder with Dir::Bin::dpkg a script running dpkg so. The snippet is the
one install-service writes (agent/service_install/apt_hook.py), run by apt as its
DPkg::Pre-Invoke, with the program a script running this checkout's backupctl.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from agent.engine.installation_copy import local_time
from agent.reports.i18n import evidence_text
from agent.service_install import apt_hook

from .support import Backupctl, base_env, write

TAG = "avant-installation"
WARNING = "backupctl: warning: no snapshot before installation: "
needs_dpkg = pytest.mark.skipif(shutil.which("dpkg-deb") is None or shutil.which("dpkg") is None,
                                reason="dpkg and dpkg-deb (Debian) are not installed")
needs_apt = pytest.mark.skipif(shutil.which("apt-get") is None, reason="apt-get (Debian) is not installed")


def world(bk: Backupctl, *, agent_lines: str = "", extra_repo_lines: str = "") -> Path:
    """The configuration with [agent] dpkg_log in the test's folder; returns that log's path."""
    log = bk.base / "dpkg" / "dpkg.log"
    bk.write_config(agent_lines=f"dpkg_log = {json.dumps(str(log))}\n{agent_lines}",
                    extra_repo_lines=extra_repo_lines)
    write(bk.src / "lettre.txt", "Cher confrère\n")
    return log


def tagged(bk: Backupctl) -> list[dict]:
    return [s for s in bk.snapshots() if TAG in s["tags"]]


def s5(bk: Backupctl) -> dict:
    done = bk.run("compliance", "--json")
    assert done.returncode in (0, 4), str(done)  # 4: other rules FAIL here (no restore test, no sheet)
    return next(row for row in done.json()["rules"] if row["rule"] == "S5")


# ---- the command ------------------------------------------------------------------------


def test_one_snapshot_tagged_avant_installation_a_day(bk: Backupctl) -> None:
    world(bk)
    bk.init()
    first = bk.run("pre-installation")
    assert first.returncode == 0 and first.stderr == "", str(first)
    [snapshot] = tagged(bk)
    assert first.stdout.startswith(f"backupctl: snapshot {snapshot['id'][:8]} ({TAG}) saved in main"), first.stdout
    assert snapshot["paths"] == [str(bk.src)]
    # A second apt run the same day: nothing taken, and it says so.
    second = bk.run("pre-installation")
    assert second.returncode == 0 and second.stderr == "", str(second)
    assert f"snapshot {snapshot['id'][:8]} ({TAG}) already taken today in main" in second.stdout, second.stdout
    assert len(bk.snapshots()) == 1
    # --force takes another; the backup is the real one (audit trail, records).
    assert bk.run("pre-installation", "--force").returncode == 0
    assert len(tagged(bk)) == 2
    assert bk.ok("audit", "verify", "--json").json()["records"] >= 3


def test_a_repository_that_cannot_be_opened_is_one_warning_and_exit_0(bk: Backupctl) -> None:
    world(bk)  # never `init`ed: like a disk not plugged in, or a NAS not mounted
    started = time.monotonic()
    done = bk.run("pre-installation")
    assert done.returncode == 0 and done.stdout == "", str(done)
    assert done.stderr.count("\n") == 1 and done.stderr.startswith(WARNING + "the repository main cannot be "
                                                                    "opened: no repository at"), done.stderr
    assert done.stderr.rstrip().endswith("the installation goes on") and "Traceback" not in done.stderr
    assert time.monotonic() - started < 15
    # The failure is remembered: no new attempt for 6 hours (each apt run would wait for the
    # repository again), one warning line saying why and until when; --force tries at once.
    bk.init()
    again = bk.run("pre-installation")
    assert again.returncode == 0 and again.stdout == "" and again.stderr.count("\n") == 1, str(again)
    assert again.stderr.startswith(WARNING + "the attempt at ") and "did not succeed (the repository main " \
        "cannot be opened" in again.stderr and "no new attempt before " in again.stderr, again.stderr
    assert "`backupctl pre-installation --force` tries now" in again.stderr
    assert bk.snapshots() == []
    assert "saved in main" in bk.ok("pre-installation", "--force").stdout


@pytest.fixture
def silent_server():
    """A TCP port that accepts connections and never answers (a server hung, a firewall that
    lets the connection through and drops the rest)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for connection in held:
        connection.close()
    listener.close()


def test_a_repository_that_does_not_answer_is_given_up_within_the_time_allowed(bk: Backupctl,
                                                                                silent_server: int) -> None:
    world(bk)
    bk.write_config(repo_url="s3://cabinet/serveur", agent_lines=f'dpkg_log = "{bk.base}/dpkg.log"',
                    extra_repo_lines=f'endpoint = "http://127.0.0.1:{silent_server}"\nregion = "us-east-1"\n'
                                     f'addressing = "path"\nread_timeout = 300\n')
    started = time.monotonic()
    done = bk.run("pre-installation", "--timeout", "4", env={"AWS_ACCESS_KEY_ID": "AKIATEST",
                                                             "AWS_SECRET_ACCESS_KEY": "secret"})
    elapsed = time.monotonic() - started
    assert done.returncode == 0, str(done)
    assert done.stderr == WARNING + "the repository main did not answer within 4 s; the installation goes on\n"
    assert elapsed < 4 + 10, elapsed  # the time allowed, and the program's start and stop


def test_a_backup_past_the_time_allowed_is_stopped(bk: Backupctl) -> None:
    world(bk, extra_repo_lines='\n[[hooks]]\nname = "slow"\nbefore = ["sleep", "120"]\n')
    bk.init()
    started = time.monotonic()
    done = bk.run("pre-installation", "--timeout", "5")
    elapsed = time.monotonic() - started
    assert done.returncode == 0, str(done)
    assert done.stderr == WARNING + ("the backup into main took longer than the time allowed and was stopped; "
                                     "the installation goes on\n")
    assert elapsed < 5 + 30 + 10, elapsed  # the time allowed, SIGTERM's grace, start and stop
    assert tagged(bk) == []
    # Remembered: the next apt runs do not wait for it again for 6 hours.
    started = time.monotonic()
    again = bk.run("pre-installation", "--timeout", "5")
    assert again.returncode == 0 and "took longer than the time allowed" in again.stderr, str(again)
    assert "no new attempt before" in again.stderr and time.monotonic() - started < 10


def test_an_attempt_killed_before_it_ended_holds_the_next_ones_back_for_six_hours(bk: Backupctl) -> None:
    """Killed (the hook's own timeout, a reboot): it could not say it failed; it was noted as it
    started. Six hours later, or once one succeeded, the next apt run tries again."""
    from agent import clock
    from agent.cli import preinstall_cmd
    from agent.state.records import Records

    world(bk)
    bk.init()
    records = Records(str(bk.state), "main")
    records.note(preinstall_cmd.ATTEMPT, clock.now() - dt.timedelta(hours=1))
    held = bk.run("pre-installation")
    assert held.returncode == 0 and "did not succeed (it was stopped before it ended)" in held.stderr, str(held)
    assert tagged(bk) == []
    records.note(preinstall_cmd.ATTEMPT, clock.now() - preinstall_cmd.BACKOFF - dt.timedelta(minutes=1))
    assert "saved in main" in bk.ok("pre-installation").stdout
    # An attempt that succeeded holds nothing back, even once its day's snapshot record is gone
    # (tests/system/test_installed_service.py forgets it so).
    assert Records(str(bk.state), "main").last(preinstall_cmd.ATTEMPT).detail.get("ok") is True
    doc = records.load()
    doc.pop(preinstall_cmd.RECORD)
    from agent.state.files import save_json
    save_json(records.path, doc)
    assert "saved in main" in bk.ok("pre-installation").stdout
    assert preinstall_cmd.BACKOFF == dt.timedelta(hours=6)  # as docs/INSTALL.md says


def test_a_snapshot_marked_suspect_by_the_ransomware_alarm_is_saved_with_a_warning(bk: Backupctl) -> None:
    """The backup's exit 5: saved, marked suspect. It is the copy all the same (taken, recorded,
    none again today), and the line says it is suspect."""
    from .test_ransomware_alarm import SCALE, bench_alarm, dataset

    world(bk)
    dataset.create(str(bk.src), SCALE, 2026)
    bk.init()
    bk.backup()
    bench_alarm.attack(str(bk.src))
    done = bk.run("pre-installation")
    assert done.returncode == 0 and "Traceback" not in done.stderr, str(done)
    [snapshot] = tagged(bk)
    assert done.stdout.startswith(f"backupctl: snapshot {snapshot['id'][:8]} ({TAG}) saved in main"), done.stdout
    assert done.stderr == (f"backupctl: warning: snapshot {snapshot['id'][:8]} ({TAG}) is marked suspect by the "
                           f"ransomware alarm: see `backupctl status`, then `backupctl acknowledge`; the "
                           f"installation goes on\n"), done.stderr
    assert "suspect" in snapshot["tags"]
    assert "already taken today" in bk.ok("pre-installation").stdout


def test_turned_off_in_the_configuration(bk: Backupctl) -> None:
    world(bk, agent_lines="copy_before_installation = false")
    bk.init()
    done = bk.ok("pre-installation")
    assert "copy_before_installation = false" in done.stdout and done.stderr == ""
    assert bk.snapshots() == []


def test_a_bad_configuration_is_a_warning_too(bk: Backupctl) -> None:
    bk.config.write_text("[agent\n")
    done = bk.run("pre-installation")
    assert done.returncode == 0 and done.stderr.startswith(WARNING) and "not valid TOML" in done.stderr, str(done)


# ---- a real dpkg, its log judged by compliance ----------------------------------------------


def build_package(where: Path, version: str) -> Path:
    tree = where / f"pkg-{version}"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text(
        f"Package: backupctl-test-pkg\nVersion: {version}\nArchitecture: all\n"
        f"Maintainer: backupctl tests <tests@example.org>\nDescription: a package of the backupctl tests\n")
    write(tree / "usr" / "share" / "doc" / "backupctl-test-pkg" / "README", f"version {version}\n")
    deb = where / f"backupctl-test-pkg_{version}_all.deb"
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(tree), str(deb)], check=True,
                   capture_output=True)
    return deb


class PrivateDpkg:
    """dpkg acting on a root folder of the test, logging where [agent] dpkg_log says."""

    def __init__(self, root: Path, log: Path) -> None:
        self.root, self.log = root, log
        (root / "var" / "lib" / "dpkg" / "updates").mkdir(parents=True)
        (root / "var" / "lib" / "dpkg" / "info").mkdir()
        (root / "var" / "lib" / "dpkg" / "status").write_text("")
        log.parent.mkdir(parents=True, exist_ok=True)

    def options(self) -> list[str]:
        return [f"--root={self.root}", f"--admindir={self.root}/var/lib/dpkg", f"--log={self.log}",
                "--force-not-root", "--force-script-chrootless"]

    def __call__(self, *args: str) -> None:
        subprocess.run(["dpkg", *self.options(), *args], check=True, capture_output=True)

    def installed(self) -> str:
        done = subprocess.run(["dpkg-query", f"--admindir={self.root}/var/lib/dpkg", "-W", "-f=${Version}",
                               "backupctl-test-pkg"], capture_output=True, text=True)
        return done.stdout


@needs_dpkg
def test_compliance_judges_the_log_a_real_dpkg_wrote(bk: Backupctl) -> None:
    log = world(bk)
    bk.init()
    bk.backup()  # an ordinary backup: not a copy before installation
    dpkg = PrivateDpkg(bk.base / "root", log)
    # No dpkg log: not applicable.
    row = s5(bk)
    assert row["status"] == "OK" and row["evidence_codes"] == [{"code": "no_dpkg_log", "log": str(log)}], row
    # A package installed without a copy: FAIL, naming the change.
    dpkg("-i", str(build_package(bk.base, "1.0")))
    assert dpkg.installed() == "1.0"
    row = s5(bk)
    assert row["status"] == "FAIL", row
    change = row["evidence_codes"][0]
    assert (change["code"], change["action"], change["package"]) == ("package_change", "install",
                                                                     "backupctl-test-pkg:all")
    assert row["evidence_codes"][1] == {"code": "no_copy_before_installation"}
    # The hook's snapshot, then an upgrade: OK, with that snapshot as evidence.
    bk.ok("pre-installation")
    [copy] = tagged(bk)
    time.sleep(1.1)  # dpkg's log counts whole seconds
    dpkg("-i", str(build_package(bk.base, "1.1")))
    assert dpkg.installed() == "1.1"
    row = s5(bk)
    assert row["status"] == "OK", row
    assert [e["code"] for e in row["evidence_codes"]] == ["package_change", "copy_before_installation"]
    assert row["evidence_codes"][0]["action"] == "upgrade"
    assert row["evidence_codes"][1]["snapshot"] == copy["id"][:8]
    # In French too, in the compliance table of the reports.
    params = {k: v for k, v in row["evidence_codes"][1].items() if k != "code"}
    assert evidence_text("copy_before_installation", params, "fr").startswith(
        f"précédé de la sauvegarde {copy['id'][:8]} (main, avant-installation) le ")
    # logrotate moves the log: the change is read in dpkg.log.1.
    log.rename(log.with_name("dpkg.log.1"))
    log.write_text("")
    assert s5(bk)["status"] == "OK"
    # A removal after it, the copy of today taken already: still within 24 h, OK.
    dpkg("-r", "backupctl-test-pkg")
    row = s5(bk)
    assert row["status"] == "OK" and row["evidence_codes"][0]["action"] == "remove", row
    # The table as printed.
    text = bk.run("compliance")
    assert text.returncode == 4 and "OK    S5" in text.stdout, text.stdout


@needs_dpkg
def test_a_change_before_the_copy_is_not_covered_by_it(bk: Backupctl) -> None:
    log = world(bk)
    bk.init()
    dpkg = PrivateDpkg(bk.base / "root", log)
    dpkg("-i", str(build_package(bk.base, "1.0")))
    time.sleep(1.1)
    bk.ok("pre-installation")
    row = s5(bk)
    assert row["status"] == "FAIL" and row["evidence_codes"][1] == {"code": "no_copy_before_installation"}, row


# ---- a real apt run -------------------------------------------------------------------------


def apt_get(bk: Backupctl, dpkg: PrivateDpkg, snippet: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """apt-get with its state, cache, logs and dpkg in the test's folder; `snippet` read as a
    configuration file (-c: after apt.conf.d, as a file of apt.conf.d is)."""
    apt = bk.base / "apt"
    for folder in ("state/lists/partial", "cache/archives/partial", "log", "sources.list.d"):
        (apt / folder).mkdir(parents=True, exist_ok=True)
    program = apt / "dpkg"
    program.write_text(f"#!/bin/sh\nexec dpkg {' '.join(dpkg.options())} \"$@\"\n")
    program.chmod(0o755)
    options = {"Dir::Etc::sourcelist": "/dev/null", "Dir::Etc::sourceparts": apt / "sources.list.d",
               "Dir::State": apt / "state", "Dir::State::status": dpkg.root / "var/lib/dpkg/status",
               "Dir::Cache": apt / "cache", "Dir::Log": apt / "log", "Dir::Bin::dpkg": program,
               "Debug::NoLocking": "1", "Dpkg::Use-Pty": "0"}
    argv = ["apt-get", "-y", "-c", str(snippet), *(f"-o{k}={v}" for k, v in options.items()), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=600,
                          env={**base_env(), "DEBIAN_FRONTEND": "noninteractive"}, stdin=subprocess.DEVNULL)


def hook_snippet(bk: Backupctl) -> Path:
    """The snippet install-service writes, its program this checkout's backupctl."""
    program = bk.base / "backupctl"
    program.write_text(f"#!/bin/sh\nexec {sys.executable} -m agent --config {bk.config} \"$@\"\n")
    program.chmod(0o755)
    snippet = bk.base / "80backupctl"
    snippet.write_text(apt_hook.render(str(program)))
    return snippet


@needs_dpkg
@needs_apt
def test_apt_takes_the_snapshot_before_dpkg_changes_the_packages(bk: Backupctl) -> None:
    log = world(bk)
    bk.init()
    dpkg = PrivateDpkg(bk.base / "root", log)
    done = apt_get(bk, dpkg, hook_snippet(bk), "install", str(build_package(bk.base, "1.0")))
    assert done.returncode == 0, done.stdout + done.stderr
    assert dpkg.installed() == "1.0"
    [copy] = tagged(bk)
    assert f"backupctl: snapshot {copy['id'][:8]} ({TAG}) saved in main" in done.stdout, done.stdout
    # Taken before dpkg began: its time precedes the first line dpkg wrote.
    first = log.read_text().splitlines()[0]
    began = local_time(dt.datetime.strptime(first[:19], "%Y-%m-%d %H:%M:%S"))
    assert dt.datetime.fromisoformat(copy["time"]) <= began + dt.timedelta(seconds=1)
    assert s5(bk)["status"] == "OK"
    # A second apt run the same day: no new snapshot, said in apt's output.
    done = apt_get(bk, dpkg, hook_snippet(bk), "install", str(build_package(bk.base, "1.1")))
    assert done.returncode == 0 and "already taken today" in done.stdout, done.stdout + done.stderr
    assert dpkg.installed() == "1.1" and len(tagged(bk)) == 1


@needs_dpkg
@needs_apt
def test_apt_goes_on_when_the_repository_cannot_be_reached(bk: Backupctl) -> None:
    log = world(bk)  # never `init`ed
    dpkg = PrivateDpkg(bk.base / "root", log)
    done = apt_get(bk, dpkg, hook_snippet(bk), "install", str(build_package(bk.base, "1.0")))
    assert done.returncode == 0, done.stdout + done.stderr
    assert dpkg.installed() == "1.0"
    warnings = [line for line in done.stderr.splitlines() if line.startswith("backupctl:")]
    assert len(warnings) == 1 and warnings[0].startswith(WARNING + "the repository main cannot be opened"), \
        done.stderr
    # compliance then says the installation had no copy.
    bk.init()
    assert s5(bk)["status"] == "FAIL"

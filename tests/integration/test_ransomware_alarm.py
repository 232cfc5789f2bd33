"""The ransomware alarm end to end (issue 22), with the real CLI on the bench dataset at a
small scale (bench/dataset.py, bench/alarm.py): a simulated attack is flagged (exit 5, tag
`suspect`, `summary.alarm`, status and compliance say so); ten ordinary weeks and a large
import of new scans are not; prune under the alarm keeps the last good snapshot, and after
`backupctl acknowledge` forgets as usual; the urgent e-mail, sent to a real SMTP server,
has counts and the diff command and no file name."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import json
import sys
from pathlib import Path

import pytest

from agent import errors
from agent.state.audit import AuditTrail
from agent.state.layout import StateLayout
from tests.support.mailserver import PASSWORD, USER, start_smtp

from .support import ROOT, Backupctl, assert_error, base_env

SCALE = 0.01  # 6 MiB database, 2 images, 200 letters in ~150 folders, 5 scans


def _bench(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(ROOT / "bench"))  # bench/alarm.py imports its neighbour dataset.py
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "bench"))
    return module


dataset = _bench("dataset")
bench_alarm = _bench("alarm")


@pytest.fixture
def practice(bk: Backupctl) -> Backupctl:
    dataset.create(str(bk.src), SCALE, 2026)
    bk.init()
    first = bk.backup()
    assert first["alarm"] is None  # nothing to compare a first backup with
    return bk


def _attacked(bk: Backupctl) -> dict:
    bench_alarm.attack(str(bk.src))
    result = bk.run("backup", "--json")
    assert result.returncode == errors.SUSPECT_BACKUP_EXIT_CODE, str(result)
    assert "Traceback" not in result.stderr
    return result.json()



@contextlib.contextmanager
def _daemon_jobs(bk: Backupctl, monkeypatch, controller):
    """The daemon's own job functions (agent.daemon.jobs) on this world's configuration, its
    children inheriting what the test's commands do; after, the SMTP server stopped and the
    module's runner and configuration reset."""
    from agent.config import load
    from agent.daemon import jobs

    for name, value in base_env().items():
        monkeypatch.setenv(name, value)
    try:
        jobs.install(jobs.JobRunner(str(bk.config), str(bk.state)), load(str(bk.config)))
        yield jobs
    finally:
        controller.stop()
        jobs._config = None
        jobs._runner = None


def test_an_attack_is_flagged_and_status_and_compliance_say_so(practice: Backupctl) -> None:
    bk = practice
    good = bk.snapshots()[-1]["id"]
    doc = _attacked(bk)
    alarm = doc["alarm"]
    assert alarm["suspect"] is True and alarm["last_good"] == good
    assert alarm["lost_compression"] >= 10 and alarm["renamed"] >= 10 and alarm["note_folders"] >= 100
    assert 0.25 <= alarm["changed_share"] <= 0.35
    snaps = bk.snapshots()
    assert "suspect" in snaps[-1]["tags"] and "suspect" not in snaps[0]["tags"]

    # the human form: a warning naming counts and the diff command, never a file
    result = bk.run("backup")  # the attack goes on: the next one is compared with the suspect one
    assert result.returncode in (0, errors.SUSPECT_BACKUP_EXIT_CODE), str(result)
    status = bk.run("status", "--json")
    assert status.returncode == errors.OBLIGATIONS_AT_RISK_EXIT_CODE, str(status)
    repo = status.json()["repositories"][0]
    assert repo["at_risk_codes"][0] == "ransomware_alarm"
    assert f"backupctl diff {good[:8]} {doc['snapshot_id'][:8]}" in repo["at_risk"][0]
    compliance = bk.run("compliance", "--json")
    assert compliance.returncode == errors.OBLIGATIONS_AT_RISK_EXIT_CODE, str(compliance)
    rows = {row["rule"]: row for row in compliance.json()["rules"]}
    assert rows["R1"]["status"] == "FAIL", rows["R1"]
    assert f"backupctl diff {good[:8]}" in json.dumps(rows["R1"])

    # the restore-test report's compliance table says it too, with the diff command
    report = bk.ok_json("restore-test", "--sample", "3")["report"]
    rows = {row["rule"]: row for row in json.loads(Path(report["json"]).read_text())["compliance"]["rules"]}
    assert rows["R1"]["status"] == "FAIL"
    assert f"voir ce qui a changé : backupctl diff {good[:8]} {doc['snapshot_id'][:8]}" in rows["R1"]["evidence"][0]

    # acknowledged (every suspect snapshot): recorded in the audit trail, status and compliance clear
    for snap in bk.snapshots():
        if "suspect" in snap["tags"]:
            bk.ok("acknowledge", snap["id"][:8])
    records = [json.loads(line) for line in Path(AuditTrail(str(bk.state)).path).read_text().splitlines()]
    assert [r["action"] for r in records].count("ransomware_alarm") >= 1
    acknowledged = [r for r in records if r["action"] == "acknowledge"]
    assert acknowledged[0]["snapshot"] == doc["snapshot_id"] and acknowledged[0]["user"]
    repo = bk.run("status", "--json").json()["repositories"][0]
    assert "ransomware_alarm" not in repo["at_risk_codes"]
    rows = {row["rule"]: row for row in bk.run("compliance", "--json").json()["rules"]}
    assert rows["R1"]["status"] == "OK"
    state = json.loads(Path(StateLayout(str(bk.state)).records("main")).read_text())
    assert state["ransomware_alarm"]["open"] is False


def test_intermittent_encryption_in_place_keeping_the_names_is_flagged(practice: Backupctl) -> None:
    """bench/alarm.py's variant: every file encrypted 1 KiB in 8, names kept, a note of its own
    name per folder: nothing loses compression, no rename, no shared note; the changed share
    alone (`changed_share_alone`) flags it."""
    bench_alarm.attack_in_place(str(practice.src))
    result = practice.run("backup", "--json")
    assert result.returncode == errors.SUSPECT_BACKUP_EXIT_CODE, str(result)
    alarm = result.json()["alarm"]
    assert (alarm["lost_compression"], alarm["renamed"], alarm["note_folders"]) == (0, 0, 1), alarm
    assert alarm["changed_share"] == 1.0 and "changed_share_alone" in alarm["signs"]


def test_ten_ordinary_weeks_and_a_large_import_are_not_flagged(practice: Backupctl) -> None:
    bk = practice
    for week in range(1, 11):
        dataset.mutate(str(bk.src), week)
        alarm = bk.backup()["alarm"]  # exit 0
        assert alarm["suspect"] is False and alarm["signs"] == [], (week, alarm)
    bench_alarm.import_scans(str(bk.src), count=150)
    alarm = bk.backup()["alarm"]
    assert alarm["suspect"] is False and alarm["signs"] == [], alarm
    assert all("suspect" not in s["tags"] for s in bk.snapshots())


def test_with_the_alarm_disabled_an_attack_is_not_compared(practice: Backupctl) -> None:
    bk = practice
    bk.write_config(extra_repo_lines="\n[alarm]\nenabled = false")
    bench_alarm.attack(str(bk.src))
    doc = bk.backup()  # exit 0
    assert doc["alarm"] is None
    assert all("suspect" not in s["tags"] for s in bk.snapshots())


def test_prune_under_the_alarm_keeps_the_last_good_snapshot_until_acknowledged(practice: Backupctl) -> None:
    bk = practice
    dataset.mutate(str(bk.src), 1)
    good = bk.backup()["snapshot_id"]
    oldest = bk.snapshots()[0]["id"]
    suspect = _attacked(bk)["snapshot_id"]
    # Every snapshot is of this week: without the alarm only the newest (the suspect one) stays.
    result = bk.ok("prune")
    assert f"ransomware alarm open: nothing from the last good snapshot {good[:8]} on is forgotten" in result.stdout
    kept = [s["id"] for s in bk.snapshots()]
    assert kept == [good, suspect] and oldest not in kept

    missing = bk.run("acknowledge", "ffffffff")
    assert_error(missing, errors.UsageError.exit_code, "no snapshot id starts with")
    not_suspect = bk.run("acknowledge", good[:8])
    assert_error(not_suspect, errors.UsageError.exit_code, "is not marked suspect")

    bk.ok("acknowledge", suspect[:8])
    result = bk.ok("prune")
    assert "ransomware alarm" not in result.stdout
    assert [s["id"] for s in bk.snapshots()] == [suspect]


def test_the_daemon_s_urgent_e_mail_has_counts_and_the_diff_command_and_no_file_name(
        practice: Backupctl, tmp_path: Path, monkeypatch) -> None:
    """The daemon's own job function (agent.daemon.jobs.run_job) runs the real backup as its
    child, reads exit 5 and sends the URGENT e-mail to a real SMTP server (STARTTLS, login)."""
    bk = practice
    good = bk.snapshots()[-1]["id"]
    bench_alarm.attack(str(bk.src))
    controller, mailbox, port, cert = start_smtp(tmp_path, mode="starttls")
    password = tmp_path / "smtp-password"
    password.write_text(PASSWORD + "\n")
    password.chmod(0o600)
    with bk.config.open("a", encoding="utf-8") as handle:
        handle.write(f'\n[alerts]\nemail_to = ["docteur@cabinet.fr"]\nemail_from = "backupctl@cabinet.fr"\n'
                     f'smtp_host = "127.0.0.1"\nsmtp_port = {port}\nsmtp_security = "starttls"\n'
                     f'smtp_user = "{USER}"\nsmtp_password_file = "{password}"\nsmtp_ca_file = "{cert}"\n')
    with _daemon_jobs(bk, monkeypatch, controller) as jobs:
        jobs.run_job("daily:main")
    suspect = bk.snapshots()[-1]
    assert "suspect" in suspect["tags"]
    urgent = [m for m in mailbox.messages if m["Subject"].startswith("[backupctl] URGENT")]
    assert len(urgent) == 1, [m["Subject"] for m in mailbox.messages]
    body = urgent[0].get_content()
    assert f"backupctl diff {good[:8]} {suspect['id'][:8]}" in body
    assert f"backupctl acknowledge {suspect['id'][:8]}" in body
    assert "ne se compressent plus" in body and "dossiers les plus touchés" in body
    (listed,) = [line.split(" : ", 1)[1] for line in body.splitlines() if "dossiers les plus touchés" in line]
    shown = listed.split(", ")
    # by default the source folder only ([alarm] alert_folder_depth = 0): the folders below it
    # may be named after a patient
    assert shown == [str(bk.src)], shown
    for message in mailbox.messages:  # the urgent one, and the risks' (the alarm among them)
        text = message["Subject"] + message.get_content()
        for name in ("lettre-", ".locked", ".txt", ".jpg", ".pdf", "cabinet.db", "LISEZ-MOI"):
            assert name not in text, (name, message["Subject"])


def test_a_suspect_backup_by_hand_is_alerted_once_after_the_daemon_s_next_job(
        practice: Backupctl, tmp_path: Path, monkeypatch) -> None:
    """A backup run by hand (or by the apt hook) exits 5; the daemon's next job, whatever it
    is, sends the URGENT e-mail once; the job after it sends no second one."""
    bk = practice
    bench_alarm.attack(str(bk.src))
    assert bk.run("backup").returncode == errors.SUSPECT_BACKUP_EXIT_CODE
    suspect = bk.snapshots()[-1]["id"]
    controller, mailbox, port, _cert = start_smtp(tmp_path, mode="none")
    with bk.config.open("a", encoding="utf-8") as handle:
        handle.write(f'\n[alerts]\nemail_to = ["docteur@cabinet.fr"]\nsmtp_host = "127.0.0.1"\n'
                     f'smtp_port = {port}\nsmtp_security = "none"\n')

    def urgent() -> list:
        return [m for m in mailbox.messages if m["Subject"].startswith("[backupctl] URGENT")]

    with _daemon_jobs(bk, monkeypatch, controller) as jobs:
        jobs.run_job("check:main")
        assert len(urgent()) == 1, [m["Subject"] for m in mailbox.messages]
        assert f"backupctl acknowledge {suspect[:8]}" in urgent()[0].get_content()
        jobs.run_job("check:main")
        jobs.run_job("daily:main")  # compared with the suspect snapshot: not suspect itself
        assert len(urgent()) == 1, [m["Subject"] for m in mailbox.messages]


def test_a_folder_name_that_is_not_utf8_reaches_the_urgent_e_mail(practice: Backupctl, tmp_path: Path,
                                                                   monkeypatch) -> None:
    """[alarm] alert_folder_depth = 1 and the folder hit named with bytes that are not UTF-8:
    the URGENT e-mail goes out, the bytes shown as \\xff\\xfe."""
    bk = practice
    folder = os.path.join(os.fsencode(bk.src), b"\xff\xfe")
    os.mkdir(folder)
    for i in range(12):
        with open(os.path.join(folder, b"lettre-%d.txt" % i), "wb") as handle:
            handle.write(b"Madame, Monsieur, " * 1000)
    bk.backup()
    for i in range(12):  # encrypted in place
        with open(os.path.join(folder, b"lettre-%d.txt" % i), "wb") as handle:
            handle.write(os.urandom(18_000))
    controller, mailbox, port, _cert = start_smtp(tmp_path, mode="none")
    with bk.config.open("a", encoding="utf-8") as handle:
        handle.write(f'\n[alarm]\nalert_folder_depth = 1\n[alerts]\nemail_to = ["docteur@cabinet.fr"]\n'
                     f'smtp_host = "127.0.0.1"\nsmtp_port = {port}\nsmtp_security = "none"\n')
    with _daemon_jobs(bk, monkeypatch, controller) as jobs:
        jobs.run_job("daily:main")
    assert "suspect" in bk.snapshots()[-1]["tags"]
    urgent = [m for m in mailbox.messages if m["Subject"].startswith("[backupctl] URGENT")]
    assert len(urgent) == 1, [m["Subject"] for m in mailbox.messages]
    assert f"dossiers les plus touchés : {bk.src}/\\xff\\xfe" in urgent[0].get_content()


def test_on_s3_the_last_good_snapshot_s_object_lock_is_extended(bk: Backupctl, s3) -> None:
    """With object lock (moto_server), a suspect backup locks the last good snapshot's objects
    `[alarm] lock_days` (the configured one, not 90) ahead at once, and prune under the alarm
    extends them again by the lock_days configured when it runs."""
    import datetime as dt
    import uuid

    prefix = "alarm-" + uuid.uuid4().hex[:8]
    def configure(alarm_lock_days: int) -> None:
        bk.write_config(repo_url=f"s3://{s3.lock_bucket}/{prefix}",
                        extra_repo_lines=f'endpoint = "{s3.url}"\nregion = "{s3.region}"\naddressing = "path"\n'
                                         f'object_lock = "compliance"\nlock_days = 3\n\n'
                                         f'[alarm]\nlock_days = {alarm_lock_days}')

    configure(40)
    for folder in range(12):
        for i in range(4):
            path = bk.src / f"dossier-{folder:02d}" / f"lettre-{i}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("Madame, suite à la consultation, " * 300)
    bk.ok("init", env=s3.env())
    good = bk.ok_json("backup", env=s3.env())["snapshot_id"]
    client = s3.client()

    def retention(key: str) -> dt.datetime:
        return client.head_object(Bucket=s3.lock_bucket, Key=f"{prefix}/{key}")["ObjectLockRetainUntilDate"]

    now = dt.datetime.now(dt.timezone.utc)
    assert retention(f"snapshots/{good}") < now + dt.timedelta(days=4)  # the write-time lock only
    bench_alarm.attack(str(bk.src), share=0.5)
    result = bk.run("backup", env=s3.env())
    assert result.returncode == errors.SUSPECT_BACKUP_EXIT_CODE, str(result)
    assert f"the object lock of the last good snapshot {good[:8]} is extended" in result.stderr
    assert now + dt.timedelta(days=39) < retention(f"snapshots/{good}") < now + dt.timedelta(days=41)  # not 90
    packs = [o["Key"][len(prefix) + 1:] for o in
             client.list_objects_v2(Bucket=s3.lock_bucket, Prefix=f"{prefix}/data/")["Contents"]]
    assert max(retention(p) for p in packs) > now + dt.timedelta(days=39)
    configure(60)  # prune extends the lock itself, by the lock_days configured then
    prune = bk.ok("prune", env=s3.env())
    assert "ransomware alarm open" in prune.stdout
    assert now + dt.timedelta(days=59) < retention(f"snapshots/{good}") < now + dt.timedelta(days=61)

"""Alerts against real servers on loopback: an SMTP server (aiosmtpd) with STARTTLS or
implicit TLS and a login, and an HTTP server for the webhook. A failing alert is reported,
never raised; the daemon alerts on a failed job and on obligations at risk, in French."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from agent.alerts import Alert, AlertSettings, send
from tests.support.mailserver import PASSWORD, USER, WebhookServer, free_port, start_smtp
from tests.support.waits import wait_until

from .support import ROOT, Backupctl, base_env, write

ALERT = Alert(subject="[backupctl] ÉCHEC : la sauvegarde hebdomadaire", body="Le disque était absent.\nÉtapes…",
              facts={"event": "job_failed", "exit_codes": [19]})


@pytest.mark.parametrize("mode, port_key", [("starttls", "starttls"), ("tls", "tls")])
def test_email_over_tls_with_login(tmp_path, mode, port_key):
    controller, mailbox, port, cert = start_smtp(tmp_path, mode=mode)
    try:
        password = tmp_path / "smtp-password"
        password.write_text(PASSWORD + "\n")
        settings = AlertSettings(email_to=("docteur@cabinet.fr", "prestataire@exemple.fr"),
                                 email_from="backupctl@cabinet.fr", smtp_host="127.0.0.1", smtp_port=port,
                                 smtp_security=mode, smtp_user=USER, smtp_password_file=str(password),
                                 smtp_ca_file=str(cert))
        assert send(settings, ALERT) == []
        (message,) = mailbox.messages
        assert message["Subject"] == ALERT.subject and message["To"] == "docteur@cabinet.fr, prestataire@exemple.fr"
        assert "Le disque était absent." in message.get_content()
    finally:
        controller.stop()


def test_a_wrong_password_or_an_untrusted_certificate_is_reported_not_raised(tmp_path):
    controller, mailbox, port, cert = start_smtp(tmp_path, mode="starttls")
    try:
        wrong = tmp_path / "wrong"
        wrong.write_text("nope")
        base = dict(email_to=("a@b.fr",), smtp_host="127.0.0.1", smtp_port=port, smtp_user=USER)
        problems = send(AlertSettings(**base, smtp_password_file=str(wrong), smtp_ca_file=str(cert)), ALERT)
        assert len(problems) == 1 and "e-mail to a@b.fr via 127.0.0.1" in problems[0]
        problems = send(AlertSettings(**base, smtp_password_file=str(wrong)), ALERT)  # system CAs only
        assert len(problems) == 1 and "CERTIFICATE_VERIFY_FAILED" in problems[0]
        assert mailbox.messages == []
    finally:
        controller.stop()
    nobody = AlertSettings(email_to=("a@b.fr",), smtp_host="127.0.0.1", smtp_port=free_port(), timeout=2)
    assert len(send(nobody, ALERT)) == 1


def test_webhook_posts_json_and_failures_are_reported_with_the_token_hidden():
    hook = WebhookServer()
    try:
        assert send(AlertSettings(webhook_url=hook.url), ALERT) == []
        (received,) = hook.received
        assert received["content_type"] == "application/json"
        assert received["json"] == {"subject": ALERT.subject, "text": ALERT.body, "event": "job_failed",
                                    "exit_codes": [19]}
    finally:
        hook.stop()
    failing = WebhookServer(status=500)
    try:
        problems = send(AlertSettings(webhook_url=failing.url), ALERT)
        assert len(problems) == 1 and "500" in problems[0] and "secret-token" not in problems[0]
    finally:
        failing.stop()


def test_the_daemon_alerts_on_a_failed_job_and_on_risks_in_french(bk: Backupctl, tmp_path):
    controller, mailbox, port, _cert = start_smtp(tmp_path, mode="none")
    hook = WebhookServer()
    daemon = None
    try:
        write(bk.src / "lettre.txt", "Madame, " * 100)
        mount = tmp_path / "usb"  # no disk plugged in: the disks' backup fails (exit 19)
        bk.config.write_text(bk.config.read_text() + f'''
[repositories.usb]
url = "file://{mount}"
media = ["DISQUE-A", "DISQUE-B"]
[schedule]
backup = "fri 20:00"
[alerts]
email_to = ["docteur@cabinet.fr"]
smtp_host = "127.0.0.1"
smtp_port = {port}
smtp_security = "none"
webhook_url = "{hook.url}"
''')
        assert bk.run("init").returncode == 0
        daemon = subprocess.Popen([sys.executable, "-m", "agent", "--config", str(bk.config), "daemon"],
                                  env=base_env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

        def subjects_so_far() -> list[str]:
            return [m["Subject"] for m in mailbox.messages]

        wait_until(lambda: any("ÉCHEC" in s and "usb" in s for s in subjects_so_far()), timeout=150, interval=0.2,
                   what="the failure alert of the disks' backup")
        # Then the quarterly restore test of main (never made): its report goes out too.
        wait_until(lambda: any("Test de restauration" in s for s in subjects_so_far()), timeout=150, interval=0.2,
                   what="the restore test's report")
        wait_until(lambda: any("À surveiller" in s and "« usb »" in s for s in subjects_so_far()), timeout=60,
                   interval=0.2, what="the risk alert about the disks")
        # The stop waits for the running job (the restore test) to end with its risk alerts:
        # once the daemon has exited, an alert it did not send will never come.
        daemon.send_signal(signal.SIGTERM)
        _out, err = daemon.communicate(timeout=60)
        assert daemon.returncode == 0, err.decode()
        assert "daemon stopped" in err.decode()
        subjects = subjects_so_far()
        failure = next(m for m in mailbox.messages if "ÉCHEC" in m["Subject"] and "usb" in m["Subject"])
        assert "la sauvegarde hebdomadaire de « usb »" in failure["Subject"]
        body = failure.get_content()
        assert "a échoué" in body and "backup : code 19 (aucun des disques de sauvegarde prévus n'est branché)" in body
        assert "À faire : brancher le disque de la semaine" in body
        report = next(m for m in mailbox.messages if "Test de restauration" in m["Subject"])
        assert "réussi pour « main »" in report["Subject"]
        assert "empreinte SHA-256 vérifiée pour 1" in report.get_body(("plain",)).get_content()
        assert "Une copie du rapport est jointe, sans noms de fichiers" in report.get_body(("plain",)).get_content()
        report_text = report.get_body(("plain",)).get_content()
        assert "(échantillon)" in report_text and "(sample)" not in report_text  # French, every word of it
        assert "(NON CONFORME)" in report_text and not any(w in report_text for w in ("(FAIL)", "(WARN)"))
        # The alert carries the report without file names: the page attached (not the PDF of
        # the full report), its facts to the webhook.
        (page,) = report.iter_attachments()
        assert page.get_content_type() == "text/html" and "Rapport de test de restauration" in page.get_content()
        posted = next(h["json"] for h in hook.received if h["json"].get("event") == "restore_test")
        assert posted["ok"] is True and posted["report_document"]["schema"] == "backupctl-restore-test-report/1"
        assert posted["report_document"]["report_id"] in page.get_content()
        # Risks: the disks have no backup (their job failed), in French like the rest.
        assert any("À surveiller" in s and "« usb »" in s for s in subjects)
        risk_bodies = [m.get_content() for m in mailbox.messages if "À surveiller" in m["Subject"]]
        assert any("  - aucune sauvegarde n'a encore été faite (règle S1 : au moins chaque semaine)" in b
                   for b in risk_bodies), risk_bodies
        assert not any(english in b for b in risk_bodies for english in ("no backup", "no restore test", "rule S"))
        # main's backup ran before its catch-up restore test, which then passed: no risk
        # e-mail about a restore test that was queued (issue 18, point 3).
        assert not any("À surveiller" in s and "« main »" in s for s in subjects), subjects
        assert any(h["json"].get("event") == "job_failed" and h["json"]["exit_codes"] == [19] for h in hook.received)
        # The job's own result is recorded whatever the alerts did.
        record = json.loads((Path(bk.state) / "daemon" / "jobs.json").read_text())
        assert record["weekly:usb"]["last_exit"] == [19] and record["weekly:main"]["last_exit"] == [0, 0, 0]
        assert "lettre" not in err.decode()
    finally:
        if daemon is not None and daemon.poll() is None:  # a failure half-way leaves no daemon running
            daemon.kill()
            daemon.communicate(timeout=60)
        controller.stop()
        hook.stop()


def test_the_report_copy_without_file_names_is_attached_unless_turned_off(bk: Backupctl):
    from agent.daemon.jobs import restore_test_alert

    write(bk.src / "patients" / "Martin Paul" / "ordonnance.txt", "Paracétamol\n")
    bk.init()
    bk.backup()
    result = bk.run("restore-test", "--json")
    assert result.returncode == 0, str(result)
    report = result.json()["report"]
    entry = {"steps": [{"command": "restore-test", "exit_code": 0,
                        "summary": {"files": 1, "sha256_verified": 1, "failures": 0, "scratch_wiped": True,
                                    "report": report}}]}
    attached = restore_test_alert("restore-test:main", entry, True, attach=True)
    ((name, kind, page),) = attached.attachments
    assert name.endswith("-sans-noms-de-fichiers.html") and kind == "text/html"
    assert report["id"] in page.decode() and 'id="shared-copy"' in page.decode()
    assert attached.facts["report_document"]["shared_copy"] == {"failures": 0, "full_report": report["html"]}
    assert attached.facts["rules"] and all(set(r) == {"rule", "status"} for r in attached.facts["rules"])
    kept = restore_test_alert("restore-test:main", entry, True, attach=False)
    assert kept.attachments == [] and "report_document" not in kept.facts
    assert report["html"] in kept.body  # says where the report is instead


def test_a_backup_saved_without_its_database_is_alerted():
    from agent.daemon.jobs import _backup_problems, warning_alert

    entry = {"steps": [{"command": "backup", "exit_code": 3,
                        "summary": {"partial": True, "database_failures": 1, "hook_failures": 0}},
                       {"command": "prune", "exit_code": 0, "summary": {}}]}
    assert _backup_problems(entry) == {"database_failures": 1}
    alert = warning_alert("weekly:main", entry)
    assert "À vérifier" in alert.subject and "« main »" in alert.subject
    assert "base de données" in alert.body and alert.facts["database_failures"] == 1
    assert _backup_problems({"steps": [{"command": "backup", "summary": {"database_failures": 0}}]}) == {}


def test_a_failure_alert_says_the_exit_codes_meaning_never_the_childs_error_line():
    from agent.daemon.jobs import failure_alert

    line = "backupctl: error: the restore target is full: srv/patients/Dupont Jean/compte rendu.pdf"
    entry = {"steps": [{"command": "backup", "exit_code": 3, "summary": {"snapshot_id": "ab" * 32}},
                       {"command": "check", "exit_code": 15, "summary": {}, "error_detail": line}]}
    alert = failure_alert("weekly:main", entry)
    assert "check : code 15 (la cible de restauration est pleine" in alert.body
    assert "La sauvegarde abababab a bien été enregistrée" in alert.body
    assert alert.facts["failed_step"] == "check" and alert.facts["exit_codes"] == [3, 15]
    assert alert.facts["meaning"].startswith("la cible de restauration est pleine")
    assert "Dupont" not in alert.body + alert.subject + json.dumps(alert.facts, ensure_ascii=False)


def test_every_exit_code_of_the_exception_tree_has_a_meaning():
    from agent import errors
    from agent.daemon.outcomes import known_exit_codes

    codes = {cls.exit_code for cls in vars(errors).values()
             if isinstance(cls, type) and issubclass(cls, errors.BackupctlError)}
    codes |= {errors.PARTIAL_BACKUP_EXIT_CODE, errors.INTERRUPTED_EXIT_CODE}
    assert codes <= known_exit_codes()


def test_a_folder_name_that_is_not_utf8_does_not_stop_the_e_mail(tmp_path):
    """A folder named with bytes that are not UTF-8 comes from the file system with surrogate
    escapes (os.fsdecode); the e-mail (the URGENT one above all) must still go out, the
    bytes shown as \\xff."""
    import os

    folder = os.fsdecode(b"/srv/cabinet/\xff\xfe")
    controller, mailbox, port, cert = start_smtp(tmp_path, mode="starttls")
    try:
        settings = AlertSettings(email_to=("docteur@cabinet.fr",), smtp_host="127.0.0.1", smtp_port=port,
                                 smtp_ca_file=str(cert))
        alert = Alert(subject=f"[backupctl] URGENT : {folder}", body=f"dossiers les plus touchés : {folder}\n",
                      facts={"folders": [folder]})
        assert send(settings, alert) == []
        (message,) = mailbox.messages
        assert "dossiers les plus touchés : /srv/cabinet/\\xff\\xfe" in message.get_content()
        assert message["Subject"] == "[backupctl] URGENT : /srv/cabinet/\\xff\\xfe"
    finally:
        controller.stop()
    hook = WebhookServer()
    try:
        assert send(AlertSettings(webhook_url=hook.url), alert) == []
        (posted,) = hook.received
        assert posted["json"]["folders"] == ["/srv/cabinet/\\xff\\xfe"]
    finally:
        hook.stop()

"""No patient data leaves by e-mail, webhook or log (docs/SECURITY.md section 6).

Each test runs the real daemon (`backupctl daemon`, its children, a real SMTP server and
a real webhook server on loopback) over a source holding one patient-like file,
"patients/Dupont Jean/Dupont Jean - compte rendu.pdf", and makes one job go wrong: a
partial backup (the file unreadable), a failing restore test (a damaged pack), a full
restore-test target, a failed database dump (a database kept in the patient's folder).
The file's name and its folder's must appear in no e-mail (body, headers, decoded
attachments), no webhook body and no line the daemon logs, while the facts that do go out
(counts, snapshot ids, rule ids, the exit code's meaning) are there. The full report with
the names stays on the server.

Each test also shows that the names were there to leak: the child the daemon ran had them
in its output (its --json document, or its error line), so a daemon that logged or mailed
what its children print would fail here.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.mailserver import WebhookServer, start_smtp
from tests.support.waits import wait_until

from .support import ROOT, Backupctl, base_env, random_file, write

FILE_NAME = "Dupont Jean - compte rendu.pdf"
FOLDER = "Dupont Jean"
NEEDLES = ("Dupont", "compte rendu")  # in the file's name and in its folder's
# Root without the capabilities that bypass file permissions: a mode-000 file is as
# unreadable to it (and to the children it starts) as to any user.
WITHOUT_DAC = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]


def _patient_file(bk: Backupctl) -> Path:
    path = bk.src / "patients" / FOLDER / FILE_NAME
    random_file(path, 3 * 2**20)
    return path


def _alerting_config(bk: Backupctl, smtp_port: int, webhook_url: str) -> None:
    bk.config.write_text(bk.config.read_text() + f'''
[schedule]
backup = "fri 20:00"
[alerts]
email_to = ["docteur@cabinet.fr"]
smtp_host = "127.0.0.1"
smtp_port = {smtp_port}
smtp_security = "none"
webhook_url = "{webhook_url}"
''', encoding="utf-8")


class World:
    """A practice with alerts going to a real SMTP server and a real webhook server."""

    def __init__(self, bk: Backupctl, tmp: Path) -> None:
        self.bk = bk
        self.controller, self.mailbox, port, _cert = start_smtp(tmp, mode="none")
        self.hook = WebhookServer()
        _alerting_config(bk, port, self.hook.url)
        self.log = ""

    def close(self) -> None:
        self.controller.stop()
        self.hook.stop()

    def run_daemon(self, *, prefix: tuple[str, ...] = (), timeout: float = 300) -> None:
        """Start the daemon, let it catch up (the weekly backup, then the quarterly restore
        test, whose report is mailed last but for the risks), stop it; keep its log."""
        log_path = self.bk.base / "daemon.log"
        with open(log_path, "wb") as log:
            daemon = subprocess.Popen([*prefix, sys.executable, "-m", "agent",
                                       "--config", str(self.bk.config), "daemon"],
                                      env=base_env(), cwd=ROOT, stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=log)
            try:
                wait_until(lambda: daemon.poll() is not None or any(
                    "Test de restauration" in m["Subject"] for m in self.mailbox.messages),
                    timeout=timeout, interval=0.2, what="the restore test's e-mail")
            finally:
                # A stop waits for the job in progress, the risk alerts that end it included:
                # once the daemon has said it stopped, every alert it would send has been sent.
                daemon.send_signal(signal.SIGTERM)
                daemon.wait(timeout=60)
        self.log = log_path.read_text(encoding="utf-8", errors="replace")
        assert daemon.returncode == 0 and "Traceback" not in self.log, self.log
        assert "daemon stopped" in self.log, self.log
        assert any("Test de restauration" in m["Subject"] for m in self.mailbox.messages), self.log

    def message(self, subject_part: str):
        found = [m for m in self.mailbox.messages if subject_part in m["Subject"]]
        assert found, f"no e-mail about {subject_part!r}: {[m['Subject'] for m in self.mailbox.messages]}"
        return found[-1]

    def posted(self, event: str) -> dict:
        found = [h["json"] for h in self.hook.received if h["json"].get("event") == event]
        assert found, f"no webhook {event!r}: {[h['json'].get('event') for h in self.hook.received]}"
        return found[-1]

    def everything_that_left(self) -> list[tuple[str, str]]:
        """(what, text) of every e-mail part (decoded), every webhook body and the log."""
        out = []
        for message in self.mailbox.messages:
            subject = message["Subject"]
            out.append((f"e-mail {subject!r} as sent", message.as_bytes().decode("utf-8", "replace")))
            for part in message.walk():
                if part.is_multipart():
                    continue
                content = part.get_content()
                text = content if isinstance(content, str) else content.decode("latin-1")
                out.append((f"e-mail {subject!r}, part {part.get_filename() or part.get_content_type()}", text))
        for received in self.hook.received:
            out.append((f"webhook {received['json'].get('event')}", received["raw"].decode("utf-8")))
            out.append((f"webhook {received['json'].get('event')} (decoded)",
                        json.dumps(received["json"], ensure_ascii=False)))
        out.append(("the daemon's log", self.log))
        return out

    def assert_no_patient_file_name(self) -> None:
        assert self.mailbox.messages and self.hook.received
        for what, text in self.everything_that_left():
            for needle in NEEDLES:
                assert needle not in text, f"{needle!r} left the server in {what}:\n{text[:3000]}"

    def job(self, job_id: str) -> dict:
        return json.loads((Path(self.bk.state) / "daemon" / "jobs.json").read_text())[job_id]


@pytest.fixture
def world(bk: Backupctl, tmp_path: Path):
    made = World(bk, tmp_path)
    try:
        yield made
    finally:
        made.close()


def test_a_partial_backup_is_alerted_by_counts_without_the_unreadable_file_name(bk: Backupctl, world: World):
    write(bk.src / "lettre.txt", "Cher confrère\n")
    unreadable = _patient_file(bk)
    bk.init()
    os.chmod(unreadable, 0o000)

    world.run_daemon(prefix=tuple(WITHOUT_DAC))

    backup = world.job("weekly:main")["steps"][0]
    assert backup["command"] == "backup" and backup["exit_code"] == 3
    snapshot = backup["summary"]["snapshot_id"]
    warning = world.message("À vérifier")
    body = warning.get_content()
    assert "1 fichier(s) ou dossier(s) n'ont pas pu être lus" in body and snapshot[:8] in body
    posted = world.posted("backup_warnings")
    assert posted["unreadable"] == 1 and posted["snapshot_id"] == snapshot and posted["exit_codes"][0] == 3
    world.assert_no_patient_file_name()
    # By hand, on the server's terminal, the IT person still gets the name; the daemon's
    # child had it too, in its --json document.
    by_hand = subprocess.run([*WITHOUT_DAC, *bk.command("backup")], env=base_env(), cwd=ROOT,
                             stdin=subprocess.DEVNULL, capture_output=True)
    assert by_hand.returncode == 3 and FILE_NAME in by_hand.stderr.decode()
    as_the_daemon_runs_it = subprocess.run([*WITHOUT_DAC, *bk.command("backup", "--repo", "main", "--json")],
                                           env=base_env(), cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True)
    assert FILE_NAME in as_the_daemon_runs_it.stdout.decode()


def test_a_failed_restore_test_sends_counts_and_rule_ids_without_the_failed_file_names(bk: Backupctl, world: World):
    _patient_file(bk)
    bk.init()
    bk.backup()
    biggest = max(bk.packs(), key=lambda p: p.stat().st_size)  # the patient file's data
    data = bytearray(biggest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    biggest.write_bytes(bytes(data))

    world.run_daemon()

    world.assert_no_patient_file_name()
    step = world.job("restore-test:main")["steps"][-1]
    assert step["exit_code"] == 13
    full = json.loads(Path(step["summary"]["report"]["json"]).read_text(encoding="utf-8"))
    # Kept on the server, and in the document the daemon's child printed.
    assert any(FILE_NAME in failure["path"] for failure in full["restore_test"]["failures"])
    report = world.message("Test de restauration")
    assert "ÉCHEC" in report["Subject"]
    body = report.get_body(("plain",)).get_content()
    failed = len(full["restore_test"]["failures"])
    assert f"fichiers en échec : {failed}" in body
    assert "Code de sortie 13 : des données stockées sont endommagées" in body
    assert "S7 (NON CONFORME)" in body and step["summary"]["report"]["html"] in body
    for test in full["restore_test"]["tests"]:
        assert test["snapshot_id"][:8] in body
    # The attached copy is the report without names: the same verdict, counts and rules.
    (copy,) = [part for part in report.iter_attachments()]
    assert copy.get_content_type() == "text/html" and "sans-noms-de-fichiers" in copy.get_filename()
    page = copy.get_content()
    assert 'id="mismatches-withheld"' in page and full["report_id"] in page and "ÉCHEC" in page
    posted = world.posted("restore_test")
    assert posted["ok"] is False and posted["exit_code"] == 13 and posted["failures"] == failed
    assert {"rule": "S7", "status": "FAIL"} in posted["rules"]
    assert posted["snapshots"] == [t["snapshot_id"] for t in full["restore_test"]["tests"]]
    assert posted["report_document"]["restore_test"]["failures"] == []
    assert posted["report_document"]["shared_copy"]["failures"] == failed


def test_a_full_restore_test_target_is_alerted_by_its_meaning_not_by_the_error_line(bk: Backupctl, world: World):
    _patient_file(bk)
    bk.init()
    scratch = Path(bk.state) / "restore-test"  # where the daemon's restore test restores
    scratch.mkdir(parents=True)
    # Inodes for the mount's root, the test's two folders and every folder down to
    # "Dupont Jean", none for the file: the restore stops on it with ENOSPC ("full"),
    # whatever free space the scratch folder shows.
    inodes = 1 + 2 + len(bk.src.relative_to("/").parts) + 2
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size=256m,nr_inodes={inodes},mode=0700", "tmpfs", str(scratch)],
                   check=True)
    try:
        world.run_daemon()
    finally:
        subprocess.run(["umount", "-l", str(scratch)], check=False)

    world.assert_no_patient_file_name()
    step = world.job("restore-test:main")["steps"][-1]
    assert step["exit_code"] == 15
    # The child's own error line names the file: it is kept in jobs.json on the server only.
    assert FILE_NAME in step["error_detail"] and "full" in step["error_detail"]
    report = world.message("Test de restauration")
    body = report.get_body(("plain",)).get_content()
    assert "Code de sortie 15 : la cible de restauration est pleine" in body and "ÉCHEC" in report["Subject"]
    posted = world.posted("restore_test")
    assert posted["exit_code"] == 15 and posted["meaning"].startswith("la cible de restauration est pleine")
    assert "restore-test of main: exit 15" in world.log


def test_a_failed_database_dump_is_alerted_by_count_without_the_database_path(bk: Backupctl, world: World):
    """The dump's own error names the database file: it stays in the backup's report."""
    _patient_file(bk)
    database = bk.src / "patients" / FOLDER / "Dupont Jean - suivi.sqlite"
    write(database, "not a database, whatever its name says\n" * 100)
    bk.config.write_text(bk.config.read_text() + f"""
[[databases]]
name = "suivi"
type = "sqlite"
path = {json.dumps(str(database))}
""", encoding="utf-8")
    bk.init()

    world.run_daemon()

    world.assert_no_patient_file_name()
    backup = world.job("weekly:main")["steps"][0]
    assert backup["command"] == "backup" and backup["exit_code"] == 3
    assert backup["summary"]["database_failures"] == 1 and backup["summary"]["unreadable"] == 0
    body = world.message("À vérifier").get_content()
    assert "1 sauvegarde(s) de base de données ont échoué" in body
    assert backup["summary"]["snapshot_id"][:8] in body
    posted = world.posted("backup_warnings")
    assert posted["database_failures"] == 1 and posted["exit_codes"][0] == 3 and "unreadable" not in posted
    # The child the daemon ran named the database's file in its --json document.
    as_the_daemon_runs_it = bk.run("backup", "--repo", "main", "--json")
    assert as_the_daemon_runs_it.returncode == 3
    assert any("Dupont Jean - suivi.sqlite" in w["problem"] for w in as_the_daemon_runs_it.json()["warnings"])

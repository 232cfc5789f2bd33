"""A backup's start-up imports what a backup uses: the mail and HTTP clients of the
alerts, and the restore test's throwaway servers, wait until they are needed."""

from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # this checkout's agent

LATER = ("smtplib", "ssl", "email.message", "http.client", "urllib.request",
         "agent.engine.dump_check", "agent.engine.throwaway_db")


def test_the_backup_command_does_not_import_the_alert_clients_or_the_restore_test():
    code = ("import sys, agent.cli.main, agent.cli.backup_cmd, agent.config\n"
            f"print(','.join(m for m in {LATER!r} if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=ROOT).stdout.strip()
    assert loaded == ""


def test_the_alerts_still_find_their_clients(monkeypatch):
    from agent import alerts

    settings = alerts.AlertSettings(email_to=("secretariat@example.org",), smtp_host="127.0.0.1", smtp_port=9,
                                    webhook_url="http://127.0.0.1:9/hook", timeout=2.0)
    problems = alerts.send(settings, alerts.Alert(subject="s", body="b"))
    assert len(problems) == 2 and problems[0].startswith("e-mail to") and problems[1].startswith("webhook")

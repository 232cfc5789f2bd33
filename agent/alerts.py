"""Alerts: an e-mail (SMTP with STARTTLS or TLS, optional login) and a webhook (JSON POST).

Sent by the daemon when a job fails and when an obligation is at risk. Messages are in
French, for the practitioner. What goes out is built by the daemon from facts (exit codes,
counts, snapshot and rule ids), never a file name: a name can be health data, and an
e-mail or a webhook body leaves the server (docs/SECURITY.md section 6). Delivery never
raises: a failing alert is logged and reported by `send`, and never hides the job's own
error (which the job record keeps).
The standard library does both protocols well (smtplib, urllib), so no dependency.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass, field
from typing import Any

from agent import run_as
from agent.errors import PermissionDenied

SECURITY_CHOICES = ("starttls", "tls", "none")


@dataclass(frozen=True)
class AlertSettings:
    email_to: tuple[str, ...] = ()
    email_from: str = ""
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_security: str = "starttls"
    smtp_user: str | None = None
    smtp_password_file: str | None = None
    smtp_ca_file: str | None = None
    webhook_url: str | None = None
    timeout: float = 20.0
    attach_report: bool = True  # a copy of each restore-test report, without file names, goes out attached

    @property
    def enabled(self) -> bool:
        return bool(self.email_to or self.webhook_url)


@dataclass
class Alert:
    subject: str  # one line, in French
    body: str  # plain text, in French
    facts: dict[str, Any] = field(default_factory=dict)  # the same facts for the webhook (JSON)
    attachments: list[tuple[str, str, bytes]] = field(default_factory=list)  # (file name, MIME type, content)


def send(settings: AlertSettings, alert: Alert) -> list[str]:
    """Deliver by every configured way; returns the problems (empty when all went out)."""
    # The mail and HTTP clients are imported when an alert goes out, not with the
    # configuration: every command reads it, and they cost a backup 40 ms of start-up.
    import smtplib
    import ssl
    import urllib.error

    problems = []
    if settings.email_to:
        try:
            _send_email(settings, alert)
        except (OSError, smtplib.SMTPException, ssl.SSLError, ValueError, PermissionDenied) as exc:
            problems.append(f"e-mail to {', '.join(settings.email_to)} via {settings.smtp_host}:"
                            f"{settings.smtp_port} failed: {exc}")
    if settings.webhook_url:
        try:
            _send_webhook(settings.webhook_url, settings, alert)
        except (OSError, urllib.error.URLError, ValueError) as exc:
            problems.append(f"webhook {_redact(settings.webhook_url)} failed: {exc}")
    return problems


def _password(settings: AlertSettings) -> str | None:
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    candidates = [os.path.join(credentials, "smtp-password")] if credentials else []
    if settings.smtp_password_file:
        candidates.append(settings.smtp_password_file)
    for path in candidates:
        if os.path.isfile(path):
            run_as.check_readable(path, "the SMTP password file")  # else "[Errno 13]" and no owner
            with open(path, encoding="utf-8") as handle:
                return handle.read().rstrip("\r\n")
    return None


def _send_email(settings: AlertSettings, alert: Alert) -> None:
    import smtplib
    import ssl
    from email.message import EmailMessage
    from email.utils import formatdate, make_msgid

    message = EmailMessage()
    message["Subject"] = printable(alert.subject)
    message["From"] = settings.email_from or f"backupctl@{socket.gethostname()}"
    message["To"] = ", ".join(settings.email_to)
    message["Date"] = formatdate(localtime=True)
    message["Message-ID"] = make_msgid(domain="backupctl")
    message.set_content(printable(alert.body))
    for filename, mime_type, content in alert.attachments:
        maintype, _, subtype = mime_type.partition("/")
        if maintype == "text":  # say its charset, so that mail readers show the accents
            message.add_attachment(content.decode("utf-8"), subtype=subtype, filename=filename)
        else:
            message.add_attachment(content, maintype=maintype, subtype=subtype, filename=filename)
    context = ssl.create_default_context(cafile=settings.smtp_ca_file)
    client: smtplib.SMTP  # SMTP_SSL is one
    if settings.smtp_security == "tls":
        client = smtplib.SMTP_SSL(settings.smtp_host, settings.smtp_port, timeout=settings.timeout, context=context)
    else:
        client = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=settings.timeout)
    with client:
        if settings.smtp_security == "starttls":
            client.starttls(context=context)
        if settings.smtp_user:
            password = _password(settings)
            if password is None:
                raise ValueError("smtp_user is set but no SMTP password was found")
            client.login(settings.smtp_user, password)
        client.send_message(message)


def _send_webhook(url: str, settings: AlertSettings, alert: Alert) -> None:
    import ssl
    import urllib.request

    body = json.dumps(_printable_facts({"subject": alert.subject, "text": alert.body, **alert.facts})).encode("utf-8")
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "backupctl"})
    context = ssl.create_default_context(cafile=settings.smtp_ca_file)
    with urllib.request.urlopen(request, timeout=settings.timeout, context=context) as response:
        if not 200 <= response.status < 300:
            raise ValueError(f"HTTP {response.status}")


def printable(text: str) -> str:
    """`text` as UTF-8 can carry it: a folder name that is not UTF-8 comes from the file
    system with surrogate escapes (os.fsdecode), which no e-mail can encode; its bytes are
    shown as \\xff instead (the e-mail must go out, above all the URGENT one)."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that no file system gave
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _printable_facts(value: Any) -> Any:
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {printable(str(k)): _printable_facts(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_printable_facts(v) for v in value]
    return value


def _redact(url: str) -> str:
    """A webhook URL often carries a secret token: show scheme and host only."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}/…"

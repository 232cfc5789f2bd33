"""The daemon's log on standard error, with syslog priorities the journal understands.

Under systemd the daemon's standard error is a stream to journald ($JOURNAL_STREAM is
set), which takes a line starting with "<N>" at syslog priority N (SyslogLevelPrefix=,
on by default). Without that prefix every line is priority 6 (info) and
`journalctl -p warning` shows nothing while every job fails. Outside systemd (a terminal,
a test's pipe) there is no prefix: it would only clutter what a person reads.
"""

from __future__ import annotations

import logging
import os
import sys

# syslog(3) priorities: 3 err, 4 warning, 6 info, 7 debug.
_PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6, logging.DEBUG: 7}


def priority(level: int) -> int:
    """The syslog priority of a logging level (levels between two known ones round up)."""
    return next((p for known, p in sorted(_PRIORITY.items(), reverse=True) if level >= known), 7)


class JournalFormatter(logging.Formatter):
    """Prefixes each line (every line of a multi-line message) with its priority."""

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{priority(record.levelno)}>"
        return "\n".join(prefix + line for line in super().format(record).split("\n"))


def under_journal() -> bool:
    """systemd sets JOURNAL_STREAM when standard error goes to the journal (systemd.exec(5))."""
    return bool(os.environ.get("JOURNAL_STREAM"))


def setup(level: int = logging.INFO) -> logging.Handler:
    """The daemon's one log handler, on standard error, at `level`."""
    handler = logging.StreamHandler(sys.stderr)
    text = "%(levelname)s %(message)s"
    handler.setFormatter(JournalFormatter(text) if under_journal() else logging.Formatter(text))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level)
    return handler

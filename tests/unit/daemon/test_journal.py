"""Journal priorities of the daemon's lines, and the one line each job leaves."""

from __future__ import annotations

import logging

import pytest

from agent.daemon import jobs, journal
from agent.daemon.jobs import StepResult


@pytest.mark.parametrize("level, expected", [(logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6),
                                             (logging.DEBUG, 7), (logging.CRITICAL, 2), (logging.WARNING + 1, 4)])
def test_logging_levels_map_to_syslog_priorities(level: int, expected: int):
    assert journal.priority(level) == expected


def test_every_line_of_a_message_carries_its_priority():
    record = logging.LogRecord("backupctl", logging.ERROR, __file__, 1, "one\ntwo", None, None)
    assert journal.JournalFormatter("%(message)s").format(record) == "<3>one\n<3>two"


def _outcome(caplog, ok: bool, steps: list[StepResult], *, interrupted: bool = False) -> logging.LogRecord:
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="backupctl.daemon"):
        jobs._log_outcome("weekly:main", ok, steps, interrupted=interrupted)
    (record,) = [r for r in caplog.records if r.name == "backupctl.daemon"]
    return record


def test_a_failed_job_is_an_error_with_the_meaning_of_its_exit_code(caplog):
    record = _outcome(caplog, False, [StepResult("backup", 14, 1.0, {}, "…/Dupont Jean - compte rendu.pdf")])
    assert record.levelno == logging.ERROR
    assert "exit 14" in record.getMessage() and jobs.meaning(14) in record.getMessage()
    assert "Dupont" not in record.getMessage()


def test_a_backup_saved_incomplete_is_a_warning_by_counts(caplog):
    record = _outcome(caplog, True, [StepResult("backup", 3, 1.0, {"unreadable": 2}), StepResult("prune", 0, 1.0)])
    assert record.levelno == logging.WARNING and "unreadable 2" in record.getMessage()


def test_a_job_stopped_with_the_service_is_a_warning(caplog):
    record = _outcome(caplog, False, [StepResult("backup", 143, 1.0)], interrupted=True)
    assert record.levelno == logging.WARNING and "interrupted" in record.getMessage()


def test_a_successful_job_is_information(caplog):
    assert _outcome(caplog, True, [StepResult("backup", 0, 1.0)]).levelno == logging.INFO


def test_a_suspect_backup_is_saved_and_a_warning_naming_the_alarm(caplog):
    from agent.errors import SUSPECT_BACKUP_EXIT_CODE

    assert SUSPECT_BACKUP_EXIT_CODE in jobs.BACKUP_SAVED  # the job goes on to prune (which holds)
    record = _outcome(caplog, True, [StepResult("backup", SUSPECT_BACKUP_EXIT_CODE, 1.0), StepResult("prune", 0, 1.0)])
    assert record.levelno == logging.WARNING and "RANSOMWARE ALARM" in record.getMessage()

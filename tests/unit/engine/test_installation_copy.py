"""Rule S5, a copy before every installation: dpkg's log read (agent/engine/installation_copy.py)
and the verdict of the compliance table (agent/engine/compliance.py, installation_copy_row)."""

from __future__ import annotations

import datetime as dt
import gzip
import os
import time
from pathlib import Path
from zoneinfo import ZoneInfo

from agent.engine import installation_copy
from agent.engine.compliance import FAIL, OK, WARN, installation_copy_row
from agent.engine.installation_copy import (FRESHNESS, TAG, InstallationFacts, last_change, parse_line,
                                            read_last_change)
from agent.reports.i18n import row_dict

PARIS = ZoneInfo("Europe/Paris")


def in_paris(naive: dt.datetime) -> dt.datetime:
    return naive.replace(tzinfo=PARIS)


LOG = """\
2026-12-05 09:00:00 startup archives unpack
2026-12-05 09:00:01 upgrade libc6:amd64 2.36-9 2.36-9+deb12u9
2026-12-05 09:00:02 status half-configured libc6:amd64 2.36-9+deb12u9
2026-12-07 10:00:00 startup archives install
2026-12-07 10:00:00 install foo:amd64 <none> 1.0
2026-12-07 10:00:01 status half-installed foo:amd64 1.0
2026-12-07 10:00:02 configure foo:amd64 1.0 1.0
2026-12-07 10:00:03 status installed foo:amd64 1.0
2026-12-07 10:00:04 trigproc man-db:amd64 2.11.2-2 <none>
"""


def test_only_install_upgrade_remove_and_purge_are_changes() -> None:
    change = parse_line("2026-12-07 10:00:00 install foo:amd64 <none> 1.0", to_aware=in_paris)
    assert change is not None
    assert (change.time, change.action, change.package, change.old_version, change.new_version) == \
        (dt.datetime(2026, 12, 7, 10, tzinfo=PARIS), "install", "foo:amd64", "<none>", "1.0")
    for action in ("upgrade", "remove", "purge"):
        assert parse_line(f"2026-12-07 10:00:00 {action} foo:amd64 1.0 <none>", to_aware=in_paris) is not None
    for other in ("2026-12-07 10:00:00 status installed foo:amd64 1.0", "2026-12-07 10:00:02 configure foo:amd64 "
                  "1.0 1.0", "2026-12-07 10:00:00 startup archives install", "2026-12-07 10:00:04 trigproc "
                  "man-db:amd64 2.11 <none>", "2026-12-07 10:00:00 conffile /etc/foo.conf keep", "",
                  "garbage install foo:amd64 <none> 1.0", "2026-13-45 10:00:00 install foo:amd64 <none> 1.0"):
        assert parse_line(other, to_aware=in_paris) is None, other


def test_the_last_change_is_the_last_such_line() -> None:
    change = last_change(LOG.splitlines(), to_aware=in_paris)
    assert change is not None and change.package == "foo:amd64" and change.time.hour == 10
    assert last_change(["2026-12-07 10:00:03 status installed foo:amd64 1.0"]) is None


def test_dpkgs_local_time_is_read_in_the_machines_zone() -> None:
    change = parse_line("2026-07-01 12:00:00 install foo:amd64 <none> 1.0")
    assert change is not None and change.time.tzinfo is not None
    assert change.time == dt.datetime(2026, 7, 1, 12).astimezone()


def test_a_rotated_log_is_read_when_the_current_one_holds_no_change(tmp_path: Path) -> None:
    log = tmp_path / "dpkg.log"
    log.write_text("")  # logrotate has just moved it
    (tmp_path / "dpkg.log.1").write_text(LOG)
    facts = InstallationFacts(str(log))
    read_last_change(facts, to_aware=in_paris)
    assert facts.log_found and facts.last_change is not None and facts.read_from == f"{log}.1"
    # Older months are compressed.
    (tmp_path / "dpkg.log.1").unlink()
    with gzip.open(tmp_path / "dpkg.log.2.gz", "wt") as handle:
        handle.write(LOG.replace("foo", "bar"))
    facts = InstallationFacts(str(log))
    read_last_change(facts, to_aware=in_paris)
    assert facts.last_change is not None and facts.last_change.package == "bar:amd64"
    # The current log wins when it has a change.
    log.write_text("2026-12-08 08:00:00 remove baz:amd64 1.0 <none>\n")
    facts = InstallationFacts(str(log))
    read_last_change(facts, to_aware=in_paris)
    assert facts.last_change is not None and facts.last_change.package == "baz:amd64"


def test_each_rotation_is_read_in_turn_newest_first(tmp_path: Path) -> None:
    """dpkg.log, then .1, then .1.gz (logrotate's delaycompress leaves .1 plain for a month,
    some set-ups compress it at once), then .2.gz: the first that holds a change wins."""
    log = tmp_path / "dpkg.log"
    log.write_text("")
    with gzip.open(tmp_path / "dpkg.log.1.gz", "wt") as handle:
        handle.write(LOG.replace("foo", "un"))
    with gzip.open(tmp_path / "dpkg.log.2.gz", "wt") as handle:
        handle.write(LOG.replace("foo", "deux"))
    facts = InstallationFacts(str(log))
    read_last_change(facts, to_aware=in_paris)
    assert facts.read_from == f"{log}.1.gz" and facts.last_change is not None
    assert facts.last_change.package == "un:amd64"


def test_no_log_at_all_is_told_apart_from_a_log_without_changes(tmp_path: Path) -> None:
    facts = InstallationFacts(str(tmp_path / "dpkg.log"))
    read_last_change(facts)
    assert not facts.log_found and facts.last_change is None
    (tmp_path / "dpkg.log").write_text("2026-12-07 10:00:00 startup archives install\n")
    facts = InstallationFacts(str(tmp_path / "dpkg.log"))
    read_last_change(facts)
    assert facts.log_found and facts.last_change is None and facts.problem is None


def test_a_log_that_cannot_be_read_is_a_problem_not_an_absence(tmp_path: Path) -> None:
    (tmp_path / "dpkg.log").mkdir()  # exists, cannot be read as a file (root reads any mode)
    facts = InstallationFacts(str(tmp_path / "dpkg.log"))
    read_last_change(facts)
    assert facts.log_found and facts.problem is not None and "dpkg.log" in facts.problem


# ---- the verdict ------------------------------------------------------------------------

CHANGE_AT = dt.datetime(2026, 12, 7, 10, tzinfo=PARIS)


def facts_with(*copies: dt.timedelta, unreadable: tuple[str, ...] = ()) -> InstallationFacts:
    """A change at CHANGE_AT and copies taken that long before it (negative: after)."""
    facts = InstallationFacts("/var/log/dpkg.log")
    facts.last_change = parse_line("2026-12-07 10:00:00 install foo:amd64 <none> 1.0", to_aware=in_paris)
    facts.copies = [("main", f"{i:02x}" * 16, CHANGE_AT - before) for i, before in enumerate(copies)]
    facts.unreadable = list(unreadable)
    return facts


def verdict(facts: InstallationFacts) -> tuple[str, list[str], list[str]]:
    row = row_dict(installation_copy_row(facts, PARIS))
    french = row_dict(installation_copy_row(facts, PARIS), "fr")
    assert row["rule"] == "S5"
    return row["status"], row["evidence"], french["evidence"]


def test_a_copy_taken_shortly_before_the_change_is_ok() -> None:
    status, evidence, french = verdict(facts_with(dt.timedelta(minutes=3), dt.timedelta(days=3)))
    assert status == OK
    assert evidence == ["last package change: install foo:amd64 on 2026-12-07 10:00 +01:00",
                        "preceded by snapshot 00000000 of main (avant-installation) on 2026-12-07 09:57 +01:00"]
    assert french == ["dernier changement de paquet : install foo:amd64 le 2026-12-07 10:00 +01:00",
                      "précédé de la sauvegarde 00000000 (main, avant-installation) le 2026-12-07 09:57 +01:00"]


def test_the_copy_must_be_at_most_24_hours_older_than_the_change() -> None:
    assert FRESHNESS == dt.timedelta(hours=24)
    assert verdict(facts_with(FRESHNESS))[0] == OK
    status, evidence, _ = verdict(facts_with(FRESHNESS + dt.timedelta(seconds=1)))
    assert status == FAIL and "is more than 24 h older" in evidence[1] and "2026-12-06 09:59" in evidence[1]


def test_a_copy_taken_after_the_change_does_not_count() -> None:
    status, evidence, french = verdict(facts_with(-dt.timedelta(minutes=5)))
    assert status == FAIL and evidence[1] == "no snapshot avant-installation before it"
    assert french[1] == "aucune sauvegarde avant-installation ne le précède"
    assert verdict(facts_with())[0] == FAIL
    # dpkg logs whole seconds: a copy begun within the second logged may precede the change.
    assert verdict(facts_with(-dt.timedelta(milliseconds=600)))[0] == OK
    assert verdict(facts_with(-dt.timedelta(seconds=1)))[0] == FAIL


def test_without_a_copy_an_unreadable_repository_makes_it_a_warning() -> None:
    status, evidence, _ = verdict(facts_with(unreadable=("offsite",)))
    assert status == WARN and evidence[-1] == "not readable now: offsite"
    # A copy found in a readable repository settles it.
    assert verdict(facts_with(dt.timedelta(minutes=1), unreadable=("offsite",)))[0] == OK


def test_no_log_or_no_change_is_not_applicable_and_an_unreadable_log_a_warning() -> None:
    absent = InstallationFacts("/var/log/dpkg.log", log_found=False)
    assert verdict(absent)[:2] == (OK, ["no package log (/var/log/dpkg.log): not applicable"])
    quiet = InstallationFacts("/var/log/dpkg.log")
    assert verdict(quiet)[:2] == (OK, ["no package change in /var/log/dpkg.log: not applicable"])
    broken = InstallationFacts("/var/log/dpkg.log", problem="/var/log/dpkg.log: Permission denied")
    assert verdict(broken)[0] == WARN


def test_the_tag_is_the_one_the_hook_gives() -> None:
    from agent.cli.preinstall_cmd import TAG as HOOK_TAG

    assert TAG == HOOK_TAG == "avant-installation"


# ---- a log that is not what it should be: a warning, never a crash nor a hang --------------

def _read(log: Path) -> InstallationFacts:
    facts = InstallationFacts(str(log))
    read_last_change(facts, to_aware=in_paris)
    return facts


def test_a_corrupt_gz_is_a_problem_and_a_warning_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / "dpkg.log").write_text("")
    packed = gzip.compress(LOG.encode())
    (tmp_path / "dpkg.log.2.gz").write_bytes(packed[:20] + b"\xff" * 40 + packed[60:])  # zlib.error
    facts = _read(tmp_path / "dpkg.log")
    assert facts.problem is not None and "dpkg.log.2.gz" in facts.problem, facts.problem
    assert installation_copy_row(facts, PARIS).status == WARN
    (tmp_path / "dpkg.log.2.gz").write_bytes(b"not gzip at all\n")  # gzip.BadGzipFile
    assert _read(tmp_path / "dpkg.log").problem is not None
    (tmp_path / "dpkg.log.2.gz").write_bytes(packed[: len(packed) // 2])  # EOFError
    assert _read(tmp_path / "dpkg.log").problem is not None


def test_a_fifo_at_the_logs_path_is_a_problem_not_a_hang(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "dpkg.log")
    started = time.monotonic()
    facts = _read(tmp_path / "dpkg.log")
    assert time.monotonic() - started < 5
    assert facts.log_found and facts.problem == f"{tmp_path / 'dpkg.log'}: not a regular file"
    assert installation_copy_row(facts, PARIS).status == WARN


def test_a_link_at_the_logs_path_is_not_followed(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").write_text(LOG)
    (tmp_path / "dpkg.log").symlink_to(tmp_path / "elsewhere")
    facts = _read(tmp_path / "dpkg.log")
    assert facts.log_found and facts.problem is not None and facts.last_change is None


def test_a_gz_bomb_is_read_no_further_than_the_cap(tmp_path: Path, monkeypatch) -> None:
    """A small .gz that decompresses to far more than MAX_BYTES: read up to the cap only (the
    cap lowered here to keep the test quick), then a problem; memory stays small."""
    monkeypatch.setattr(installation_copy, "MAX_BYTES", 2**20)
    (tmp_path / "dpkg.log").write_text("")
    line = b"2026-12-07 10:00:04 trigproc man-db:amd64 2.11.2-2 <none>\n"
    with gzip.open(tmp_path / "dpkg.log.1.gz", "wb") as handle:
        for _ in range(64):
            handle.write(line * (2**20 // len(line)))  # 64 MiB of text, 64 KiB packed
    read = []
    real = installation_copy.parse_line

    def counting(text, **kwargs):
        read.append(len(text))
        return real(text, **kwargs)

    monkeypatch.setattr(installation_copy, "parse_line", counting)
    facts = _read(tmp_path / "dpkg.log")
    assert facts.problem is not None and "more than 1 MiB" in facts.problem, facts.problem
    assert sum(read) <= 2**20
    assert installation_copy_row(facts, PARIS).status == WARN


def test_a_plain_log_beyond_the_cap_is_read_from_its_end(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(installation_copy, "MAX_BYTES", 4096)
    filler = "2026-12-07 10:00:04 trigproc man-db:amd64 2.11.2-2 <none>\n" * 500
    (tmp_path / "dpkg.log").write_text(LOG + filler + "2026-12-08 08:00:00 remove baz:amd64 1.0 <none>\n")
    facts = _read(tmp_path / "dpkg.log")
    assert facts.problem is None and facts.last_change is not None and facts.last_change.package == "baz:amd64"
    assert installation_copy.MAX_BYTES == 4096
    monkeypatch.undo()
    assert installation_copy.MAX_BYTES == 64 * 2**20  # as the review asked: 64 MiB of text a file

"""A copy before every installation (rule S5 of docs/COMPLIANCE.md; mémento 6.3.1: "une copie
complète du système et des données avant toute nouvelle installation ou reconfiguration").

The apt hook (contrib/apt/, `backupctl pre-installation`) takes a snapshot tagged TAG before
dpkg changes packages; `compliance` checks that the last package change dpkg recorded was
preceded by one. This module holds what both sides share and what needs no repository:
the tag, the reading of dpkg's log, and the facts the compliance rule judges
(agent.engine.compliance judges them).

dpkg's log (/var/log/dpkg.log, `[agent] dpkg_log`) has one line per action, in the
machine's local time without a zone:

    2026-12-07 10:00:00 install foo:amd64 <none> 1.0
    2026-12-07 10:00:01 status half-installed foo:amd64 1.0
    2026-12-07 10:00:02 upgrade bar:amd64 1.0 1.1
    2026-12-07 10:00:03 remove baz:amd64 2.0 <none>

Only install, upgrade, remove and purge change what is installed; the other lines (status,
configure, trigproc, conffile, startup) follow from them. logrotate moves the log to
dpkg.log.1 each month (then .2.gz...): when the current log holds no change, the last
change is in the previous one.
"""

from __future__ import annotations

import datetime as _dt
import gzip
import os
import re
from dataclasses import dataclass, field
from typing import Callable, Iterable

TAG = "avant-installation"
# How long before a package change its copy may have been taken: a copy of the same day
# is at most a few hours older; 24 h covers an installation just after midnight whose copy
# was taken the evening before, never an installation of the next day without its own
# (the hook takes one a day at most: agent/cli/preinstall_cmd.py).
FRESHNESS = _dt.timedelta(hours=24)
CHANGES = ("install", "upgrade", "remove", "purge")
# dpkg logs whole seconds: a change logged at 10:00:00 happened before 10:00:01, so a copy
# begun at 10:00:00.4 (the hook's backup starts and dpkg follows within the second) precedes it.
LOG_RESOLUTION = _dt.timedelta(seconds=1)
DEFAULT_DPKG_LOG = "/var/log/dpkg.log"

_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) (install|upgrade|remove|purge) (\S+) (\S+) (\S+)\s*$")


@dataclass(frozen=True)
class PackageChange:
    time: _dt.datetime  # aware: the log's local time read in the machine's zone
    action: str  # install, upgrade, remove or purge
    package: str  # "foo:amd64"
    old_version: str  # "<none>" for an install
    new_version: str  # "<none>" for a removal


@dataclass
class InstallationFacts:
    """What rule S5 judges: the last package change (None when the log holds none), the
    snapshots tagged TAG of every readable repository, and where the log was read."""

    log: str  # the log named by the configuration
    log_found: bool = True  # False: neither the log nor its rotated copy exists (not a dpkg system)
    last_change: PackageChange | None = None
    read_from: str | None = None  # the file the last change was found in
    problem: str | None = None  # the log exists but could not be read
    copies: list[tuple[str, str, _dt.datetime]] = field(default_factory=list)  # (repository, snapshot id, time)
    unreadable: list[str] = field(default_factory=list)  # repositories whose snapshots could not be read


def local_time(naive: _dt.datetime) -> _dt.datetime:
    """dpkg writes the machine's local time: read it in the machine's zone (its DST included)."""
    return naive.astimezone()


def parse_line(line: str, *, to_aware: Callable[[_dt.datetime], _dt.datetime] = local_time) -> PackageChange | None:
    """The change one line records, or None for any other line (status, configure, a damaged line)."""
    found = _LINE.match(line)
    if found is None:
        return None
    try:
        naive = _dt.datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None
    return PackageChange(to_aware(naive), found.group(2), found.group(3), found.group(4), found.group(5))


def last_change(lines: Iterable[str], *,
                to_aware: Callable[[_dt.datetime], _dt.datetime] = local_time) -> PackageChange | None:
    """The last change of the lines, in the log's order (dpkg appends)."""
    last = None
    for line in lines:
        change = parse_line(line, to_aware=to_aware)
        if change is not None:
            last = change
    return last


def rotated(log: str) -> list[str]:
    """The log, then its copies by age, as logrotate leaves them (Debian: monthly, compressed
    from the second)."""
    return [log, f"{log}.1", f"{log}.1.gz", f"{log}.2.gz"]


def _lines(path: str) -> list[str]:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
        return handle.readlines()


def read_last_change(facts: InstallationFacts, *,
                     to_aware: Callable[[_dt.datetime], _dt.datetime] = local_time) -> None:
    """Fill `facts` from the log and, when it holds no change, from its rotated copies."""
    present = [path for path in rotated(facts.log) if os.path.exists(path)]
    facts.log_found = bool(present)
    for path in present:
        try:
            change = last_change(_lines(path), to_aware=to_aware)
        except (OSError, EOFError) as exc:  # EOFError: a truncated .gz
            facts.problem = f"{path}: {getattr(exc, 'strerror', None) or exc}"
            return
        if change is not None:
            facts.last_change, facts.read_from = change, path
            return


def copy_before(facts: InstallationFacts) -> tuple[str, str, _dt.datetime] | None:
    """The newest snapshot tagged TAG begun before the last change (None without one)."""
    if facts.last_change is None:
        return None
    before = [c for c in facts.copies if c[2] < facts.last_change.time + LOG_RESOLUTION]
    return max(before, key=lambda c: c[2], default=None)

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
import io
import os
import re
import stat
import zlib
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

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
# Read at most this much text of one file (a month of dpkg's log is a few MiB): a .gz that
# decompresses to more is a problem, not a memory exhausted; and no line longer than MAX_LINE.
MAX_BYTES = 64 * 2**20
MAX_LINE = 64 * 2**10

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


class _Unreadable(Exception):
    """The file cannot be read as dpkg's log: why, in a few words."""


def _lines(path: str) -> Iterator[str]:
    """The lines of one file, read one by one: a regular file only (a FIFO would block, a link
    is not followed), and at most MAX_BYTES of text, a plain log's last MAX_BYTES (the last
    change is near its end); a .gz holding more once decompressed (a bomb) is not read on."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise _Unreadable(exc.strerror or str(exc)) from None
    with os.fdopen(descriptor, "rb") as raw:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            raise _Unreadable("not a regular file")
        compressed = path.endswith(".gz")
        if not compressed and status.st_size > MAX_BYTES:
            raw.seek(status.st_size - MAX_BYTES)
            raw.readline()  # a line cut by the seek
        source: io.BufferedIOBase = gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw
        read = 0
        while True:
            line = source.readline(MAX_LINE)
            if not line:
                return
            read += len(line)
            if read > MAX_BYTES:
                raise _Unreadable(f"more than {MAX_BYTES // 2**20} MiB of text once decompressed")
            yield line.decode("utf-8", "replace")


def read_last_change(facts: InstallationFacts, *,
                     to_aware: Callable[[_dt.datetime], _dt.datetime] = local_time) -> None:
    """Fill `facts` from the log and, when it holds no change, from its rotated copies."""
    present = [path for path in rotated(facts.log) if os.path.lexists(path)]
    facts.log_found = bool(present)
    for path in present:
        try:
            change = last_change(_lines(path), to_aware=to_aware)
        except _Unreadable as exc:
            facts.problem = f"{path}: {exc}"
            return
        except (OSError, EOFError, zlib.error) as exc:  # EOFError: a truncated .gz; zlib.error: a corrupt one
            facts.problem = f"{path}: {getattr(exc, 'strerror', None) or exc or type(exc).__name__}"
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

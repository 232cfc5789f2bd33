"""What engines report while they work; the CLI draws it, tests ignore it.

Engines feed a `Progress` (start, advance, finish; a backup also says what it expects
and what its walk found). `ProgressModel` turns those events into what a person can
trust, without drawing anything, so it is tested with a fake clock:

* a total: from the previous run of the same repository (`expect`), raised while the
  walk finds more (`discovered`), exact when the walk is done (`walk_done`); with no
  previous run there is no total until the walk ends, and so no time left;
* time left only when there is a total, from the average rate since the start;
* while the storage does not answer (`retrying`, fed by agent/storage/retry.py through
  the CLI), "S3 server not answering, retry 3 in 8 s" instead of the rate, which would
  be frozen and mean nothing; `answered` clears it.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Callable, Protocol

# Under this many seconds of work, the average rate is noise: no time left is shown.
MIN_SECONDS_FOR_ETA = 2.0


class Progress(Protocol):
    def start(self, phase: str, total_bytes: int | None = None) -> None: ...

    def advance(self, *, files: int = 0, bytes_done: int = 0) -> None: ...

    def finish(self) -> None: ...

    # A backup's walk: what the previous run held, what this walk found, and its end.
    def expect(self, *, files: int, bytes_total: int) -> None: ...

    def discovered(self, *, files: int = 0, bytes_total: int = 0) -> None: ...

    def walk_done(self) -> None: ...


class SilentProgress:
    def start(self, phase: str, total_bytes: int | None = None) -> None:
        pass

    def advance(self, *, files: int = 0, bytes_done: int = 0) -> None:
        pass

    def finish(self) -> None:
        pass

    def expect(self, *, files: int, bytes_total: int) -> None:
        pass

    def discovered(self, *, files: int = 0, bytes_total: int = 0) -> None:
        pass

    def walk_done(self) -> None:
        pass


def human_bytes(count: float) -> str:
    """1536 -> "1.5 KiB": the one size format of every message (the CLI uses it too)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.0f} B"


def _duration(seconds: float) -> str:
    seconds = int(math.ceil(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class ProgressModel:
    """The state of one bar, fed from several threads (the backup's workers, the storage's
    retries), read by the drawing thread."""

    def __init__(self, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._now = monotonic
        self._lock = threading.Lock()
        self.phase = ""
        self.started = 0.0
        self.files_done = 0
        self.bytes_done = 0
        self._given_total: int | None = None  # a total the engine knows (restore, check)
        self._expected: tuple[int, int] | None = None  # (files, bytes) of the previous run
        self._found_files = 0
        self._found_bytes = 0
        self._walk_done = False
        self._retry: tuple[str, int, float] | None = None  # (label, retry number, when it is made)

    # ---- events -----------------------------------------------------------------

    def start(self, phase: str, total_bytes: int | None = None) -> None:
        with self._lock:
            self.phase = phase
            self.started = self._now()
            self._given_total = total_bytes

    def advance(self, *, files: int = 0, bytes_done: int = 0) -> None:
        with self._lock:
            self.files_done += files
            self.bytes_done += bytes_done

    def expect(self, *, files: int, bytes_total: int) -> None:
        with self._lock:
            self._expected = (files, bytes_total)

    def discovered(self, *, files: int = 0, bytes_total: int = 0) -> None:
        with self._lock:
            self._found_files += files
            self._found_bytes += bytes_total

    def walk_done(self) -> None:
        with self._lock:
            self._walk_done = True

    def retrying(self, label: str, *, retry: int, delay_s: float) -> None:
        with self._lock:
            self._retry = (label, retry, self._now() + delay_s)

    def answered(self) -> None:
        with self._lock:
            self._retry = None

    # ---- what is shown --------------------------------------------------------------

    def total(self) -> tuple[int, int] | None:
        """(files, bytes) expected in all, or None when nothing honest can be said.
        The files count is -1 when only bytes are known (a restore's given total)."""
        with self._lock:
            if self._given_total is not None:
                return (-1, self._given_total)
            if self._walk_done:
                # A file that grew while it was read counts what was read.
                return (max(self._found_files, self.files_done), max(self._found_bytes, self.bytes_done))
            if self._expected is None:
                return None
            # Never below what is already found or done: the estimate only ever grows.
            return (max(self._expected[0], self._found_files, self.files_done),
                    max(self._expected[1], self._found_bytes, self.bytes_done))

    def exact(self) -> bool:
        with self._lock:
            return self._given_total is not None or self._walk_done

    def rate(self) -> float | None:
        elapsed = self._now() - self.started
        return self.bytes_done / elapsed if elapsed > 0 else None

    def seconds_left(self) -> float | None:
        total = self.total()
        elapsed = self._now() - self.started
        if total is None or elapsed < MIN_SECONDS_FOR_ETA or self.bytes_done <= 0:
            return None
        rate = self.bytes_done / elapsed
        return max(0.0, (total[1] - self.bytes_done) / rate)

    def retry_text(self) -> str | None:
        with self._lock:
            retry = self._retry
        if retry is None:
            return None
        label, number, when = retry
        wait = when - self._now()
        if wait > 0:
            return f"{label} not answering, retry {number} in {math.ceil(wait)} s"
        return f"{label} not answering, retry {number} under way"

    def counts_text(self) -> str:
        total = self.total()
        about = "" if self.exact() else "~"
        if total is None:
            return f"{self.files_done:,} files, {human_bytes(self.bytes_done)}"
        files, size = total
        files_part = f"{self.files_done:,} files" if files < 0 else f"{self.files_done:,} of {about}{files:,} files"
        return f"{files_part}, {human_bytes(self.bytes_done)} of {about}{human_bytes(size)}"

    def line(self) -> str:
        """The text beside the bar: counts, then the rate and time left, or the storage's silence."""
        parts = [self.counts_text()]
        retry = self.retry_text()
        if retry is not None:
            parts.append(retry)
        else:
            rate = self.rate()
            if rate is not None:
                parts.append(f"{human_bytes(rate)}/s")
            left = self.seconds_left()
            if left is not None:
                parts.append(f"{'' if self.exact() else 'about '}{_duration(left)} left")
        return ", ".join(parts)

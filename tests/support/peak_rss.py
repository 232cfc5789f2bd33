"""Run a command and write its peak RSS, in bytes, to a file: `python peak_rss.py REPORT CMD...`.

Measured from a small parent of its own: Linux starts a child's high-water mark at its
parent's RSS (fork copies the parent's pages, and exec keeps the larger mark), so a command
started by the test process itself reports at least the size of the test process, which
grows over a whole suite. This parent is a bare interpreter (about 10 MiB)."""

from __future__ import annotations

import os
import subprocess
import sys


def main() -> int:
    report, *command = sys.argv[1:]
    process = subprocess.Popen(command)
    _pid, status, usage = os.wait4(process.pid, 0)
    with open(report, "w", encoding="ascii") as handle:
        handle.write(str(usage.ru_maxrss * 1024))
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())

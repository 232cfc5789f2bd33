"""A backup reads only the data of a sparse file, not its holes (agent/engine/source/holes.py).

What is stored cannot show it: the zeros of a hole read one by one are chunked, fingerprinted
and deduplicated exactly as the zeros served from memory. What shows it is what the process
asked the kernel for: `rchar` of /proc/<pid>/io, the bytes its read system calls returned
(every thread counted, pread and preadv included), written by the backup process itself when
it exits.
"""

from __future__ import annotations

import os
import subprocess
import sys

from .support import Backupctl, Result, base_env

MiB = 1024**2
GiB = 1024**3

# `python -m agent ...`, and at its exit the process's own read counters, into IO_REPORT.
WITH_READ_COUNTERS = """
import atexit, os, runpy, sys

def _report():
    with open("/proc/self/io") as counters, open(os.environ["IO_REPORT"], "w") as out:
        out.write(counters.read())

atexit.register(_report)
sys.argv = ["agent", *sys.argv[1:]]
runpy.run_module("agent", run_name="__main__", alter_sys=True)
"""


def _backup_reading(bk: Backupctl) -> tuple[Result, int]:
    """`backupctl backup --json`; returns its result and the bytes its process read."""
    report = bk.base / "io.txt"
    env = {**base_env(), "IO_REPORT": str(report)}
    argv = bk.command("backup", "--json")
    argv = [sys.executable, "-c", WITH_READ_COUNTERS, *argv[argv.index("agent") + 1:]]
    proc = subprocess.run(argv, cwd=bk.base, env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=600)
    result = Result(argv, proc.returncode, proc.stdout, proc.stderr)
    assert result.returncode == 0 and "Traceback" not in result.stderr, str(result)
    counters = dict(line.split(": ") for line in report.read_text().splitlines())
    return result, int(counters["rchar"])


def test_a_backup_does_not_read_the_holes_of_a_sparse_file(bk: Backupctl):
    disk = bk.src / "disque-virtuel.img"
    islands = [(0, MiB), (300 * MiB + 12345, 2 * MiB), (GiB - MiB, MiB)]  # 4 MiB of data in 1 GiB
    with open(disk, "wb") as handle:
        handle.truncate(GiB)
        for offset, length in islands:
            handle.seek(offset)
            handle.write(os.urandom(length))
    assert os.stat(disk).st_blocks * 512 < 16 * MiB  # really sparse on this file system
    bk.init()

    result, read = _backup_reading(bk)

    assert result.json()["bytes_total"] == GiB
    # The data (4 MiB) plus what any backup reads (the interpreter's modules, the config,
    # the repository's index): 8 MiB here, against 1028 MiB when the file is read through
    # its holes (plain reads instead of HoleSkippingReader).
    assert read < 64 * MiB, f"the backup read {read / MiB:.0f} MiB for 4 MiB of data in a 1 GiB sparse file"

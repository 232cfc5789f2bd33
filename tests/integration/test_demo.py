"""Issue 18, point 6: `make demo` ends with the lines to run backupctl yourself on the demo,
and those lines work as printed, in a shell that knows nothing of the demo.

The README's `make demo` itself runs here, given the suite's venv (VENV=, and `-o` so that make
neither reinstalls nor touches it: no second install in `make test`) and a folder of the test's
(DEMO=), so that a checkout's own demo/ is left alone."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from .support import ROOT


def test_the_demo_ends_with_commands_that_run_as_printed(tmp_path: Path) -> None:
    work = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKUPCTL_")}
    env["PYTHONPATH"] = str(ROOT)
    assert shutil.which("make"), "make (Debian package make) is required: the README's command is `make demo`"
    venv = sys.prefix
    demo = subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), "-o", f"{venv}/bin/backupctl", "demo",
                           f"VENV={venv}", f"DEMO={work}"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert demo.returncode == 0, demo.stderr[-3000:]
    tail = demo.stdout.split("Run backupctl yourself on the demo", 1)[1]
    lines = [line[4:] for line in tail.splitlines() if line.startswith("    ")]
    assert lines[0].startswith("export BACKUPCTL_CONFIG=") and len(lines) >= 5, tail
    ran = tmp_path / "ran"
    script = "".join(f"{line}\nrc=$?; echo \"$rc {i}\" >> {ran}; [ $rc -eq 0 ] || exit $rc\n"
                     for i, line in enumerate(lines))
    done = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=600)
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-2000:])
    assert ran.read_text().split("\n")[:-1] == [f"0 {i}" for i in range(len(lines))]
    assert "lettre-nouvelle.txt" in done.stdout
    original = work / "cabinet" / "courriers" / "2026" / "10" / "lettre-nouvelle.txt"
    restored = work / "a-moi" / str(original).lstrip("/")
    assert restored.read_bytes() == original.read_bytes()

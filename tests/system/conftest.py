"""The booted container of the system test: one per test module, always powered off; its
journal is printed under any failing test; the time of each step in the summary."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

from . import kit, rootfs
from .machine import Machine

TIMINGS: list[tuple[str, float]] = []
_MACHINES: list[Machine] = []


def _cannot_run_nspawn() -> str | None:
    if os.geteuid() != 0:
        return "the system test boots a container with systemd-nspawn: it needs root"
    for tool in ("systemd-nspawn", "debootstrap", "nsenter"):
        if not shutil.which(tool):
            return (f"{tool} is missing (Debian packages systemd-container, debootstrap, util-linux; "
                    f"scripts/install-system-packages.sh installs them)")
    return None


@pytest.fixture(scope="module")
def machine() -> Iterator[Machine]:
    reason = _cannot_run_nspawn()
    if reason:
        pytest.skip(reason)
    started = time.monotonic()
    _folder, tar = kit.kit()
    TIMINGS.append(("rescue kit (built or cached)", time.monotonic() - started))
    work = Path(tempfile.mkdtemp(prefix="backupctl-system-", dir="/var/tmp"))
    try:
        step = time.monotonic()
        root = rootfs.fresh_copy(work / "root")
        TIMINGS.append(("Debian 12 root (built or cached), copied", time.monotonic() - step))
        # As docs/INSTALL.md says: the kit's tar (and its .sha256) unpacked beside it.
        (root / "root" / "kit").mkdir(parents=True)
        for beside in (tar, tar.with_name(tar.name + ".sha256")):
            if beside.exists():
                shutil.copy2(beside, root / "root" / "kit" / beside.name)
        subprocess.run(["tar", "-xf", tar.name], cwd=root / "root" / "kit", check=True)
        box = Machine(root, work / "console.log")
        _MACHINES.append(box)
        step = time.monotonic()
        try:
            box.boot()
            TIMINGS.append(("boot to systemd running", time.monotonic() - step))
            yield box
        finally:
            box.poweroff()
            _MACHINES.remove(box)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        TIMINGS.append(("system test, in all", time.monotonic() - started))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if report.failed and _MACHINES:
        box = _MACHINES[-1]
        try:
            report.sections.append(("container journal (last 300 lines)", box.journal("-n", "300")))
        except Exception as exc:  # the container may be gone: say so, keep the test's own failure
            report.sections.append(("container journal", f"unavailable: {exc}"))
        report.sections.append(("container console", box.console()))


def pytest_terminal_summary(terminalreporter):  # type: ignore[no-untyped-def]
    if TIMINGS:
        terminalreporter.write_sep("-", "system test timings")
        for what, seconds in TIMINGS:
            terminalreporter.write_line(f"{seconds:7.1f} s  {what}")

"""A Debian 12 container booted with systemd as PID 1 (systemd-nspawn --boot), for the system
test, and the commands run inside it (nsenter into all its namespaces).

--register=no --keep-unit: the build machine has no systemd of its own (no system bus, no
machined), so the container is neither registered nor given a scope. --private-network:
the container has only its loopback, so whatever it installs comes from the kit, offline.
The container is always powered off (poweroff, then SIGKILL after a grace period), from
the fixture's finalizer and from atexit should the test process be interrupted.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import pty
import select
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_PR_SET_PDEATHSIG = 1  # prctl(2)


class Machine:
    def __init__(self, root: Path, console_log: Path) -> None:
        self.root = root
        self.console_log = console_log
        self.nspawn: subprocess.Popen[bytes] | None = None
        self.leader = 0

    def boot(self, *, timeout: float = 120) -> None:
        log = open(self.console_log, "wb")
        self.nspawn = subprocess.Popen(
            ["systemd-nspawn", "--quiet", "--register=no", "--keep-unit", "--boot", "--private-network",
             "--console=read-only", "-D", str(self.root), "--machine=backupctl-test"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=_stop_with_the_test)
        log.close()
        atexit.register(self.poweroff)
        deadline = time.monotonic() + timeout
        while not self.leader:
            if self.nspawn.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"systemd-nspawn did not start the container:\n{self.console()}")
            self.leader = self._init_process()
            if not self.leader:
                time.sleep(0.2)
        while True:  # "running" or "degraded": booted either way (a degraded unit is the test's to see)
            state = self.run("systemctl", "is-system-running", "--wait", check=False, timeout=timeout).stdout.strip()
            if state in ("running", "degraded"):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the container did not finish booting ({state}):\n{self.console()}")
            time.sleep(0.5)

    def _init_process(self) -> int:
        """The container's PID 1 (systemd), a child of systemd-nspawn once it has exec'd it:
        before that the child is nspawn's own, not yet in the container's namespaces."""
        assert self.nspawn is not None
        children = subprocess.run(["pgrep", "-P", str(self.nspawn.pid)], capture_output=True, text=True).stdout
        for pid in children.split():
            try:
                if os.readlink(f"/proc/{pid}/exe").endswith("/systemd"):
                    return int(pid)
            except OSError:
                continue
        return 0

    def run(self, *argv: str, check: bool = True, timeout: float = 300, input: str | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """A command inside the container as root, with a clean environment."""
        assert self.leader, "the container is not running"
        clean = [f"{k}={v}" for k, v in {"PATH": PATH, "LANG": "C.UTF-8", "HOME": "/root", **(env or {})}.items()]
        done = subprocess.run(["nsenter", "-t", str(self.leader), "-a", "env", "-i", *clean, *argv],
                              capture_output=True, text=True, timeout=timeout, input=input,
                              stdin=None if input is not None else subprocess.DEVNULL)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} -> exit {done.returncode}\nstdout:\n{done.stdout}\n"
                                 f"stderr:\n{done.stderr}")
        return done

    def at_a_terminal(self, *argv: str, answer: Callable[[bytes], bytes | None],
                      timeout: float = 600) -> tuple[int, bytes]:
        """A command inside the container with a terminal (a pty) as its standard input,
        output and error, as a person at the console; `answer` sees the output so far and
        may return what to type (once)."""
        clean = [f"PATH={PATH}", "LANG=C.UTF-8", "HOME=/root", "TERM=dumb"]
        master, slave = pty.openpty()
        process = subprocess.Popen(["nsenter", "-t", str(self.leader), "-a", "env", "-i", *clean, *argv],
                                   stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
        os.close(slave)
        output, answered, deadline = b"", False, time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                ready, _, _ = select.select([master], [], [], 0.5)
                if ready:
                    try:
                        chunk = os.read(master, 65536)
                    except OSError:  # EIO: the command closed the terminal
                        break
                    if not chunk:
                        break
                    output += chunk
                    if not answered:
                        typed = answer(output)
                        if typed is not None:
                            os.write(master, typed)
                            answered = True
                elif process.poll() is not None:
                    break
            return process.wait(timeout=max(1.0, deadline - time.monotonic())), output
        finally:
            os.close(master)
            if process.poll() is None:
                process.kill()

    def sh(self, script: str, **kwargs) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
        return self.run("/bin/sh", "-c", script, **kwargs)

    def show(self, unit: str, *properties: str) -> dict[str, str]:
        out = self.run("systemctl", "show", unit, "-p", ",".join(properties)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def journal(self, *args: str) -> str:
        return self.run("journalctl", "--no-pager", "-o", "short-monotonic", *args, check=False).stdout

    def console(self) -> str:
        try:
            return self.console_log.read_text(errors="replace")[-6000:]
        except OSError:
            return ""

    def poweroff(self, *, grace: float = 60) -> None:
        if self.nspawn is None or self.nspawn.poll() is not None:
            return
        if self.leader:
            subprocess.run(["nsenter", "-t", str(self.leader), "-a", "systemctl", "poweroff", "--no-block"],
                           capture_output=True, timeout=30)
        try:
            self.nspawn.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(self.nspawn.pid, signal.SIGKILL)
            self.nspawn.wait(timeout=30)


def _stop_with_the_test() -> None:
    """In nspawn's child before exec: a test process killed outright (SIGTERM, SIGKILL) runs no
    atexit, so the kernel sends nspawn SIGTERM when it dies, and nspawn powers the container off
    instead of leaving it booted."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

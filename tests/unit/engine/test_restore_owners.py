"""Restores set the recorded owners as root, and as any user holding CAP_CHOWN: the installed
server's wrapper runs a restore as the service user with it (agent/service_install/wrapper.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from agent.engine.restore import can_set_owners

PROBE = "from agent.engine.restore import can_set_owners; print(can_set_owners())"


def _as_nobody(*capabilities: str) -> str:
    caps = ",".join(f"+{c}" for c in capabilities) or "-all"
    done = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", f"--inh-caps={caps}",
                           f"--ambient-caps={caps}", sys.executable, "-c", PROBE],
                          capture_output=True, text=True, cwd=os.getcwd(), check=True)
    return done.stdout.strip()


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv (CI: both)")
def test_a_user_with_cap_chown_restores_owners_and_one_without_does_not():
    assert can_set_owners()  # root
    assert _as_nobody("chown") == "True"
    assert _as_nobody() == "False"

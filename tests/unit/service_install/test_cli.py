"""`backupctl install-service` refuses, in one line and exit 2, where it cannot install."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv (CI: both)")
def test_install_service_as_another_user_than_root_is_refused_in_one_line():
    done = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m",
                           "agent", "install-service"], capture_output=True, text=True, cwd=os.getcwd())
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "backupctl: error: install-service must run as root — sudo sh install.sh"]


def test_install_service_is_a_backupctl_command():
    done = subprocess.run([sys.executable, "-m", "agent", "--help"], capture_output=True, text=True)
    assert "install-service" in done.stdout

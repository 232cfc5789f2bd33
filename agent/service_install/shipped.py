"""The files shipped with the program that the installer copies: the unit, the sysusers and
tmpfiles snippets (their source of truth stays the checkout's systemd/ folder) and the
example configuration.

In a wheel they are data files installed under <venv>/share/backupctl/ with the same
relative paths (pyproject.toml, [tool.setuptools] data-files); in a checkout they are read
where they are.
"""

from __future__ import annotations

import sys
from pathlib import Path

from agent.errors import InstallError

UNIT = "systemd/backupctl.service"
SYSUSERS = "systemd/sysusers.d/backupctl.conf"
TMPFILES = "systemd/tmpfiles.d/backupctl.conf"
CONFIG_EXAMPLE = "config.example.toml"

_CHECKOUT = Path(__file__).resolve().parents[2]


def shipped_text(relative: str) -> str:
    installed = Path(sys.prefix) / "share" / "backupctl" / relative
    for candidate in (installed, _CHECKOUT / relative):
        if candidate.is_file():
            return candidate.read_text(encoding="utf-8")
    raise InstallError(f"{relative} is not installed with this program (looked in {installed})",
                       hint="reinstall backupctl from its rescue kit (sudo sh install.sh)")

"""The environment of every child process the agent starts: hooks, database clients, the
restore test's throwaway database servers, Chromium.

Built from an allow-list, not by deleting known secrets from a copy of our own: the agent's
environment may hold the repository passphrase (BACKUPCTL_PASSPHRASE), S3 keys (AWS_*), the
systemd credentials folder, or a secret of the surrounding shell that nobody thought to list
(PGPASSWORD, a *_TOKEN). A child gets what lets any program run (search path, locale, time
zone, home, user name, temporary folder) and what its caller hands it on purpose (PGPASSFILE,
a hook's own `environment` table), nothing else.
"""

from __future__ import annotations

import os
from typing import Mapping

PASSED = frozenset({"PATH", "LANG", "LANGUAGE", "TZ", "HOME", "USER", "LOGNAME", "TMPDIR"})
PASSED_PREFIXES = ("LC_",)  # LC_ALL, LC_CTYPE, ...: the locale, never a secret
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def child_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a child: the allow-listed variables of ours, then `extra`
    (which the caller chose, and which wins)."""
    env = {name: value for name, value in os.environ.items()
           if name in PASSED or name.startswith(PASSED_PREFIXES)}
    env.setdefault("PATH", DEFAULT_PATH)  # a child started with no PATH at all finds nothing
    env.update(extra or {})
    return env

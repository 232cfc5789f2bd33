"""Whether a process of this machine still runs (stale locks, leftovers of a killed run)."""

from __future__ import annotations

import os


def process_exists(pid: int) -> bool:
    """True when `pid` runs on this machine, whoever owns it."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True

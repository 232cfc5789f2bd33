"""Helpers of the attack tests: a folder's full listing, and calls that must not block."""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from pathlib import Path
from typing import Any, Callable

import pytest

DEADLINE_S = 5.0


def listing(root: Path) -> dict[str, tuple]:
    """type, owner, mode and content (or link target) of `root` and everything below it:
    compared before and after an attack, it shows whether anything there changed."""
    out: dict[str, tuple] = {}
    for path in [root, *sorted(root.rglob("*"))]:
        st = path.lstat()
        if stat.S_ISREG(st.st_mode):
            what = hashlib.sha256(path.read_bytes()).hexdigest()
        elif stat.S_ISLNK(st.st_mode):
            what = os.readlink(path)
        else:
            what = ""
        out[str(path.relative_to(root))] = (stat.S_IFMT(st.st_mode), st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode),
                                            what)
    return out


def within_deadline(call: Callable[[], Any], seconds: float = DEADLINE_S) -> Any:
    """call()'s result or exception, or a test failure if it has not returned in `seconds`
    (a call that blocked before a fix fails the test instead of hanging the suite)."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"the call still blocks after {seconds} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")

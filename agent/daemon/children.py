"""The daemon's side of its contract with the commands it runs as child processes.

A job runs `python -m agent --config FILE COMMAND --repo NAME ... --json` (child_command)
and reads two things back: the exit code, whose values are those of agent/errors.py, and
a few keys of the command's --json document, declared once in CHILD_JSON. `summary_of`
reads those keys and no others, and keeps only counts, ids and flags: never a path (a file
name can be health data, and the summary goes into jobs.json, logs and alerts).

The declaration is the contract: tests/unit/daemon/test_children.py checks that
`summary_of` reads exactly the declared keys, and tests/integration/test_daemon_contract.py
runs the real commands as the daemon runs them and checks that every declared key is in
their output with its declared type. A command that renames a key then fails a test
instead of leaving the daemon's records and alerts silently empty.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any, Union

# A key's JSON type: a Python type or a tuple of them (NoneType for null), a mapping for an
# object whose own keys are declared in turn, or a one-item list holding such a mapping for
# a list of objects. A key declared with a plain type or tuple is copied into the summary as
# it is; lists and objects are reduced to counts and ids by `summary_of`, by name.
Shape = Union[type, tuple[type, ...], Mapping[str, "Shape"], list[Mapping[str, "Shape"]]]
NUMBER = (int, float)  # a duration or a rate: a whole one may come as an integer

CHILD_JSON: Mapping[str, Mapping[str, Shape]] = {
    "backup": {
        "snapshot_id": str, "files_new": int, "files_changed": int, "files_unchanged": int, "bytes_added": int,
        "partial": bool, "database_failures": int, "hook_failures": int,
        # Counted; the hooks' own warnings (path "hook") and the failed dumps apart from the
        # unreadable files. The path itself is only compared, never kept.
        "warnings": [{"path": str}],
    },
    "prune": {"snapshots_forgotten": int, "packs_deleted": int, "bytes_freed": int},
    "check": {"ok": bool, "read_data_subset": (str, type(None)), "packs": int, "blobs_verified": int,
              "errors": list},
    "restore-test": {
        "ok": bool, "files": int, "bytes": int, "sha256_verified": int, "seed": int, "scratch_wiped": bool,
        "failures": list,
        "tests": [{"snapshot_id": str, "mode": str, "files": int, "duration_s": NUMBER, "throughput_mib_s": NUMBER}],
        "report": {"id": str, "html": str, "json": str, "pdf": (str, type(None)), "stored_in_repository": bool},
    },
}


def child_command(config_path: str, command: str, repository: str, extra: list[str]) -> list[str]:
    """The command line of one step of a job: the agent itself, so a job behaves exactly as
    the command typed by hand (exit codes, SIGTERM, memory given back when it ends)."""
    return [sys.executable, "-m", "agent", "--config", config_path, command, "--repo", repository, *extra, "--json"]


def is_copied(shape: Shape) -> bool:
    """A key copied as it is (a number, a string, a flag), not a list or an object."""
    return isinstance(shape, tuple) or (isinstance(shape, type) and shape not in (list, dict))


def object_keys(shape: Shape) -> Mapping[str, Shape]:
    """The declared keys of an object, or of each object of a list of them."""
    inner = shape[0] if isinstance(shape, list) else shape
    if not isinstance(inner, Mapping):
        raise TypeError(f"{shape!r} declares no object")
    return inner


def summary(command: str, stdout: bytes) -> dict[str, Any]:
    """Counts and ids only, from the command's --json output ({} if it printed none: an
    error before its document, or a crash)."""
    try:
        document = json.loads(stdout)
    except ValueError:
        return {}
    return summary_of(command, document) if isinstance(document, dict) else {}


def summary_of(command: str, document: Mapping[str, Any]) -> dict[str, Any]:
    declared = CHILD_JSON[command]
    out = {key: document.get(key) for key, shape in declared.items() if is_copied(shape) and key in document}
    if command == "backup":
        warnings = document.get("warnings", [])
        out["warnings"] = len(warnings)
        # Files and folders that could not be read: every warning but the hooks' (path "hook")
        # and the failed database dumps (counted on their own).
        out["unreadable"] = max(0, sum(1 for w in warnings if isinstance(w, dict) and w.get("path") != "hook")
                                - int(document.get("database_failures") or 0))
    if command == "check":
        out["errors"] = len(document.get("errors", []))
    if command == "restore-test":
        out["failures"] = len(document.get("failures", []))
        out["tests"] = [{k: t.get(k) for k in object_keys(declared["tests"])} for t in document.get("tests", [])]
        report = document.get("report") or {}
        out["report"] = {k: report.get(k) for k in object_keys(declared["report"])}
    return out

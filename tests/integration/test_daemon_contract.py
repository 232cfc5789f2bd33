"""The daemon's contract with the commands it runs: every key it reads from their --json
documents (agent.daemon.children.CHILD_JSON) is there with its declared type when the real
commands run as the daemon runs them, and they exit with the codes of agent/errors.py the
daemon expects. A command that renamed a key would otherwise leave jobs.json, the journal
and the alerts silently without it."""

from __future__ import annotations

import json
import subprocess
from typing import Any

from agent.daemon.children import CHILD_JSON, child_command, summary
from agent.errors import PARTIAL_BACKUP_EXIT_CODE, SUCCESS_EXIT_CODE

from .support import Backupctl, base_env, write

# The steps of the daemon's jobs (agent/daemon/jobs.py, JobRunner.run), with the arguments
# it gives them, and the code each exits with here: the backup has one failing hook.
STEPS: list[tuple[str, list[str], int]] = [
    ("backup", [], PARTIAL_BACKUP_EXIT_CODE),
    ("prune", [], SUCCESS_EXIT_CODE),
    ("check", ["--read-data-subset", "1/1"], SUCCESS_EXIT_CODE),
    ("restore-test", ["--sample", "5"], SUCCESS_EXIT_CODE),
]
HOOK = '\n[[hooks]]\nname = "après"\nafter = ["false"]\non_failure = "continue"\n'


def mismatches(shape: Any, value: Any, where: str) -> list[str]:
    """How a JSON value differs from its declared shape (agent.daemon.children.Shape)."""
    if isinstance(shape, dict):
        if not isinstance(value, dict):
            return [f"{where} is {type(value).__name__}, not an object"]
        return [problem for key, inner in shape.items()
                for problem in ([f"{where}.{key} is missing"] if key not in value
                                else mismatches(inner, value[key], f"{where}.{key}"))]
    if isinstance(shape, list):
        if not isinstance(value, list) or not value:
            return [f"{where} is {value!r}, not a list of objects (at least one, to check their keys)"]
        return [problem for i, item in enumerate(value) for problem in mismatches(shape[0], item, f"{where}[{i}]")]
    kinds = shape if isinstance(shape, tuple) else (shape,)
    # Exact JSON types: a flag (bool) is not a count (int), though Python says it is.
    return [] if type(value) in kinds else [f"{where} is {type(value).__name__} {value!r}, "
                                            f"not {' or '.join(k.__name__ for k in kinds)}"]


def test_every_key_the_daemon_reads_is_in_its_children_json(bk: Backupctl) -> None:
    assert {command for command, _extra, _code in STEPS} == set(CHILD_JSON)
    write(bk.src / "lettre.txt", "Madame, " * 200)
    bk.config.write_text(bk.config.read_text() + HOOK, encoding="utf-8")
    bk.init()
    env = base_env()
    env["BACKUPCTL_CHROMIUM"] = str(bk.base / "no-chromium")  # no PDF (seconds): "pdf" is then null
    documents = {}
    for command, extra, code in STEPS:
        done = subprocess.run(child_command(str(bk.config), command, "main", extra), env=env, cwd=bk.base,
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=300)
        assert done.returncode == code, f"{command}: exit {done.returncode}\n{done.stderr.decode()[-2000:]}"
        documents[command] = done.stdout
        assert mismatches(dict(CHILD_JSON[command]), json.loads(done.stdout), command) == []

    # And the daemon's reading of them (what jobs.json, the journal and the alerts carry).
    backup = summary("backup", documents["backup"])
    assert len(backup["snapshot_id"]) == 32 and backup["files_new"] == 1 and backup["partial"] is True
    assert backup["hook_failures"] == 1 and backup["warnings"] == 1 and backup["unreadable"] == 0
    assert summary("prune", documents["prune"])["snapshots_forgotten"] == 0
    check = summary("check", documents["check"])
    assert check["ok"] is True and check["read_data_subset"] == "1/1" and check["errors"] == 0
    test = summary("restore-test", documents["restore-test"])
    assert test["ok"] is True and test["files"] == 1 and test["failures"] == 0
    assert [t["snapshot_id"] for t in test["tests"]] == [backup["snapshot_id"]]
    assert test["report"]["html"].endswith(".html") and test["report"]["stored_in_repository"] is True

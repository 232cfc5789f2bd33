"""agent/cli/diff_cmd.py in-process (click's runner): the lines a person reads, the JSON
document a script reads, non-UTF-8 names in both. The real command, its exit codes and
its error line are tests/integration/test_diff.py's."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from agent.cli import diff_cmd
from agent.crypto.kdf import KdfParams
from agent.engine.backup import BackupEngine, BackupOptions
from agent.engine.diff import SnapshotDiff
from agent.errors import RepositoryLocked, UsageError
from agent.repo.lock import RepositoryLock
from agent.repo.repository import Repository
from agent.storage.local import LocalStorage
from tests.support.locked import run_locked

PASSPHRASE = "phrase de passe du test de diff"
FAST = KdfParams(memory_kib=8192, iterations=1)
PARIS = ZoneInfo("Europe/Paris")
LATIN1 = b"r\xe9sum\xe9.txt"


@pytest.fixture
def world(tmp_path: Path) -> dict:
    """Two snapshots of tmp_path/src: a letter changed, an order made private, an old
    note gone, a scan and a non-UTF-8 name added."""
    repo_dir, src = tmp_path / "repo", tmp_path / "src"
    repo = Repository.init(LocalStorage(str(repo_dir)), PASSPHRASE.encode(), cipher="xchacha20-poly1305",
                           compression_level=3, kdf_params=FAST)
    src.mkdir()
    (src / "lettre.txt").write_bytes(b"Cher confrere\n")
    (src / "ordonnance.txt").write_bytes(b"paracetamol\n")
    (src / "vieux.txt").write_bytes(b"a jeter\n")
    os.symlink("2025", src / "courant")
    when = dt.datetime(2026, 12, 1, 18, tzinfo=PARIS)
    first = run_locked(BackupEngine(repo, BackupOptions(paths=[str(src)], time=when))).snapshot
    (src / "lettre.txt").write_bytes(b"Cher confrere, suite a\n")
    mode = os.stat(src / "ordonnance.txt").st_mode & 0o7777
    os.chmod(src / "ordonnance.txt", 0o600)
    (src / "vieux.txt").unlink()
    os.unlink(src / "courant")
    os.symlink("2026", src / "courant")
    (src / "scans").mkdir()
    (src / "scans" / "bilan.pdf").write_bytes(b"%PDF" * 256)
    with open(os.path.join(os.fsencode(src), LATIN1), "wb") as handle:
        handle.write(b"CV\n")
    second = run_locked(BackupEngine(repo, BackupOptions(paths=[str(src)], time=when + dt.timedelta(days=1))))
    config = tmp_path / "config.toml"
    config.write_text(f'[agent]\nstate_dir = "{tmp_path / "state"}"\n[source]\npaths = ["{src}"]\n'
                      f'[repositories.main]\nurl = "file://{repo_dir}"\n', encoding="utf-8")
    return {"config": str(config), "src": str(src), "a": first.id.hex(), "b": second.snapshot.id.hex(),
            "mode": f"{mode:04o}", "repo": str(repo_dir)}


def _invoke(world: dict, *args: str):
    return CliRunner().invoke(diff_cmd.command, list(args), obj={"config_file": world["config"]},
                              env={"BACKUPCTL_PASSPHRASE": PASSPHRASE})


def test_one_line_per_difference_then_the_summary(world):
    result = _invoke(world, world["a"][:8], world["b"])
    assert result.exit_code == 0, result.output
    src = world["src"]
    lines = result.output.splitlines()
    below = lines[:-1]  # every line but the summary
    assert below == [
        f"M {src}/courant  target 2025 -> 2026",
        f"M {src}/lettre.txt  14 B -> 23 B",
        f"m {src}/ordonnance.txt  mode {world['mode']} -> 0600",
        f"+ {src}/r\ufffdsum\ufffd.txt  3 B",  # undecodable bytes shown replaced, as ls shows them
        f"+ {src}/scans/",
        f"+ {src}/scans/bilan.pdf  1.0 KiB",
        f"- {src}/vieux.txt  8 B",
    ]
    # src itself (its listing and so its mtime changed) and the folders above it: not listed
    summary = lines[-1]
    assert summary.startswith(f"{world['a'][:8]} (2026-12-01 18:00 CET) -> {world['b'][:8]} (2026-12-02 18:00 CET): ")
    assert "3 added (2 file(s), 1.0 KiB), 1 removed (1 file(s), 8 B), 2 changed (14 B -> 23 B)" in summary
    assert "folder listing(s) read" in summary


def test_the_json_document(world):
    result = _invoke(world, world["a"], "latest", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["snapshot_a"] == world["a"] and doc["snapshot_b"] == world["b"]
    assert doc["time_a"] == "2026-12-01T18:00:00+01:00"
    src = world["src"]
    added = {e["path"]: e for e in doc["added"]}
    assert added[f"{src}/scans/bilan.pdf"] == {"path": f"{src}/scans/bilan.pdf", "type": "file", "size": 1024}
    assert added[f"{src}/scans"] == {"path": f"{src}/scans", "type": "dir", "size": None}
    assert f"{src}/r\udce9sum\udce9.txt" in added  # as ls --json gives a name that is not UTF-8
    assert doc["removed"] == [{"path": f"{src}/vieux.txt", "type": "file", "size": 8}]
    link, changed = doc["changed"]
    assert link["path"] == f"{src}/courant" and link["type"] == "symlink"
    assert (link["target_before"], link["target_after"]) == ("2025", "2026")
    assert link["size_before"] is None and "sha256_after" not in link
    assert changed["path"] == f"{src}/lettre.txt"
    assert (changed["size_before"], changed["size_after"]) == (14, 23)
    assert changed["sha256_before"] != changed["sha256_after"] and len(changed["sha256_after"]) == 64
    assert set(changed["metadata"]) <= {"mtime"}
    order = next(e for e in doc["metadata"] if e["path"] == f"{src}/ordonnance.txt")
    assert order["metadata"]["mode"]["after"] == "0600" and order["type"] == "file"
    summary = doc["summary"]
    assert (summary["added"], summary["removed"], summary["changed"]) == (3, 1, 2)
    assert summary["files_changed"] == 1
    assert (summary["files_added"], summary["bytes_added"], summary["bytes_removed"]) == (2, 1027, 8)
    assert (summary["bytes_changed_before"], summary["bytes_changed_after"]) == (14, 23)
    assert summary["metadata"] == len(doc["metadata"]) and summary["listings_read"] > 0
    # the document is ASCII: valid UTF-8 whatever the names
    result.output.encode("ascii")


def test_a_snapshot_with_itself_differs_in_nothing(world):
    result = _invoke(world, world["b"], "latest", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["added"] == doc["removed"] == doc["changed"] == doc["metadata"] == []
    assert doc["summary"]["listings_read"] == 0


def test_an_unknown_snapshot_is_the_usual_usage_error(world):
    result = _invoke(world, world["a"], "ffffffffff")
    assert isinstance(result.exception, UsageError)
    assert "no snapshot id starts with 'ffffffffff'" in str(result.exception)


def test_it_reads_under_a_shared_lock(world, monkeypatch):
    """While it reads, a prune (an exclusive lock) is refused; once it ends, it is not."""
    refused: list = []
    real = SnapshotDiff.run

    def second_process() -> Repository:
        return Repository.open(LocalStorage(world["repo"]), PASSPHRASE.encode())

    def reading(self):
        with pytest.raises(RepositoryLocked, match=r"diff .shared lock."):
            RepositoryLock(second_process(), "prune", exclusive=True).acquire()
        refused.append(True)
        return real(self)

    monkeypatch.setattr(SnapshotDiff, "run", reading)
    result = _invoke(world, world["a"], world["b"])
    assert result.exit_code == 0, result.output
    assert refused == [True]
    RepositoryLock(second_process(), "prune", exclusive=True).acquire().release()

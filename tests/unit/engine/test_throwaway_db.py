"""agent/engine/throwaway_db.py without servers: what the next restore test removes after a crash."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from agent.engine import throwaway_db
from agent.state.layout import StateLayout


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_leftovers_of_dead_runs_are_removed_and_no_symlink_is_followed(tmp_path, monkeypatch):
    state, temporary, precious = tmp_path / "state", tmp_path / "tmp", tmp_path / "precious"
    for folder in (Path(StateLayout(str(state)).restore_test_databases()), temporary, precious):
        folder.mkdir(parents=True)
    (precious / "keep").write_text("not ours")
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    dead, alive = _dead_pid(), os.getppid()
    (Path(StateLayout(str(state)).restore_test_databases()) / f"{dead}-postgresql-aaaa" / "data").mkdir(parents=True)
    # a restore test still running
    (Path(StateLayout(str(state)).restore_test_databases()) / f"{alive}-mariadb-bbbb").mkdir()
    (temporary / f"backupctl-db-{dead}-cccc").mkdir()
    (temporary / f"backupctl-db-{dead}-dddd").symlink_to(precious)  # planted: never followed
    (temporary / f"backupctl-db-{alive}-eeee").mkdir()
    throwaway_db.clean_stale(str(state))
    assert os.listdir(Path(StateLayout(str(state)).restore_test_databases())) == [f"{alive}-mariadb-bbbb"]
    assert set(os.listdir(temporary)) == {f"backupctl-db-{dead}-dddd", f"backupctl-db-{alive}-eeee"}
    assert (precious / "keep").read_text() == "not ours"


def test_a_server_is_never_run_as_root(tmp_path):
    """The state dir belongs to root: refused, with the two ways out."""
    assert os.geteuid() == 0, "this test runs as root (the suite does)"
    try:
        throwaway_db._server_owner(str(tmp_path))
    except throwaway_db.NoServerUser as exc:
        assert "sudo -u backupctl" in str(exc) and f"chown -R backupctl: {tmp_path}" in str(exc)
    else:
        raise AssertionError("a root-owned state dir was accepted")
    os.chown(tmp_path, 65534, 65534)
    assert throwaway_db._server_owner(str(tmp_path)) == (65534, 65534)

"""agent.daemon.status: `status` says at risk when the service is installed but its daemon
does not run (issue 18, point 3), judged from the unit file and the daemon's own lock,
without systemd."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent import clock
from agent.cli import status_cmd
from agent.daemon import jobs, status
from agent.daemon.service import Daemon
from agent.state.records import Records


@pytest.fixture
def world(tmp_path: Path, monkeypatch) -> tuple[Path, Path]:
    """A configuration whose obligations are all met, and where the unit file would be."""
    state = tmp_path / "state"
    config = tmp_path / "config.toml"
    config.write_text(f'[agent]\nstate_dir = "{state}"\n[source]\npaths = ["{tmp_path}"]\n'
                      f'[repositories.main]\nurl = "file://{tmp_path / "repo"}"\n', encoding="utf-8")
    records = Records(str(state), "main")
    now = clock.now()
    records.note("backup", now, snapshot="ab")
    records.note("check", now, ok=True)
    records.note("restore_test", now, ok=True)
    unit = tmp_path / "backupctl.service"
    monkeypatch.setattr(status, "INSTALLED_UNIT", str(unit), raising=False)
    return config, unit


def _status(config: Path) -> tuple[int, dict, str]:
    runner = CliRunner()
    as_json = runner.invoke(status_cmd.command, ["--json"], obj={"config_file": str(config)})
    text = runner.invoke(status_cmd.command, [], obj={"config_file": str(config)})
    assert as_json.exception is None or isinstance(as_json.exception, SystemExit), as_json.output
    return as_json.exit_code, json.loads(as_json.output), text.output


def test_no_unit_installed_and_no_daemon_is_not_a_risk(world):
    config, _unit = world
    code, document, text = _status(config)
    assert code == 0 and document["ok"] and document["at_risk"] == []
    assert "All obligations are met." in text


def test_unit_installed_but_no_daemon_running_is_a_risk(world):
    config, unit = world
    unit.write_text("[Service]\n")
    code, document, text = _status(config)
    assert code == 4 and not document["ok"] and document["daemon"]["running"] is False
    (risk,) = document["at_risk"]
    assert "installed" in risk and "not running" in risk and "systemctl start backupctl" in risk
    assert f"AT RISK: {risk}" in text


def test_unit_installed_and_the_daemon_holding_its_lock_is_not_a_risk(world):
    config, unit = world
    unit.write_text("[Service]\n")
    daemon = Daemon(str(config))
    daemon._single_instance()  # the lock the daemon takes at start, one per state_dir
    try:
        code, document, _text = _status(config)
        assert code == 0 and document["ok"] and document["daemon"]["running"] is True
    finally:
        daemon._lock_handle.close()
    code, document, _text = _status(config)  # the lock released: the daemon is gone
    assert code == 4 and document["daemon"]["running"] is False


def test_a_lock_this_user_may_not_read_claims_nothing(world, monkeypatch):
    """Another user than the service's cannot tell whether the daemon runs: no risk from it."""
    config, unit = world
    unit.write_text("[Service]\n")
    Daemon(str(config))._single_instance()  # the lock file exists (released with the object)

    def refused(*_args, **_kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(status, "open", refused, raising=False)
    code, document, text = _status(config)
    assert code == 0 and document["ok"] and document["daemon"]["running"] is None and document["at_risk"] == []
    assert "Daemon: unknown" in text


def test_a_failed_job_of_the_daemon_shows_with_its_error_line_until_it_succeeds(world):
    """The alert and the journal carry the exit code only (they leave the server); the IT
    provider reads why on the server, in `status`, which the alert points to."""
    config, _unit = world
    record = jobs.JobRecord(str(config.parent / "state"))
    started = clock.now()
    line = "backupctl: error: cannot write to s3://cabinet/main (AccessDenied) — check the bucket policy"
    record.save("weekly:main", started=started, ok=False,
                steps=[jobs.StepResult("backup", 14, 3.0, error_detail=line)])
    _code, document, text = _status(config)
    (failed,) = document["repositories"][0]["failed_jobs"]
    assert failed["exit_code"] == 14 and failed["error_detail"] == line and failed["job"].startswith("weekly")
    assert "last run failed:" in text and "exit 14: " + line in text
    record.save("weekly:main", started=clock.now(), ok=True, steps=[jobs.StepResult("backup", 0, 3.0)])
    _code, document, text = _status(config)
    assert document["repositories"][0]["failed_jobs"] == [] and "last run failed" not in text

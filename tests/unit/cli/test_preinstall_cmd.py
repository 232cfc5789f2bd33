"""`backupctl pre-installation` (agent/cli/preinstall_cmd.py) in process, its children
replaced: "once a day" is the practice's day ([retention] timezone, docs/INSTALL.md "A copy
before every installation"), and the repository must answer within 60 s whatever the time
allowed to the whole (a silent server would otherwise hold apt for half an hour)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from agent import clock
from agent.cli import preinstall_cmd
from agent.state.records import Records

AUCKLAND = ZoneInfo("Pacific/Auckland")  # UTC+13 in December: its midnight is 11:00 UTC


@pytest.fixture
def world(tmp_path: Path, monkeypatch) -> dict:
    config = tmp_path / "config.toml"
    config.write_text(f'[agent]\nstate_dir = "{tmp_path / "state"}"\n[source]\npaths = ["{tmp_path}"]\n'
                      f'[repositories.main]\nurl = "file://{tmp_path / "repo"}"\n'
                      f'[retention]\ntimezone = "Pacific/Auckland"\n', encoding="utf-8")
    reached: list[float] = []
    monkeypatch.setattr(preinstall_cmd, "_reach", lambda _config, _name, timeout_s: reached.append(timeout_s))
    monkeypatch.setattr(preinstall_cmd, "_backup", lambda _config, _name, _timeout_s: ("ee" * 16, 0))
    yield {"config": str(config), "records": Records(str(tmp_path / "state"), "main"), "reached": reached}
    clock.freeze(None)


def _run(world: dict, *args: str):
    result = CliRunner().invoke(preinstall_cmd.command, list(args), obj={"config_file": world["config"]})
    assert result.exit_code == 0, result.output
    return result.output


def test_once_a_day_is_the_practice_s_day_not_utc_s(world):
    # 23:30 and 00:30 the next day in Auckland: the same UTC day, two days of the practice
    world["records"].note(preinstall_cmd.RECORD, dt.datetime(2026, 12, 6, 23, 30, tzinfo=AUCKLAND), snapshot="aa" * 16)
    clock.freeze(dt.datetime(2026, 12, 7, 0, 30, tzinfo=AUCKLAND))
    assert "saved in main" in _run(world)
    # 00:30 and 23:00 the same day in Auckland: two UTC days, one day of the practice
    world["records"].note(preinstall_cmd.RECORD, dt.datetime(2026, 12, 7, 0, 30, tzinfo=AUCKLAND), snapshot="bb" * 16)
    clock.freeze(dt.datetime(2026, 12, 7, 23, 0, tzinfo=AUCKLAND))
    assert "already taken today" in _run(world)


def test_the_repository_must_answer_within_60_seconds_whatever_the_time_allowed(world):
    clock.freeze(dt.datetime(2026, 12, 7, 9, tzinfo=AUCKLAND))
    _run(world)
    _run(world, "--force", "--timeout", "5")
    assert world["reached"] == [60, 5]

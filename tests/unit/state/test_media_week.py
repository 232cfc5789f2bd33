"""The disk of the week turns at midnight in the practice's zone (`[retention] timezone`),
not at the server's: late on Sunday evening UTC it is already Monday in Paris, and the
practitioner was told on paper which disk that Monday wants."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from agent import clock
from agent.cli import media_cmd
from agent.state import media

DISKS = ("DISQUE-A", "DISQUE-B", "DISQUE-C", "DISQUE-D")
# Sunday 6 December 2026, 23:30 UTC: Monday 7 December, 00:30 in Paris.
SUNDAY_NIGHT_UTC = dt.datetime(2026, 12, 6, 23, 30, tzinfo=dt.timezone.utc)


@pytest.fixture
def frozen():
    clock.freeze(SUNDAY_NIGHT_UTC)
    yield
    clock.freeze(None)


def test_today_is_the_date_in_the_given_zone(frozen) -> None:
    assert clock.today(dt.timezone.utc) == dt.date(2026, 12, 6)
    assert clock.today(ZoneInfo("Europe/Paris")) == dt.date(2026, 12, 7)


def test_media_status_names_the_disk_of_the_practices_week(frozen, tmp_path: Path) -> None:
    paris_monday, utc_sunday = dt.date(2026, 12, 7), dt.date(2026, 12, 6)
    due_in_paris = media.due_medium(DISKS, paris_monday)
    assert due_in_paris != media.due_medium(DISKS, utc_sunday)  # the two weeks want different disks
    config = tmp_path / "config.toml"
    config.write_text(
        f'[agent]\nstate_dir = "{tmp_path / "state"}"\n[source]\npaths = ["{tmp_path}"]\n'
        f'[retention]\ntimezone = "Europe/Paris"\n'
        f'[repositories.disques]\nurl = "file://{tmp_path / "mnt"}"\nmedia = {json.dumps(list(DISKS))}\n',
        encoding="utf-8")
    result = CliRunner().invoke(media_cmd.command, ["status", "--json"], obj={"config_file": str(config)})
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["due_this_week"] == due_in_paris
    due = next(d for d in document["disks"] if d["label"] == due_in_paris)
    assert due["due_this_week"] and due["next_due_week_of"] == paris_monday.isoformat()

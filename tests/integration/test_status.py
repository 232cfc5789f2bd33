"""`backupctl status`: exit 0 only when every obligation is met; the risks in plain words."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

from .support import Backupctl, write

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _restore_test(bk: Backupctl) -> None:
    """The record status reads is written by the command that makes it (never by hand)."""
    bk.ok("restore-test", "--scratch-dir", str(bk.base / "scratch"))


def test_status_reports_risks_until_every_obligation_is_met(bk: Backupctl):
    write(bk.src / "lettre.txt", "Madame, " * 100)
    assert bk.run("init").returncode == 0
    before = bk.run("status", "--json")
    assert before.returncode == 4, str(before)
    doc = before.json()
    assert doc["ok"] is False and doc["daemon"] == {"running": False, "pid": None}
    (main,) = doc["repositories"]
    assert main["last_backup"] is None
    assert "no backup has been made yet (rule S1: at least weekly)" in main["at_risk"]
    assert [run["job"] for run in main["next_runs"]] == ["weekly backup of main", "monthly check of main",
                                                         "quarterly restore test of main"]
    assert bk.run("backup").returncode == 0 and bk.run("check").returncode == 0
    after_backup = bk.run("status")
    assert after_backup.returncode == 4 and "AT RISK: no restore test has been made" in after_backup.stdout
    _restore_test(bk)
    ok = bk.run("status", "--json")
    assert ok.returncode == 0, str(ok)
    assert ok.json()["ok"] is True and ok.json()["repositories"][0]["last_check_ok"] is True


def test_a_failed_check_is_a_risk(bk: Backupctl):
    write(bk.src / "lettre.txt", "Madame, " * 100)
    assert bk.run("init").returncode == 0 and bk.run("backup").returncode == 0
    _restore_test(bk)
    pack = next(p for p in (Path(bk.repo) / "data").rglob("*") if p.is_file())
    pack.unlink()
    assert bk.run("check").returncode == 13
    status = bk.run("status", "--json")
    assert status.returncode == 4
    assert any("found damage" in r for r in status.json()["repositories"][0]["at_risk"])


def test_this_weeks_disk_not_seen_is_a_risk(bk: Backupctl, tmp_path):
    disks = tmp_path / "disks"
    for label in ("DISQUE-A", "DISQUE-B"):
        (disks / label).mkdir(parents=True)
    mount = tmp_path / "usb"
    # "Today" and the disks' week are the practice's (`[retention] timezone`, Europe/Paris by
    # default), not the test machine's: on Sunday after 23:00 UTC it is already Monday there.
    today = dt.datetime.now(ZoneInfo("Europe/Paris"))
    # The weekly backup is scheduled at 00:00 today, so this week's run time has passed.
    bk.config.write_text(bk.config.read_text() + f'''
[repositories.usb]
url = "file://{mount}"
media = ["DISQUE-A", "DISQUE-B"]
[schedule]
backup = "{WEEKDAYS[today.weekday()]} 00:00"
''')
    write(bk.src / "lettre.txt", "Madame, " * 100)
    due = ("DISQUE-A", "DISQUE-B")[((today.date() - dt.date(1970, 1, 5)).days // 7) % 2]
    other = "DISQUE-B" if due == "DISQUE-A" else "DISQUE-A"
    mount.symlink_to(disks / other)
    assert bk.run("media", "init", other, "--repo", "usb").returncode == 0
    assert bk.run("backup", "--repo", "usb").returncode == 0  # the wrong disk
    status = bk.run("status", "--json")
    usb = next(r for r in status.json()["repositories"] if r["repository"] == "usb")
    assert f"this week's disk, {due}, has not received its backup (rule S2)" in usb["at_risk"]
    mount.unlink()
    mount.symlink_to(disks / due)
    assert bk.run("media", "init", due, "--repo", "usb").returncode == 0
    assert bk.run("backup", "--repo", "usb").returncode == 0
    status = bk.run("status", "--json")
    usb = next(r for r in status.json()["repositories"] if r["repository"] == "usb")
    assert not any("this week's disk" in r for r in usb["at_risk"])

"""Every time shown to a person is in `[retention] timezone`, with its zone; JSON keeps
ISO 8601 with an offset (issue 18, point 3, first sentence).

The practice here is in Cayenne (UTC-3, no summer time) while the machine runs in UTC,
so a time left in UTC or in the machine's zone shows the wrong hour.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys

import pytest

from .support import Backupctl, typed_code, write

ZONE = "America/Cayenne"
SAVED = "2026-11-02T18:00:00+00:00"  # the snapshot's time: 15:00 in Cayenne
SHOWN = "2026-11-02 15:00"
MTIME = dt.datetime(2026, 10, 30, 23, 30, tzinfo=dt.timezone.utc)  # the file's: 20:30 the same day in Cayenne


def _cayenne(moment: str) -> str:
    return dt.datetime.fromisoformat(moment).astimezone(dt.timezone(dt.timedelta(hours=-3))).strftime("%Y-%m-%d %H:%M")


@pytest.fixture
def world(tmp_path) -> Backupctl:
    bk = Backupctl(tmp_path)
    path = write(bk.src / "lettre Martin.odt", b"courrier\n")
    os.utime(path, (MTIME.timestamp(), MTIME.timestamp()))
    bk.write_config()
    with open(bk.config, "a", encoding="utf-8") as handle:
        handle.write(f'\n[retention]\ntimezone = "{ZONE}"\n')
    bk.init()
    bk.backup("--time", SAVED)
    return bk


def _has_zone(text: str, hour: str) -> None:
    assert f"{hour} -03:00" in text, text


def test_snapshots_backup_and_restore_show_the_practice_zone(world: Backupctl) -> None:
    _has_zone(world.ok("snapshots").stdout, f"{SHOWN}:00")
    restored = world.ok("restore", "latest", "--target", str(world.base / "T")).stdout
    _has_zone(restored, SHOWN)
    again = world.ok("backup", "--time", "2026-11-03T02:00:00+00:00").stdout  # 23:00 the day before there
    _has_zone(again, "2026-11-02 23:00:00")


def test_ls_and_find_show_the_file_dates_in_the_practice_zone(world: Backupctl) -> None:
    _has_zone(world.ok("ls", "latest", "-r").stdout, "2026-10-30 20:30")
    _has_zone(world.ok("find", "lettre*").stdout, SHOWN)


def test_status_and_prune_dry_run_show_the_practice_zone(world: Backupctl) -> None:
    status = world.run("status")  # may be "at risk" (no restore test): only its times matter here
    _has_zone(status.stdout, SHOWN)
    _has_zone(world.ok("prune", "--dry-run").stdout, SHOWN)


def test_key_list_and_audit_verify_show_the_practice_zone(world: Backupctl) -> None:
    created = world.ok_json("key", "list")["keys"][0]["created"]
    _has_zone(world.ok("key", "list").stdout, _cayenne(created))
    trail = world.ok_json("audit", "verify")
    text = world.ok("audit", "verify").stdout
    _has_zone(text, _cayenne(trail["first"]))
    _has_zone(text, _cayenne(trail["last"]))


def test_compliance_shows_the_latest_snapshot_in_the_practice_zone(world: Backupctl) -> None:
    world.ok("backup", "--time", dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat())
    latest = max(s["time"] for s in world.snapshots())
    text = world.run("compliance").stdout
    assert re.search(rf"{re.escape(_cayenne(latest))} -03:00", text), text


_TIME_KEYS = {"time", "mtime", "created", "first", "last", "at", "snapshot_time", "last_backup", "last_check",
              "last_restore_test", "generated", "started"}


def _times(document, found: list[str]) -> list[str]:
    if isinstance(document, dict):
        for key, value in document.items():
            if key in _TIME_KEYS and isinstance(value, str):
                found.append(value)
            else:
                _times(value, found)
    elif isinstance(document, list):
        for item in document:
            _times(item, found)
    return found


def test_json_times_are_iso_8601_with_an_offset(world: Backupctl) -> None:
    documents = [world.ok_json(*command) for command in (
        ["snapshots"], ["ls", "latest", "-r"], ["find", "lettre*"], ["key", "list"], ["audit", "verify"],
        ["backup"], ["restore", "latest", "--target", str(world.base / "J")], ["prune", "--dry-run"],
        ["check"], ["restore-test", "--scratch-dir", str(world.base / "scratch")], ["reports", "list"])]
    documents.append(world.run("status", "--json").json())
    documents.append(world.run("compliance", "--json").json())
    times = _times(documents, [])
    assert len(times) >= 10, times
    for text in times:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            continue  # a calendar day (the first audit record's): a date has no zone
        moment = dt.datetime.fromisoformat(text)
        assert moment.tzinfo is not None and moment.utcoffset() is not None, text


def test_restore_at_a_time_before_the_first_snapshot_names_both_in_the_practice_zone(world: Backupctl) -> None:
    result = world.run("restore", "--at", "2026-11-01 10:00", "--target", str(world.base / "T"))
    assert result.returncode == 2, result
    assert "at or before 2026-11-01 10:00 -03:00 (the first is from 2026-11-02 15:00 -03:00)" in result.stderr, result


def test_restore_test_and_reports_list_show_the_practice_zone(world: Backupctl) -> None:
    _has_zone(world.ok("restore-test", "--scratch-dir", str(world.base / "scratch-1"),
                       "--report-dir", str(world.base / "rapports")).stdout, SHOWN)
    (page,) = (world.base / "rapports").glob("*.html")  # the report for the practice: the zone too
    assert "-03:00" in page.read_text(encoding="utf-8")
    test = world.ok_json("restore-test", "--scratch-dir", str(world.base / "scratch"))
    listed = world.ok_json("reports", "list")["reports"]
    assert listed and dt.datetime.fromisoformat(listed[0]["time"]).tzinfo is not None, test
    _has_zone(world.ok("reports", "list").stdout, _cayenne(listed[0]["time"]))


def test_media_status_shows_the_practice_zone(world: Backupctl) -> None:
    from .test_media import Rotation

    rotation = Rotation(world)
    with open(world.config, "a", encoding="utf-8") as handle:
        handle.write(f'\n[retention]\ntimezone = "{ZONE}"\n')
    label = rotation.status()["due_this_week"]
    rotation.media_init(label)
    rotation.backup(label)
    last = rotation.by_disk()[label]["last_backup"]
    _has_zone(world.ok("media", "status", "--repo", "usb").stdout, _cayenne(last))


def test_recover_shows_the_machine_zone_and_says_so(world: Backupctl) -> None:
    sheet = world.base / "fiche.html"
    world.ok("key", "export", "--paper", str(sheet))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("BACKUPCTL_")}, "TZ": "Pacific/Tahiti",
           "BACKUPCTL_STATE_DIR": str(world.base / "state-b")}
    listed = subprocess.run([sys.executable, "-m", "agent", "recover", "--url", f"file://{world.repo}", "--list"],
                            input=typed_code(sheet), capture_output=True, text=True, env=env, timeout=600)
    assert listed.returncode == 0, listed.stderr
    # The machine is in Tahiti (UTC-10) while the practice's configuration, not read here, says Cayenne.
    assert "times in this machine's time zone" in listed.stdout, listed.stdout
    assert "2026-11-02 08:00 -10:00" in listed.stdout, listed.stdout


def test_check_names_a_damaged_snapshot_with_its_time_in_the_practice_zone(world: Backupctl) -> None:
    for pack in world.packs():
        pack.unlink()  # the file's data is gone: its snapshot cannot be restored whole
    result = world.run("check")
    assert result.returncode == 13, result
    _has_zone(result.stdout + result.stderr, SHOWN)

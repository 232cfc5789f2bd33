"""Rotated backup disks (`media = [...]`, rules S2/S6) through the real CLI.

Proves: `media init` prepares each disk once, as an independent repository (its own id)
that the one passphrase opens, and refuses an unknown label, a labelled disk, no disk
and a wrong passphrase; `init` on a set and bad `media` settings are exit 2;
`backup --repo usb` goes only to a disk of the set (a blank, absent, foreign or damaged
disk is exit 19, naming the mount and this week's disk, and nothing is written there)
and warns exactly when the disk is not this week's or served the previous backup;
`media status` gives per disk the last backup, snapshot and check, the week it is next
due and which one is plugged in; restoring from one disk needs no other; `copy` moves a
snapshot between the plain repository and a disk once, and counts as that disk's backup.

A disk is a folder under base/disks; plugging it in repoints the symlink base/mnt/usb
named by the config's url. The due disk is recomputed here from the local date.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo
from pathlib import Path

import pytest

from .support import (PASSPHRASE, ROOT, Backupctl, assert_error, assert_same_tree, base_env, random_file, tree_state,
                      write)

DISKS = ["DISQUE-A", "DISQUE-B", "DISQUE-C", "DISQUE-D"]
EPOCH_MONDAY = date(1970, 1, 5)
LABEL_FILE = "backupctl-medium.json"
not_due = "this week's disk is {}, but {} was used".format  # the start of each rotation warning
used_twice = "{} was also used for the previous backup".format
KEYED_ID = ("import sys\nfrom agent.repo.repository import Repository\nfrom agent.storage.local import LocalStorage\n"
            "print(Repository.open(LocalStorage(sys.argv[1]), sys.argv[2].encode()).chunk_id(b'ordonnance').hex())")


# The disks' week is the practice's (`[retention] timezone`, Europe/Paris by default), not
# the test machine's: on Sunday after 23:00 UTC it is already Monday there.
PRACTICE_ZONE = ZoneInfo("Europe/Paris")


def practice_now() -> datetime:
    return datetime.now(PRACTICE_ZONE)


def week_number(day: date) -> int:
    return (day - EPOCH_MONDAY).days // 7


def due_disk() -> str:
    return DISKS[week_number(practice_now().date()) % len(DISKS)]


def next_due_week_of(label: str) -> date:
    today = practice_now().date()
    ahead = (DISKS.index(label) - week_number(today)) % len(DISKS)
    return today - timedelta(days=today.weekday()) + timedelta(weeks=ahead)


def files_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def keyed_id(repository: Path) -> str:
    """The id the repository's master key gives to fixed bytes: equal ids, same master key."""
    proc = subprocess.run([sys.executable, "-c", KEYED_ID, str(repository), PASSPHRASE], cwd=ROOT, env=base_env(),
                          capture_output=True, text=True, check=True)
    return proc.stdout.strip()


def recent(moment: str, since: datetime) -> bool:
    return since <= datetime.fromisoformat(moment) <= datetime.now().astimezone()


@pytest.fixture(autouse=True)
def same_week_throughout() -> None:
    now = practice_now()
    if now.weekday() == 6 and now.time() >= time(23, 58):
        pytest.skip("the due disk changes at midnight between Sunday and Monday")


class Rotation:
    """bk's config plus [repositories.usb], a set of 4 disks mounted at base/mnt/usb."""

    def __init__(self, bk: Backupctl) -> None:
        self.bk = bk
        self.mount = bk.base / "mnt" / "usb"
        self.mount.parent.mkdir()
        self.disks = {label: bk.base / "disks" / label for label in DISKS}
        for folder in self.disks.values():
            folder.mkdir(parents=True)
        bk.write_config(extra_repo_lines=f"\n[repositories.usb]\nurl = \"file://{self.mount}\"\n"
                                         f"media = {json.dumps(DISKS)}")

    def plug(self, disk: str | Path) -> None:
        self.unplug()
        os.symlink(self.disks.get(disk, disk), self.mount)

    def unplug(self) -> None:
        self.mount.unlink(missing_ok=True)

    def media_init(self, label: str) -> dict:
        self.plug(label)
        return self.bk.ok_json("media", "init", label, "--repo", "usb")

    def backup(self, label: str) -> dict:
        self.plug(label)
        return self.bk.backup("--repo", "usb")

    def status(self) -> dict:
        return self.bk.ok_json("media", "status", "--repo", "usb")

    def by_disk(self) -> dict[str, dict]:
        return {disk["label"]: disk for disk in self.status()["disks"]}

    def snapshot_ids(self) -> list[str]:
        return [s["id"] for s in self.bk.ok_json("snapshots", "--repo", "usb")["snapshots"]]


def test_rotation_over_four_disks_warns_exactly_when_it_should(bk: Backupctl) -> None:
    rot = Rotation(bk)
    write(bk.src / "agenda.txt", "lundi 9 h : Mme Dupont\n")
    inits = [rot.media_init(label) for label in DISKS]
    assert [(i["repository"], i["label"], i["mount"]) for i in inits] == [("usb", d, str(rot.mount)) for d in DISKS]
    assert len({i["repository_id"] for i in inits}) == 4 and len({i["medium_id"] for i in inits}) == 4
    assert [d["last_backup"] for d in rot.status()["disks"]] == [None] * 4

    due = due_disk()
    other = DISKS[(DISKS.index(due) + 1) % len(DISKS)]
    plan = [(due, []), (due, [used_twice(due)]), (other, [not_due(due, other)]),
            (other, [not_due(due, other), used_twice(other)]), (due, [])]
    done = []
    for number, (label, expected) in enumerate(plan):
        write(bk.src / "journal.txt", f"sauvegarde {number}\n")
        result = rot.backup(label)
        assert result["medium"] == label, result
        warnings = result["rotation_warnings"]
        assert len(warnings) == len(expected), f"backup {number} on {label} (due {due}): {warnings}"
        assert all(w.startswith(e) for w, e in zip(warnings, expected, strict=True)), \
            f"backup {number} on {label} (due {due}): {warnings}"
        done.append(result)
    assert rot.snapshot_ids() == [done[i]["snapshot_id"] for i in (0, 1, 4)]  # due is plugged
    rot.plug(other)
    assert rot.snapshot_ids() == [done[2]["snapshot_id"], done[3]["snapshot_id"]]

    rot.plug(due)
    status = rot.status()
    assert (status["due_this_week"], status["mounted"], status["warnings"]) == (due, due, [])
    last = {due: done[4], other: done[3]}
    assert status["disks"] == [{
        "label": label, "due_this_week": label == due, "next_due_week_of": next_due_week_of(label).isoformat(),
        "last_backup": last[label]["time"] if label in last else None,
        "last_snapshot": last[label]["snapshot_id"] if label in last else None,
        "last_check": None, "last_check_ok": None, "mounted": label == due} for label in DISKS]
    today = practice_now().date()
    monday = today - timedelta(days=today.weekday())
    assert sorted(d["next_due_week_of"] for d in status["disks"]) == [
        (monday + timedelta(weeks=k)).isoformat() for k in range(4)]

    rot.unplug()
    for plugged in (None, other):
        if plugged:
            rot.plug(plugged)
        status = rot.status()
        assert status["mounted"] == plugged and [d["mounted"] for d in status["disks"]] == [
            label == plugged for label in DISKS]
        assert status["warnings"] == [f"this week's disk, {due}, is not plugged in at {rot.mount}"]


def test_each_disk_is_an_independent_repository_opened_by_the_one_passphrase(bk: Backupctl) -> None:
    rot = Rotation(bk)
    write(bk.src / "patients" / "dupont.txt", "tension 12/8\n")
    random_file(bk.src / "imagerie" / "irm-1.bin", 200 * 1024)
    ids = {label: rot.media_init(label)["repository_id"] for label in ("DISQUE-A", "DISQUE-B")}
    assert ids["DISQUE-A"] != ids["DISQUE-B"]
    assert (bk.state / "media" / "usb" / "set-key.json").is_file()
    rot.backup("DISQUE-A")
    at_a = shutil.copytree(bk.src, bk.base / "copies" / "a", symlinks=True)

    write(bk.src / "patients" / "dupont.txt", "tension 13/8, contrôle dans 1 mois\n")
    write(bk.src / "patients" / "martin.txt", "vaccin DTP\n")
    (bk.src / "imagerie" / "irm-1.bin").unlink()
    random_file(bk.src / "imagerie" / "irm-2.bin", 200 * 1024)
    b = rot.backup("DISQUE-B")
    at_b = shutil.copytree(bk.src, bk.base / "copies" / "b", symlinks=True)
    write(bk.src / "patients" / "durand.txt", "après la sauvegarde\n")  # the source moves on
    shared = {keyed_id(rot.disks[label] / "repository") for label in ids}
    assert len(shared) == 1 and len(next(iter(shared))) == 64, "the disks of a set must share one master key"

    rot.plug("DISQUE-A")
    bk.restore(bk.base / "restored-a", "--repo", "usb")
    assert_same_tree(at_a, bk.restored(bk.base / "restored-a"))
    assert_error(bk.run("snapshots", "--repo", "usb", passphrase="pas la bonne phrase"), 12)

    shutil.rmtree(rot.disks["DISQUE-A"])  # disk A lost entirely
    assert_error(bk.run("backup", "--repo", "usb"), 19, f"no backup disk is mounted at {rot.mount}")
    rot.plug("DISQUE-B")
    assert rot.snapshot_ids() == [b["snapshot_id"]]
    assert bk.restore(bk.base / "restored-b", "--repo", "usb")["failures"] == []
    assert_same_tree(at_b, bk.restored(bk.base / "restored-b"))
    assert_error(bk.run("check", "--repo", "usb", passphrase="pas la bonne phrase"), 12)
    assert bk.ok_json("check", "--repo", "usb", "--read-data")["ok"] is True


def test_backup_refuses_a_blank_an_absent_a_foreign_or_a_damaged_disk(bk: Backupctl) -> None:
    rot = Rotation(bk)
    write(bk.src / "courrier.txt", "Cher confrère,\n")
    due = due_disk()
    blank = bk.base / "disks" / "vierge"
    blank.mkdir()
    rot.plug(blank)
    for args in (["backup", "--repo", "usb"], ["backup", "--repo", "usb", "--json"]):
        result = bk.run(*args)
        assert_error(result, 19, f"no backup disk is mounted at {rot.mount}", f"this week's disk, {due}")
        assert result.stdout == ""
    assert os.listdir(blank) == []
    rot.unplug()
    assert_error(bk.run("backup", "--repo", "usb"), 19, f"no backup disk is mounted at {rot.mount}", due)

    # A disk prepared (and used) by another set with the same labels.
    coffre = bk.base / "coffre.toml"
    coffre.write_text(bk.config.read_text(encoding="utf-8").replace("[repositories.usb]", "[repositories.coffre]"),
                      encoding="utf-8")
    rot.plug("DISQUE-B")
    bk.ok("media", "init", "DISQUE-B", "--repo", "coffre", config=coffre)
    bk.ok("backup", "--repo", "coffre", config=coffre)
    foreign = tree_state(rot.disks["DISQUE-B"])
    assert_error(bk.run("backup", "--repo", "usb"), 19, str(rot.mount), "DISQUE-B of set 'coffre'", "'usb'")
    assert tree_state(rot.disks["DISQUE-B"]) == foreign

    # A label of this set's name but not in its list, and an unreadable label.
    for name, text, needle in (("intrus", json.dumps({"label": "DISQUE-Z", "medium_id": "00", "set": "usb",
                                                         "created": "2026-01-05T09:00:00+01:00"}), "DISQUE-Z"),
                               ("abime", "{pas du json", "cannot be read")):
        write(bk.base / "disks" / name / LABEL_FILE, text)
        rot.plug(bk.base / "disks" / name)
        before = tree_state(bk.base / "disks" / name)
        assert_error(bk.run("backup", "--repo", "usb"), 19, str(rot.mount), needle)
        assert tree_state(bk.base / "disks" / name) == before
    assert not (bk.state / "media" / "usb" / "record.json").exists()
    assert [d["last_backup"] for d in rot.status()["disks"]] == [None] * 4


def test_media_init_refusals(bk: Backupctl) -> None:
    rot = Rotation(bk)
    rot.plug("DISQUE-A")
    assert_error(bk.run("media", "init", "DISQUE-Z", "--repo", "usb"), 2, "'DISQUE-Z'", ", ".join(DISKS))
    assert os.listdir(rot.disks["DISQUE-A"]) == []
    first = bk.ok_json("media", "init", "DISQUE-A")  # --repo defaults to the (only) set
    label = json.loads((rot.disks["DISQUE-A"] / LABEL_FILE).read_text(encoding="utf-8"))
    assert (label["label"], label["set"], label["medium_id"]) == ("DISQUE-A", "usb", first["medium_id"])
    assert (rot.disks["DISQUE-A"] / "repository" / "config").is_file()
    before = tree_state(rot.disks["DISQUE-A"])
    assert_error(bk.run("media", "init", "DISQUE-B", "--repo", "usb"), 19, "already labelled DISQUE-A")
    assert tree_state(rot.disks["DISQUE-A"]) == before

    rot.plug("DISQUE-B")
    assert_error(bk.run("media", "init", "DISQUE-B", "--repo", "usb", passphrase="pas la bonne phrase"), 12)
    assert_error(bk.run("init", "--repo", "usb"), 2, "set of disks", "media init")
    assert os.listdir(rot.disks["DISQUE-B"]) == []
    assert_error(bk.run("media", "status", "--repo", "main"), 2, "main", "not a set of disks")
    rot.unplug()
    assert_error(bk.run("media", "init", "DISQUE-B", "--repo", "usb"), 19, f"no medium is mounted at {rot.mount}")


@pytest.mark.parametrize("url, media, needle", [
    ("s3://cabinet/sauvegardes", DISKS, "file:///"),
    (None, ["DISQUE-A"], "at least two"),
    (None, ["DISQUE-A", "DISQUE-B", "DISQUE-A"], "at least two"),
    (None, ["DISQUE-A", "DISQUE B"], "'DISQUE B'"),
], ids=["s3-url", "single-label", "duplicate-label", "label-with-space"])
def test_bad_media_setting_is_a_config_error(bk: Backupctl, url, media, needle) -> None:
    url = url or f"file://{bk.base / 'mnt' / 'usb'}"
    bk.write_config(extra_repo_lines=f"\n[repositories.usb]\nurl = {json.dumps(url)}\nmedia = {json.dumps(media)}")
    for args in (["media", "status"], ["backup", "--repo", "usb"], ["snapshots"]):
        assert_error(bk.run(*args), 2, str(bk.config), "[repositories.usb] media", needle)


def test_copy_between_the_main_repository_and_a_disk(bk: Backupctl) -> None:
    rot = Rotation(bk)
    write(bk.src / "ordonnances" / "2026-03.txt", "amoxicilline 1 g\n")
    random_file(bk.src / "scanner.bin", 256 * 1024)
    bk.init()
    source = bk.backup()  # into "main", the first repository, with its own master key
    at_main = shutil.copytree(bk.src, bk.base / "copies" / "main", symlinks=True)
    due = due_disk()
    rot.media_init(due)
    start = datetime.now().astimezone()

    first = bk.ok_json("copy", "latest", "--to", "usb")
    assert first["source_snapshot"] == source["snapshot_id"] and first["already_there"] is False
    assert first["blobs_copied"] >= 3 and first["bytes_added"] >= 256 * 1024 and first["rotation_warnings"] == []
    disk_repo = rot.disks[due] / "repository"
    digest = files_digest(disk_repo)
    again = bk.ok_json("copy", "latest", "--to", "usb")
    assert again == {**first, "already_there": True, "blobs_copied": 0, "bytes_added": 0}
    assert files_digest(disk_repo) == digest
    copies = bk.ok_json("snapshots", "--repo", "usb")["snapshots"]
    assert [(s["id"], s["time"]) for s in copies] == [(first["snapshot_id"], source["time"])]
    assert bk.restore(bk.base / "restored-disk", "--repo", "usb")["failures"] == []
    assert_same_tree(at_main, bk.restored(bk.base / "restored-disk"))
    disk = rot.by_disk()[due]
    assert disk["last_snapshot"] == first["snapshot_id"] and recent(disk["last_backup"], start), disk

    write(bk.src / "ordonnances" / "2026-04.txt", "kinésithérapie, 10 séances\n")
    on_disk = bk.backup("--repo", "usb")
    assert [w[:len(used_twice(due))] for w in on_disk["rotation_warnings"]] == [used_twice(due)]  # the copy counted
    at_disk = shutil.copytree(bk.src, bk.base / "copies" / "disk", symlinks=True)
    back = bk.ok_json("copy", "latest", "--from", "usb", "--to", "main")
    assert (back["source_snapshot"], back["already_there"], back["rotation_warnings"]) == (
        on_disk["snapshot_id"], False, [])
    assert [s["id"] for s in bk.snapshots()] == [source["snapshot_id"], back["snapshot_id"]]
    assert bk.restore(bk.base / "restored-main", snapshot=back["snapshot_id"])["failures"] == []
    assert_same_tree(at_disk, bk.restored(bk.base / "restored-main"))
    assert bk.ok_json("copy", "--from", "usb", "--to", "main")["already_there"] is True
    assert rot.by_disk()[due]["last_snapshot"] == on_disk["snapshot_id"]  # a copy to main is not a disk's backup
    assert_error(bk.run("copy", "--from", "main", "--to", "main"), 2, "same repository")


def test_check_is_recorded_for_the_mounted_disk_only(bk: Backupctl) -> None:
    rot = Rotation(bk)
    write(bk.src / "comptabilite.csv", "date;montant\n2026-03-02;25\n")
    random_file(bk.src / "radio.bin", 64 * 1024)
    for label in ("DISQUE-A", "DISQUE-B"):
        rot.media_init(label)
        rot.backup(label)
    start = datetime.now().astimezone()
    assert bk.ok_json("check", "--repo", "usb")["ok"] is True  # DISQUE-B is plugged in
    disks = rot.by_disk()
    assert disks["DISQUE-B"]["last_check_ok"] is True and recent(disks["DISQUE-B"]["last_check"], start)
    assert [(disks[d]["last_check"], disks[d]["last_check_ok"]) for d in DISKS if d != "DISQUE-B"] == [(None, None)] * 3

    rot.plug("DISQUE-A")
    for pack in (rot.disks["DISQUE-A"] / "repository" / "data").glob("*/*"):
        pack.unlink()
    assert_error(bk.run("check", "--repo", "usb"), 13, only_line=False)
    disks = rot.by_disk()
    assert disks["DISQUE-A"]["last_check_ok"] is False and recent(disks["DISQUE-A"]["last_check"], start)
    assert disks["DISQUE-B"]["last_check_ok"] is True and disks["DISQUE-A"]["mounted"] is True


def test_media_init_refuses_a_short_passphrase_for_a_new_set(bk: Backupctl) -> None:
    """The first disk of a set creates its master key: the passphrase that wraps it must
    have 12 characters, like init's, and nothing is written when it has not."""
    rot = Rotation(bk)
    rot.plug("DISQUE-A")
    line = assert_error(bk.run("media", "init", "DISQUE-A", "--repo", "usb", passphrase="trop-court"), 2,
                        "shorter than 12 characters")
    assert "trop-court" not in line
    assert os.listdir(rot.disks["DISQUE-A"]) == []
    assert not (bk.state / "media" / "usb" / "set-key.json").exists()

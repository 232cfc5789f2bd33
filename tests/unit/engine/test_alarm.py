"""The ransomware alarm's judgement (agent/engine/alarm.py): counts in, verdict out."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field

import pytest

from agent.engine.alarm import (MAX_FOLDERS_SHOWN, SUSPECT_TAG, AlarmThresholds, FileFacts, Tally, judge,
                                folders_for_alert, open_alarm)
from agent.engine.retention import Decision, hold_from

TEXT, RANDOM = 0.35, 1.01  # stored / plain of a letter, of encrypted bytes


def f(name: str, sha: str = "a", ratio: float | None = TEXT) -> FileFacts:
    return FileFacts(name.encode(), sha, ratio)


def test_a_file_rewritten_with_random_bytes_at_its_path_no_longer_compresses() -> None:
    tally = Tally(files_before=4)
    tally.folder("/c", [f("a.txt", "1"), f("b.txt", "2"), f("c.jpg", "3", RANDOM), f("small.txt", "4", None)],
                 [f("a.txt", "9", RANDOM), f("b.txt", "8", TEXT), f("c.jpg", "7", RANDOM), f("small.txt", "6", None)],
                 existed=True)
    counts = tally.counts()
    # a.txt lost its compression; b.txt changed but still compresses; an image never compressed;
    # a file too small to judge is not judged
    assert (counts["changed"], counts["lost_compression"], counts["removed"]) == (4, 1, 0)
    assert counts["changed_share"] == 1.0 and counts["folders"] == ["/c"]


def test_renames_to_a_new_extension_appended_or_replaced() -> None:
    tally = Tally(files_before=4)
    tally.folder("/d", [f("x.docx", "1"), f("y.docx", "2"), f("z.txt", "3"), f("w.txt", "4")],
                 [f("x.docx.locked", "5", RANDOM), f("y.crypt", "6", RANDOM), f("z.pdf", "7"), f("w.txt", "4")],
                 existed=True)
    counts = tally.counts()
    assert counts["renamed"] == 3  # .locked, .crypt and .pdf were not extensions of that folder
    assert counts["lost_compression"] == 1  # only x.docx -> x.docx.locked keeps the name to compare
    assert counts["removed"] == 3


def test_a_rename_to_an_extension_the_folder_already_has_is_not_counted() -> None:
    tally = Tally(files_before=2)
    tally.folder("/d", [f("x.txt", "1"), f("y.pdf", "2")], [f("x.pdf", "1"), f("y.pdf", "2")], existed=True)
    assert tally.counts()["renamed"] == 0


def test_the_same_new_file_in_many_existing_folders_is_a_note() -> None:
    tally = Tally(files_before=100)
    for i in range(7):
        tally.folder(f"/p/{i}", [f("a.txt", str(i))], [f("a.txt", str(i)), f("LISEZ-MOI.txt", f"n{i}")],
                     existed=True)
    assert tally.counts()["note_folders"] == 7  # by name
    by_content = Tally(files_before=100)
    for i in range(6):
        by_content.folder(f"/p/{i}", [], [f(f"readme-{i}.txt", "same")], existed=True)
    assert by_content.counts()["note_folders"] == 6  # by content
    new_folders = Tally(files_before=100)
    for i in range(9):
        new_folders.folder(f"/new/{i}", [], [f("desktop.ini", "x")], existed=False)
    assert new_folders.counts()["note_folders"] == 0  # folders that are new themselves do not count


def test_only_a_few_folder_names_are_kept_and_never_a_file_name() -> None:
    tally = Tally(files_before=100)
    for i in range(20):
        tally.folder(f"/f{i:02d}", [f("secret-patient.txt", "1")], [f("secret-patient.txt", "2", RANDOM)],
                     existed=True)
    counts = tally.counts()
    assert len(counts["folders"]) == MAX_FOLDERS_SHOWN
    assert "secret-patient" not in repr(counts)


def test_losing_compression_alone_is_suspect_other_signs_need_a_second() -> None:
    t = AlarmThresholds()
    quiet = {"changed_share": 0.0024, "lost_compression": 0, "renamed": 0, "note_folders": 1}
    assert judge(quiet, t).suspect is False and judge(quiet, t).signs == ()
    assert judge({**quiet, "lost_compression": t.lost_compression}, t).suspect is True
    assert judge({**quiet, "lost_compression": t.lost_compression - 1}, t).suspect is False
    for one in ({"changed_share": 0.5}, {"renamed": 500}, {"note_folders": 200}):
        assert judge({**quiet, **one}, t).suspect is False, one
    verdict = judge({**quiet, "changed_share": 0.3, "note_folders": 150}, t)
    assert verdict.suspect is True and verdict.signs == ("changed_share", "note_folders")
    attack = {"changed_share": 0.2998, "lost_compression": 552, "renamed": 694, "note_folders": 177}
    assert judge(attack, t).suspect is True
    assert judge(attack, AlarmThresholds(enabled=False)).suspect is False


def test_thresholds_are_checked() -> None:
    with pytest.raises(ValueError):
        AlarmThresholds(changed_share=0)
    with pytest.raises(ValueError):
        AlarmThresholds(lost_compression=0)
    with pytest.raises(ValueError):
        AlarmThresholds(lock_days=True)  # type: ignore[arg-type]


@dataclass
class Snap:
    id: bytes
    tags: list[str] = field(default_factory=list)


def test_the_open_alarm_and_its_last_good_snapshot() -> None:
    a, b, c, d = Snap(b"\x0a"), Snap(b"\x0b"), Snap(b"\x0c", [SUSPECT_TAG]), Snap(b"\x0d", [SUSPECT_TAG])
    assert open_alarm([a, b], set()) is None
    found = open_alarm([a, b, c, d], set())
    assert found is not None and found.suspects == ("0c", "0d") and found.last_good == "0b"
    found = open_alarm([a, b, c, d], {"0c"})  # c looked at by a person: good from then on
    assert found is not None and found.suspects == ("0d",) and found.last_good == "0c"
    assert open_alarm([a, b, c, d], {"0c", "0d"}) is None
    assert open_alarm([c], set()) == open_alarm([c], set()) and open_alarm([c], set()).last_good is None


def test_retention_holds_everything_from_the_last_good_snapshot_on() -> None:
    t0 = _dt.datetime(2026, 12, 1, tzinfo=_dt.timezone.utc)
    decisions = [Decision(bytes([i]), t0 + _dt.timedelta(days=i), keep=(i == 3), reasons=("x",)) for i in range(4)]
    held = hold_from(decisions, t0 + _dt.timedelta(days=1), "alarm")
    assert [d.keep for d in held] == [False, True, True, True]
    assert held[1].reasons == ("alarm",) and held[3].reasons == ("x",)
    assert all(d.keep for d in hold_from(decisions, None, "alarm"))


def _config(alarm: dict):
    from agent import config

    raw = {"source": {"paths": ["/srv/cabinet"]}, "repositories": {"main": {"url": "file:///mnt/r"}}}
    return config.parse({**raw, **({"alarm": alarm} if alarm is not None else {})}, "test.toml")


def test_the_alarm_section_of_the_configuration() -> None:
    from agent.errors import ConfigError

    assert _config(None).alarm == AlarmThresholds()
    parsed = _config({"changed_share": 0.2, "lost_compression": 3, "lock_days": 30, "enabled": False}).alarm
    assert (parsed.changed_share, parsed.lost_compression, parsed.lock_days, parsed.enabled) == (0.2, 3, 30, False)
    assert _config({"changed_share": 1}).alarm.changed_share == 1.0
    for bad, needle in (({"renamed": 0}, "renamed"), ({"changed_share": 1.5}, "changed_share"),
                        ({"lock_dayz": 3}, r"unknown key\(s\) lock_dayz"), ({"renamed": "ten"}, "renamed")):
        with pytest.raises(ConfigError, match=needle):
            _config(bad)


def test_an_alert_names_the_source_folders_only_by_default():
    folders = ["srv/partage/Patients/DUPONT Jean", "srv/partage/Patients/MARTIN/2026", "srv/cabinet/courriers/2026/03",
               "srv/cabinet", "var/lib/autre/x/y", "srv/cabinet-old/a/b"]
    sources = ["/srv/partage/Patients", "/srv/cabinet", "/srv", "/var/lib/autre/"]
    # the source folder is the patients' folder itself: the level below it is a patient's name
    assert folders_for_alert(folders, sources) == [
        "/srv/partage/Patients", "/srv/cabinet", "/var/lib/autre", "/srv"]
    assert folders_for_alert(["a/b/c"], []) == ["/a"]  # under no source: its first level only
    assert AlarmThresholds().alert_folder_depth == 0


def test_an_alert_names_folders_alert_folder_depth_levels_below_their_source():
    folders = ["srv/cabinet/patients/DUPONT Jean", "srv/cabinet/courriers/2026/03", "srv/cabinet/patients/MARTIN",
               "srv/cabinet", "var/lib/autre/x/y", "srv/cabinet-old/a/b"]
    sources = ["/srv/cabinet", "/srv", "/var/lib/autre/"]
    assert folders_for_alert(folders, sources, 1) == [
        "/srv/cabinet/patients", "/srv/cabinet/courriers", "/srv/cabinet", "/var/lib/autre/x", "/srv/cabinet-old"]
    assert folders_for_alert(folders, sources, 2)[:2] == ["/srv/cabinet/patients/DUPONT Jean",
                                                          "/srv/cabinet/courriers/2026"]
    assert folders_for_alert(["a/b/c"], [], 1) == ["/a/b"]
    assert _config({"alert_folder_depth": 2}).alarm.alert_folder_depth == 2
    from agent.errors import ConfigError

    for bad in (3, -1, True):
        with pytest.raises(ConfigError, match="alert_folder_depth"):
            _config({"alert_folder_depth": bad})


def test_a_high_changed_share_is_suspect_alone_on_a_parent_of_enough_files() -> None:
    # Every file encrypted in place, names kept (already-compressed docx, pdf, jpg: nothing
    # loses compression; or one block in N: the files still compress), a note of its own
    # name and text in each folder: only the changed share shows.
    t = AlarmThresholds()
    tally = Tally(files_before=60)
    for i in range(6):
        old = [f(f"doc-{j}.pdf", f"{i}-{j}", RANDOM) for j in range(10)]
        new = [f(f"doc-{j}.pdf", f"x{i}-{j}", RANDOM) for j in range(10)] + [f(f"RESTORE-{i}.txt", f"note{i}")]
        tally.folder(f"/c/{i}", old, new, existed=True)
    counts = tally.counts()
    assert (counts["changed_share"], counts["lost_compression"], counts["renamed"], counts["note_folders"]) == \
        (1.0, 0, 0, 1)
    verdict = judge(counts, t)
    assert verdict.suspect is True and "changed_share_alone" in verdict.signs
    assert judge({**counts, "changed_share": t.changed_share_alone - 0.01}, t).suspect is False
    # a parent of a few files: half of them changed is an ordinary day
    assert judge({**counts, "files_before": t.changed_share_alone_min_files - 1}, t).suspect is False


def test_losing_compression_needs_a_share_of_the_parent_files_too() -> None:
    t = AlarmThresholds()
    large = {"files_before": 200_000, "changed_share": 0.0001, "lost_compression": 10, "renamed": 0,
             "note_folders": 0}
    assert judge(large, t).suspect is False  # ten files of 200,000: a few re-saved archives
    assert judge({**large, "lost_compression": 2000}, t).suspect is True  # 1 %
    assert judge({**large, "files_before": 1000}, t).suspect is True  # 10 of 1,000 files
    assert judge(large, AlarmThresholds(lost_compression_share=0)).suspect is True


def test_the_new_thresholds_in_the_configuration() -> None:
    from agent.errors import ConfigError

    parsed = _config({"changed_share_alone": 0.4, "changed_share_alone_min_files": 20,
                      "lost_compression_share": 0}).alarm
    assert (parsed.changed_share_alone, parsed.changed_share_alone_min_files, parsed.lost_compression_share) == \
        (0.4, 20, 0.0)
    for bad in ({"changed_share_alone": 0}, {"lost_compression_share": 2}, {"changed_share_alone_min_files": 0}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            _config(bad)


def test_copies_of_one_new_file_in_one_folder_are_one_note_folder() -> None:
    tally = Tally(files_before=100)
    tally.folder("/scans", [f("a.pdf", "a")], [f("a.pdf", "a")] + [f(f"copie-{i}.pdf", "same") for i in range(5)],
                 existed=True)
    assert tally.counts()["note_folders"] == 1


def test_notes_are_still_counted_after_more_new_files_than_the_keys_followed(monkeypatch) -> None:
    from agent.engine import alarm

    monkeypatch.setattr(alarm, "MAX_KEYS", 10)
    tally = Tally(files_before=1000)
    tally.folder("/import", [f("a.txt", "a")], [f("a.txt", "a")] + [f(f"scan-{i}.pdf", f"s{i}") for i in range(50)],
                 existed=True)  # a large legitimate import fills the keys followed
    for i in range(7):
        new = [f(f"x-{i}-{j}.txt", f"x{i}-{j}") for j in range(4)] + [f("LISEZ-MOI.txt", "note")]
        tally.folder(f"/p/{i}", [f("a.txt", str(i))], [f("a.txt", str(i)), *new], existed=True)
    assert tally.counts()["note_folders"] == 7
    assert len(tally._note_names) <= 10 and len(tally._note_contents) <= 10  # memory stays bounded

"""The ransomware alarm inside a backup (agent/engine/backup.py, alarm_scan.py), in memory:
the suspect tag and `summary.alarm` with exactly the members docs/FORMAT.md lists; a backup
without thresholds, or with nothing like an attack, is not marked."""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

from agent.crypto.kdf import KdfParams
from agent.engine.alarm import SUSPECT_TAG, AlarmThresholds
from agent.engine.backup import BackupEngine, BackupOptions
from agent.repo.repository import Repository
from agent.storage.memory import MemoryStorage
from tests.support.locked import run_locked

ROOT = Path(__file__).resolve().parents[3]
PASSPHRASE = b"phrase de passe"


def _letters(source: Path, rng: random.Random) -> None:
    for folder in range(12):
        for i in range(10):
            path = source / f"dossier-{folder:02d}" / f"lettre-{i}.docx"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes((" ".join(rng.choice(["patient", "tension", "suivi", "ordonnance"])
                                       for _ in range(2000))).encode())


def _attack(source: Path, rng: random.Random) -> None:
    for folder in sorted(source.iterdir()):
        for path in sorted(folder.iterdir())[:4]:
            size = path.stat().st_size
            os.unlink(path)
            Path(f"{path}.locked").write_bytes(rng.randbytes(size))
        (folder / "LISEZ-MOI.txt").write_text("payez\n")


def _repo() -> Repository:
    return Repository.init(MemoryStorage(), PASSPHRASE, cipher="xchacha20-poly1305", compression_level=1,
                           kdf_params=KdfParams(memory_kib=8192, iterations=1))


def test_an_attack_marks_the_snapshot_with_the_documented_members(tmp_path: Path) -> None:
    rng = random.Random(1)
    _letters(tmp_path, rng)
    repo = _repo()
    options = BackupOptions(paths=[str(tmp_path)])
    first = run_locked(BackupEngine(repo, options, alarm=AlarmThresholds()))
    assert first.alarm is None and first.snapshot is not None
    _attack(tmp_path, rng)
    report = run_locked(BackupEngine(repo, options, alarm=AlarmThresholds()))
    assert report.suspect and report.snapshot is not None
    saved = repo.snapshots()[-1]
    assert SUSPECT_TAG in saved.tags
    alarm = saved.summary["alarm"]
    assert (alarm["lost_compression"], alarm["renamed"], alarm["removed"], alarm["note_folders"]) == (48, 48, 48, 12)
    assert alarm["last_good"] == first.snapshot.id.hex() if first.snapshot.id else False
    assert all("lettre" not in str(v) and "LISEZ" not in str(v) for v in alarm.values())  # folders only
    format_doc = (ROOT / "docs" / "FORMAT.md").read_text(encoding="utf-8")
    row = next(line for line in format_doc.splitlines() if line.startswith("| `summary.alarm`"))
    documented = set(re.findall(r"`(\w+)` \(", row))
    assert documented == set(alarm), (documented, set(alarm))



def _an_ordinary_week(tmp_path: Path, rng: random.Random, repo, options: BackupOptions, *,
                      new_letter: bool = False):
    """The practice's letters backed up, one rewritten (and one new), backed up again: the
    second backup's report, compared with the first."""
    _letters(tmp_path, rng)
    run_locked(BackupEngine(repo, options, alarm=AlarmThresholds()))
    (tmp_path / "dossier-00" / "lettre-0.docx").write_text("une lettre réécrite " * 300)
    if new_letter:
        (tmp_path / "dossier-01" / "nouvelle.docx").write_text("une nouvelle lettre " * 300)
    return run_locked(BackupEngine(repo, options, alarm=AlarmThresholds()))


def test_no_thresholds_no_comparison_and_an_ordinary_change_is_not_marked(tmp_path: Path) -> None:
    rng = random.Random(2)
    repo, options = _repo(), BackupOptions(paths=[str(tmp_path)])
    report = _an_ordinary_week(tmp_path, rng, repo, options, new_letter=True)
    assert report.alarm is not None and not report.suspect
    assert report.alarm["changed"] == 1 and report.alarm["signs"] == []
    _attack(tmp_path, rng)
    unjudged = run_locked(BackupEngine(repo, options))  # alarm=None: not compared at all
    assert unjudged.alarm is None and SUSPECT_TAG not in repo.snapshots()[-1].tags


def test_a_parent_that_cannot_be_compared_does_not_cost_the_backup(tmp_path: Path, monkeypatch) -> None:
    from agent.engine import backup
    from agent.errors import IntegrityError

    rng = random.Random(3)
    _letters(tmp_path, rng)
    repo = _repo()
    options = BackupOptions(paths=[str(tmp_path)])
    run_locked(BackupEngine(repo, options, alarm=AlarmThresholds()))

    def damaged(*_args: object) -> None:
        raise IntegrityError("tree 0a0b: damaged")

    monkeypatch.setattr(backup, "compare_trees", damaged)
    _attack(tmp_path, rng)
    report = run_locked(BackupEngine(repo, options, alarm=AlarmThresholds()))
    assert report.snapshot is not None and not report.suspect and not report.partial
    assert report.alarm is not None and "could not be compared" in report.alarm["skipped"]
    assert len(repo.snapshots()) == 2


def test_the_parent_is_of_the_same_host_and_the_same_paths(tmp_path: Path) -> None:
    rng = random.Random(4)
    _letters(tmp_path / "a", rng)
    (tmp_path / "b").mkdir()
    repo = _repo()
    first = run_locked(BackupEngine(repo, BackupOptions(paths=[str(tmp_path / "a")], host="cabinet"),
                                    alarm=AlarmThresholds()))
    assert first.alarm is None
    other_host = run_locked(BackupEngine(repo, BackupOptions(paths=[str(tmp_path / "a")], host="secretariat"),
                                         alarm=AlarmThresholds()))
    assert other_host.alarm is None  # not compared with the cabinet's snapshot
    other_paths = run_locked(BackupEngine(repo, BackupOptions(paths=[str(tmp_path / "a"), str(tmp_path / "b")],
                                                              host="cabinet"), alarm=AlarmThresholds()))
    assert other_paths.alarm is None
    same = run_locked(BackupEngine(repo, BackupOptions(paths=[str(tmp_path / "a")], host="cabinet"),
                                   alarm=AlarmThresholds()))
    assert same.alarm is not None and same.alarm["parent"] == first.snapshot.id.hex()


def test_after_a_suspect_backup_the_last_good_is_the_one_before_it_and_only_suspect_ones_keep_an_alarm(
        tmp_path: Path) -> None:
    rng = random.Random(5)
    repo, options = _repo(), BackupOptions(paths=[str(tmp_path)])
    good = _an_ordinary_week(tmp_path, rng, repo, options)
    assert good.alarm is not None and not good.suspect  # compared, ordinary
    assert "alarm" not in repo.snapshots()[-1].summary  # summary.alarm: on a suspect snapshot only
    _attack(tmp_path, rng)
    suspect = run_locked(BackupEngine(repo, options, alarm=AlarmThresholds()))
    assert suspect.suspect and suspect.alarm["last_good"] == good.snapshot.id.hex()
    unchanged = run_locked(BackupEngine(repo, options, alarm=AlarmThresholds()))
    assert not unchanged.suspect and unchanged.alarm["parent"] == suspect.snapshot.id.hex()
    assert unchanged.alarm["last_good"] == good.snapshot.id.hex()  # not the suspect parent

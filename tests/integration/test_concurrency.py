"""Reliability campaign, concurrency (issue 10, point 5): a backup and a prune started
with random timing, many times; two backups at once from two processes. Whatever the
interleaving, no chunk a snapshot uses is ever deleted: `check --read-data` passes and
every snapshot restores bit-exact. The loser of a lock conflict exits 16 and stores
nothing half-way."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

from tests.support.waits import wait_until

from .support import Backupctl, random_file, tree_digests, write

ROUNDS = int(os.environ.get("BACKUPCTL_CONCURRENCY_ROUNDS", "20"))



def test_backup_and_prune_with_random_timing(bk: Backupctl, tmp_path: Path):
    seed = int(os.environ.get("BACKUPCTL_CRASH_SEED", random.SystemRandom().randrange(2**32)))
    rng = random.Random(seed)
    print(f"concurrency campaign: seed {seed}, {ROUNDS} rounds")
    bk.write_config(extra_repo_lines='[retention]\nweekly = 4\nmonthly = 12\nyearly = 1\ntimezone = "UTC"')
    bk.init()
    saved: dict[str, dict[str, str]] = {}
    outcomes = {"both": 0, "backup refused": 0, "prune refused": 0}
    for round_number in range(ROUNDS):
        for i in range(2):  # old snapshots for prune to forget, and new data for the backup
            write(bk.src / f"lettre-{round_number}-{i}.txt", f"Lettre {round_number} {i}. " * rng.randrange(100, 3000))
            snapshot = bk.backup("--time", f"2026-09-{1 + (round_number * 2 + i) % 28:02d}T10:00:00+00:00")
            saved[snapshot["snapshot_id"]] = tree_digests(bk.src)
        # A large new scan keeps the backup busy (holding its lock) for a few tenths of a
        # second; the previous one goes, so every snapshot stays small to restore.
        for old in bk.src.glob("scan-*.jpg"):
            old.unlink()
        # Every fourth round makes them meet for sure: a large scan keeps the backup busy,
        # and the prune starts the moment the backup's lock object appears.
        forced = round_number % 4 == 3
        random_file(bk.src / f"scan-{round_number}.jpg", (96 if forced else rng.randrange(20, 40)) * 1024 * 1024)
        before = tree_digests(bk.src)
        first, second = ("backup", "prune") if forced or rng.random() < 0.5 else ("prune", "backup")
        one = bk.popen(first, "--json")
        if forced:
            wait_until(lambda proc=one: any((bk.repo / "locks").glob("*")) or proc.poll() is not None, timeout=60,
                       interval=0.005, what=f"round {round_number}: the {first}'s lock object (or its end)")
        else:
            # Both spend about 0.35 s starting (interpreter, key) before taking their lock and
            # hold it for a few tenths of a second: offsets up to 0.3 s make them meet, at times.
            time.sleep(rng.uniform(0.0, 0.3))
        two = bk.popen(second, "--json")
        codes = {first: one.wait(600), second: two.wait(600)}
        one.communicate()
        two.communicate()
        assert set(codes.values()) <= {0, 16}, f"round {round_number} (seed {seed}): exit codes {codes}"
        assert 0 in codes.values(), f"round {round_number} (seed {seed}): both refused"
        outcomes["both" if set(codes.values()) == {0} else
                 "backup refused" if codes["backup"] == 16 else "prune refused"] += 1
        snapshots = {s["id"]: s for s in bk.snapshots()}
        if codes["backup"] == 0:
            newest = max(snapshots.values(), key=lambda s: s["time"])
            saved[newest["id"]] = before
        check = bk.run("check")
        assert check.returncode == 0, f"round {round_number} (seed {seed}): {check}"
        for snapshot_id in [s for s in saved if s not in snapshots]:
            del saved[snapshot_id]  # forgotten by the policy: fine, as long as the kept ones restore
        newest_id = max(saved, key=lambda s: snapshots[s]["time"])
        bk.assert_restores(newest_id, saved[newest_id], tmp_path / f"r-{round_number}")
    for number, (snapshot_id, expected) in enumerate(saved.items()):
        bk.assert_restores(snapshot_id, expected, tmp_path / f"final-{number}")
    result = bk.run("check", "--read-data")
    assert result.returncode == 0, str(result)
    print(f"concurrency campaign: {outcomes}")
    assert outcomes["backup refused"] + outcomes["prune refused"] >= 1, \
        f"the two never met in {ROUNDS} rounds (seed {seed}): the campaign tested nothing"


def test_two_backups_at_once_from_two_processes(bk: Backupctl, tmp_path: Path):
    for i in range(4):
        random_file(bk.src / f"imagerie-{i}.dcm", 3 * 1024 * 1024)
    write(bk.src / "courrier.txt", "Madame, " * 2000)
    bk.init()
    expected = tree_digests(bk.src)
    processes = [bk.popen("backup", "--json") for _ in range(2)]
    codes = [p.wait(600) for p in processes]
    for p in processes:
        p.communicate()
    assert codes == [0, 0]  # backups share the lock: both run
    snapshots = bk.snapshots()
    assert len(snapshots) == 2
    for number, snapshot in enumerate(snapshots):
        bk.assert_restores(snapshot["id"], expected, tmp_path / f"r-{number}")
    assert bk.run("check", "--read-data").returncode == 0

"""Reliability campaign, crash consistency (issue 10, point 1): backups and prunes killed
with SIGKILL at random moments, many times over. After every kill: `check` passes, every
snapshot saved before restores bit-exact, and a rerun completes. The seed and the number
of trials are printed, so a failure can be replayed; docs/RELIABILITY.md keeps the table.

BACKUPCTL_CRASH_TRIALS raises the number of trials for a longer campaign."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

from .support import Backupctl, random_file, tree_digests, write

# backups really killed (make test; more: see RELIABILITY.md)
KILLS = int(os.environ.get("BACKUPCTL_CRASH_TRIALS", "30"))
PRUNE_KILLS = max(10, KILLS // 5)
MAX_ROUNDS = 3  # rounds per kill wanted at most: a kill that comes after the end is a round, not a kill



def _mutate(bk: Backupctl, rng: random.Random, trial: int) -> None:
    """A week of practice: new letters, a new scan, an edited file, a deleted one."""
    for i in range(3):
        write(bk.src / "courriers" / f"t{trial:03d}-{i}.txt", f"Lettre {trial}-{i}. " * rng.randrange(50, 4000))
    random_file(bk.src / "imagerie" / f"scan-{trial:03d}.jpg", rng.randrange(256 * 1024, 2 * 1024 * 1024))
    # The tree stays about the same size (old scans and letters go), so every round costs the same.
    for old in sorted((bk.src / "imagerie").glob("scan-*.jpg"))[:-4]:
        old.unlink()
    letters = sorted((bk.src / "courriers").glob("t*.txt"))
    while len(letters) > 12:
        letters.pop(rng.randrange(len(letters))).unlink()
    letters = sorted((bk.src / "courriers").glob("*.txt"))
    with open(letters[0], "a") as handle:
        handle.write(f"ajout {trial}\n")


def _killed(bk: Backupctl, command: str, delay: float) -> int:
    proc = bk.popen(command, "--json")
    time.sleep(delay)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=600)
    return proc.returncode


def test_backups_killed_at_random_moments(bk: Backupctl, tmp_path: Path):
    seed = int(os.environ.get("BACKUPCTL_CRASH_SEED", random.SystemRandom().randrange(2**32)))
    rng = random.Random(seed)
    print(f"crash campaign: seed {seed}, until {KILLS} backups are killed")
    write(bk.src / "courriers" / "base.txt", "Dossier patient. " * 3000)
    random_file(bk.src / "imagerie" / "base.dcm", 8 * 1024 * 1024)
    bk.init()
    started = time.monotonic()
    first = bk.backup()
    duration = max(time.monotonic() - started, 0.5)
    saved = {first["snapshot_id"]: tree_digests(bk.src)}
    killed = completed_anyway = late_kills = 0
    trial = -1
    while killed < KILLS:
        trial += 1
        assert trial < KILLS * MAX_ROUNDS, f"only {killed} kills in {trial} rounds (seed {seed})"
        _mutate(bk, rng, trial)
        # Not before the process has started working (interpreter and key: about a third).
        code = _killed(bk, "backup", duration * rng.uniform(0.25, 0.9))
        killed += code == -signal.SIGKILL
        completed_anyway += code in (0, 3)
        check = bk.run("check")
        assert check.returncode == 0, f"trial {trial} (seed {seed}): {check}"
        snapshots = {s["id"] for s in bk.snapshots()}
        assert set(saved) <= snapshots, f"trial {trial} (seed {seed}): a saved snapshot disappeared"
        new = snapshots - set(saved)
        if code in (0, 3):  # the kill came too late: that backup finished
            assert len(new) == 1, f"trial {trial} (seed {seed}): a finished backup saved {len(new)} snapshots"
        else:
            # Killed after writing its snapshot object (then saving its cache and records):
            # the snapshot is complete; it must restore like any other. Otherwise none.
            assert len(new) <= 1, f"trial {trial} (seed {seed}): a killed backup left {len(new)} snapshots"
            late_kills += len(new)
        for snapshot_id in new:
            saved[snapshot_id] = tree_digests(bk.src)
            bk.assert_restores(snapshot_id, saved[snapshot_id], tmp_path / f"new-{trial}")
        # Every earlier snapshot still restores bit-exact: the newest every time, all of them
        # every tenth trial (restoring all of them fifty times would take minutes).
        ids = list(saved) if trial % 10 == 9 else [next(reversed(saved))]
        for number, snapshot_id in enumerate(ids):
            bk.assert_restores(snapshot_id, saved[snapshot_id], tmp_path / f"r-{trial}-{number}")
        started = time.monotonic()
        rerun = bk.backup()  # the rerun completes
        duration = time.monotonic() - started  # the next kill aims inside a backup of today's size
        saved[rerun["snapshot_id"]] = tree_digests(bk.src)
    result = bk.run("check", "--read-data")
    assert result.returncode == 0, str(result)
    print(f"crash campaign: {killed} backups killed ({late_kills} after saving their snapshot) in {trial + 1} "
          f"rounds, {completed_anyway} finished before the kill")


def test_prunes_killed_at_random_moments(bk: Backupctl, tmp_path: Path):
    seed = int(os.environ.get("BACKUPCTL_CRASH_SEED", random.SystemRandom().randrange(2**32)))
    rng = random.Random(seed)
    print(f"crash campaign: seed {seed}, until {PRUNE_KILLS} prunes are killed")
    bk.write_config(extra_repo_lines="[retention]\nweekly = 4\nmonthly = 12\nyearly = 1\ntimezone = \"UTC\"")
    bk.init()
    killed = 0
    trial = -1
    while killed < PRUNE_KILLS:
        trial += 1
        assert trial < PRUNE_KILLS * MAX_ROUNDS, f"only {killed} kills in {trial} rounds (seed {seed})"
        # Several snapshots a day over the last weeks: most of them are forgotten by prune.
        saved = {}
        for day in range(6):
            _mutate(bk, rng, trial * 10 + day)
            moment = f"2026-{10 + day // 4:02d}-{1 + (trial * 6 + day) % 20:02d}T{8 + day:02d}:00:00+00:00"
            saved[bk.backup("--time", moment)["snapshot_id"]] = tree_digests(bk.src)
        started = time.monotonic()
        dry = bk.ok_json("prune", "--dry-run")
        planning = time.monotonic() - started  # start-up, lock, check and policy: the prune's first part
        kept = {d["snapshot_id"] for d in dry["snapshots"] if d["action"] == "keep"}
        code = _killed(bk, "prune", planning * rng.uniform(0.4, 1.1))
        killed += code == -signal.SIGKILL
        check = bk.run("check")
        assert check.returncode == 0, f"trial {trial} (seed {seed}): {check}"
        remaining = {s["id"] for s in bk.snapshots()}
        assert kept <= remaining, f"trial {trial} (seed {seed}): a kept snapshot was deleted"
        for snapshot_id in sorted(kept & set(saved)):
            bk.assert_restores(snapshot_id, saved[snapshot_id], tmp_path / f"p-{trial}-{snapshot_id[:8]}")
        rerun = bk.run("prune", "--json")  # the rerun completes: what the killed one left is collected
        assert rerun.returncode == 0, f"trial {trial} (seed {seed}): {rerun}"
    result = bk.run("check", "--read-data")
    assert result.returncode == 0, str(result)
    print(f"crash campaign: {killed} prunes killed in {trial + 1} rounds")

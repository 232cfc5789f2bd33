"""The ransomware alarm's counts on the bench dataset (issue 22): where the defaults come from.

    python bench/alarm.py WORKDIR [--scale 0.02] [--weeks 10]

Creates the practice dataset (bench/dataset.py create, seed 2026) in WORKDIR/src, backs it up
with the real CLI into WORKDIR/repo, then: `--weeks` weekly mutations (dataset.py mutate,
seeds 1..N) with a backup after each; a large legitimate import of new scans (`import_scans`);
then the simulated attack (`attack`: 30 % of the files overwritten with random bytes and
renamed NAME.locked, a ransom note LISEZ-MOI.txt in every folder), and its variants, each
from the tree as it was before the attack: every file encrypted in place, 1 KiB in every
8 KiB (intermittent encryption: the files keep their names and still compress), with a
differently named note per folder; and the images and scans (already compressed: they never
compressed) encrypted in place, names kept, no note. Prints each backup's
alarm counts (its --json document's "alarm") and the highest of each count over the
ordinary weeks, against the attack's. tests/integration/test_ransomware_alarm.py runs the
same steps, and the in-place intermittent variant, at a smaller scale.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dataset  # noqa: E402  # bench/dataset.py, next to this file

NOTE = "LISEZ-MOI.txt"
NOTE_TEXT = (b"Vos fichiers sont chiffres. Pour les recuperer, payez 2 BTC a l'adresse suivante "
             b"et envoyez la preuve de paiement. Ne tentez pas de les dechiffrer vous-meme.\n") * 8


def attack(root: str, seed: int = 666, share: float = 0.3) -> int:
    """Overwrite `share` of the files under `root` with random bytes of the same size, each
    renamed NAME.locked, and drop NOTE in every folder. Returns the files encrypted."""
    rng = random.Random(seed)
    files = sorted(os.path.join(d, n) for d, _s, names in os.walk(root) for n in names)
    chosen = rng.sample(files, int(len(files) * share))
    for path in chosen:
        size = os.path.getsize(path)
        with open(path + ".locked", "wb") as handle:
            handle.write(rng.randbytes(size))
        os.unlink(path)
    for folder, _subdirs, _names in os.walk(root):
        with open(os.path.join(folder, NOTE), "wb") as handle:
            handle.write(NOTE_TEXT)
    return len(chosen)


def attack_in_place(root: str, seed: int = 667, block: int = 1024, every: int = 8) -> int:
    """Every file encrypted in place, one `block` in `every` (intermittent encryption, as
    fast ransomware does), names kept; in each folder a note with its own name and text."""
    rng = random.Random(seed)
    count = 0
    for folder, _subdirs, names in os.walk(root):
        for name in sorted(names):
            path = os.path.join(folder, name)
            with open(path, "r+b") as handle:
                data = bytearray(handle.read())
                for start in range(0, len(data), block * every):
                    end = min(start + block, len(data))
                    data[start:end] = rng.randbytes(end - start)
                handle.seek(0)
                handle.write(data)
            count += 1
        victim = rng.randbytes(4).hex()
        with open(os.path.join(folder, f"RESTORE-{victim}.txt"), "wb") as handle:
            handle.write(NOTE_TEXT + victim.encode() + b"\n")
    return count


def attack_compressed(root: str, seed: int = 668, share: float = 1.0) -> int:
    """`share` of the files that never compressed (images, scans) overwritten in place with
    random bytes of the same size, names kept, no note."""
    rng = random.Random(seed)
    files = sorted(os.path.join(d, n) for d, _s, names in os.walk(root) for n in names
                   if n.endswith((".jpg", ".pdf")))
    chosen = rng.sample(files, int(len(files) * share))
    for path in chosen:
        size = os.path.getsize(path)
        with open(path, "wb") as handle:
            handle.write(rng.randbytes(size))
    return len(chosen)


def import_scans(root: str, seed: int = 77, count: int = 300) -> None:
    """A large legitimate import: `count` new scans (incompressible, 100-500 KiB) in a new folder."""
    rng = random.Random(seed)
    folder = os.path.join(root, "scans", "import-2026")
    os.makedirs(folder, exist_ok=True)
    for i in range(count):
        with open(os.path.join(folder, f"numerisation-{i:05d}.pdf"), "wb") as handle:
            handle.write(rng.randbytes(rng.randint(100 << 10, 500 << 10)))


def _backupctl(config: str, *args: str) -> tuple[int, dict[str, Any]]:
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}
    proc = subprocess.run([sys.executable, "-m", "agent", "--config", config, *args, "--json"], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    if proc.returncode not in (0, 5):
        raise SystemExit(f"backupctl {' '.join(args)}: exit {proc.returncode}\n{proc.stderr.decode()}")
    return proc.returncode, json.loads(proc.stdout)


SHOWN = ("changed_share", "lost_compression", "renamed", "note_folders")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workdir")
    parser.add_argument("--scale", type=float, default=0.02)
    parser.add_argument("--weeks", type=int, default=10)
    args = parser.parse_args()
    src, repo, state = (os.path.join(args.workdir, n) for n in ("src", "repo", "state"))
    config = os.path.join(args.workdir, "config.toml")
    with open(config, "w", encoding="utf-8") as handle:
        handle.write(f'[agent]\nstate_dir = "{state}"\n[source]\npaths = ["{src}"]\n'
                     f'[repositories.main]\nurl = "file://{repo}"\n')
    os.environ.setdefault("BACKUPCTL_PASSPHRASE", "bench alarm passphrase, long enough 2026")
    dataset.create(src, args.scale, 2026)
    _backupctl(config, "init")
    _backupctl(config, "backup")
    highest = dict.fromkeys(SHOWN, 0.0)
    rows = []
    for week in range(1, args.weeks + 1):
        dataset.mutate(src, week)
        code, doc = _backupctl(config, "backup")
        rows.append((f"week {week}", code, doc["alarm"]))
        for key in SHOWN:
            highest[key] = max(highest[key], doc["alarm"][key])
    import_scans(src)
    code, doc = _backupctl(config, "backup")
    rows.append(("import of 300 scans", code, doc["alarm"]))
    before = os.path.join(args.workdir, "before-attack")
    shutil.copytree(src, before, symlinks=True)
    variants = [("attack", attack), ("in place, 1 KiB in 8", attack_in_place),
                ("in place, jpg+pdf", attack_compressed)]
    for n, (name, variant) in enumerate(variants):
        if n:  # back to the tree before the attack, backed up: the variant's parent
            shutil.rmtree(src)
            shutil.copytree(before, src, symlinks=True)
            _backupctl(config, "backup")
        encrypted = variant(src)
        code, doc = _backupctl(config, "backup")
        rows.append((f"{name} ({encrypted} files)", code, doc["alarm"]))
    for name, code, alarm in rows:
        print(f"{name:36} exit {code}  " + "  ".join(f"{k} {alarm[k]}" for k in SHOWN)
              + f"  files_before {alarm['files_before']}  signs {','.join(alarm['signs']) or '-'}")
    print("highest over the ordinary weeks: " + "  ".join(f"{k} {highest[k]}" for k in SHOWN))


if __name__ == "__main__":
    main()

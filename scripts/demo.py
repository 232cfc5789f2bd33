"""`make demo`: the main job, end to end, on a local repository and generated data.

Creates <workdir>/cabinet (a small sample practice tree), a config and a passphrase
file, then runs: init, backup, snapshots, a change and a second backup (deduplicated),
restore of the latest snapshot with SHA-256 verification, and check --read-data.
Nothing outside <workdir> is touched; running it again starts afresh.
"""

from __future__ import annotations

import argparse
import os
import random
import shlex
import shutil
import subprocess
import sys

WORDS = ("patient consultation ordonnance tension artérielle suivi diabète vaccin "
         "radiographie courrier confrère compte-rendu Élodie Müller Françoise").split()


def text(rng: random.Random, size: int) -> bytes:
    out = []
    length = 0
    while length < size:
        word = rng.choice(WORDS)
        out.append(word)
        length += len(word) + 1
    return " ".join(out).encode("utf-8")[:size]


def make_sample(root: str, seed: int = 7) -> None:
    rng = random.Random(seed)
    for year in (2025, 2026):
        for month in range(1, 13, 3):
            folder = os.path.join(root, "courriers", str(year), f"{month:02d}")
            os.makedirs(folder, exist_ok=True)
            for i in range(12):
                with open(os.path.join(folder, f"lettre-{i:03d} Élodie.txt"), "wb") as handle:
                    handle.write(text(rng, rng.randint(2_000, 60_000)))
    scans = os.path.join(root, "scans")
    os.makedirs(scans, exist_ok=True)
    for i in range(6):
        with open(os.path.join(scans, f"scan-{i}.pdf"), "wb") as handle:
            handle.write(rng.randbytes(rng.randint(100_000, 500_000)))
    os.makedirs(os.path.join(root, "base"), exist_ok=True)
    with open(os.path.join(root, "base", "cabinet.db"), "wb") as handle:
        for _page in range(2_000):
            handle.write(text(rng, 8192))
    os.makedirs(os.path.join(root, "vide"), exist_ok=True)
    with open(os.path.join(root, "brouillon.tmp"), "wb") as handle:
        handle.write(b"excluded by the config")
    os.symlink("base/cabinet.db", os.path.join(root, "lien-base"))


def run(bin_dir: str, config: str, *args: str, ok_codes: tuple[int, ...] = (0,)) -> None:
    command = [os.path.join(bin_dir, "backupctl"), "--config", config, *args]
    print(f"\n$ backupctl {' '.join(args)}", flush=True)
    result = subprocess.run(command)
    if result.returncode not in ok_codes:
        sys.exit(f"demo: `backupctl {' '.join(args)}` failed with exit code {result.returncode}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", default="demo")
    args = parser.parse_args()
    work = os.path.abspath(args.workdir)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    cabinet = os.path.join(work, "cabinet")
    make_sample(cabinet)
    passphrase = os.path.join(work, "passphrase")
    with open(os.open(passphrase, os.O_WRONLY | os.O_CREAT, 0o600), "w") as handle:
        handle.write("demo passphrase, use a long random one for real\n")
    config = os.path.join(work, "config.toml")
    with open(config, "w") as handle:
        handle.write(f"""[agent]
state_dir = "{work}/state"
practice_name = "Cabinet de démonstration"
report_language = "fr"
report_dir = "{work}/reports"

[source]
paths = ["{cabinet}"]
exclude = ["*.tmp"]
databases = ["*.db"]

[repositories.main]
url = "file://{work}/repo"
cipher = "xchacha20-poly1305"
compression = "zstd"

[key]
passphrase_file = "{passphrase}"
""")
    bin_dir = os.path.dirname(sys.executable)
    run(bin_dir, config, "init")
    run(bin_dir, config, "backup", "--tag", "weekly")
    with open(os.path.join(cabinet, "courriers", "2026", "10", "lettre-nouvelle.txt"), "wb") as handle:
        handle.write(text(random.Random(1), 30_000))
    with open(os.path.join(cabinet, "base", "cabinet.db"), "r+b") as handle:
        handle.seek(8192 * 700)
        handle.write(b"page rewritten by the practice software".ljust(8192, b"."))
    run(bin_dir, config, "backup", "--tag", "weekly")
    run(bin_dir, config, "snapshots")
    run(bin_dir, config, "restore", "latest", "--target", os.path.join(work, "restored"))
    run(bin_dir, config, "check", "--read-data")
    # The quarterly restore test, with its report (HTML in French, JSON, PDF if Chromium is installed).
    run(bin_dir, config, "restore-test", "--sample", "50", "--scratch-dir", os.path.join(work, "scratch"))
    # The recovery sheet for the safe (rule K1); a real one is printed, then its file deleted.
    run(bin_dir, config, "key", "export", "--paper", os.path.join(work, "fiche-de-recuperation.html"))
    run(bin_dir, config, "compliance", ok_codes=(0, 4))  # 4 would mean a rule FAILs
    print(f"\nDemo complete. Sample data, repository and restored copy are under {work}/; "
          f"the restore-test report is in {work}/reports/")
    print("\nRun backupctl yourself on the demo (the passphrase comes from the demo's configuration,"
          " [key] passphrase_file):\n")
    for line in yourself(bin_dir, config, work):
        print(f"    {line}")
    print(f"\nEvery command and its options: {shlex.quote(os.path.join(bin_dir, 'backupctl'))} --help;"
          " docs/REFERENCE.md.")


def yourself(bin_dir: str, config: str, work: str) -> list[str]:
    """The lines printed at the end of the demo, to be typed as they are in a POSIX shell
    (tests/integration/test_demo.py runs them)."""
    backupctl = shlex.quote(os.path.join(bin_dir, "backupctl"))
    return [
        f"export BACKUPCTL_CONFIG={shlex.quote(config)}   # or: {backupctl} --config {shlex.quote(config)} ...",
        f"{backupctl} snapshots",
        f"{backupctl} find -i 'LETTRE-NOUVELLE.TXT'",
        f"{backupctl} restore latest --target {shlex.quote(os.path.join(work, 'a-moi'))}"
        " --include 'lettre-nouvelle.txt'",
        f"{backupctl} restore-test --sample 20 --scratch-dir {shlex.quote(os.path.join(work, 'scratch'))}",
        f"{backupctl} status",
    ]


if __name__ == "__main__":
    main()

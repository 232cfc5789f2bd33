"""A synthetic practice dataset for the benchmarks, deterministic from its seed.

    python bench/dataset.py create DIR [--scale 1.0] [--seed 2026]
    python bench/dataset.py mutate DIR [--seed 2027]      # one week of practice activity
    python bench/dataset.py create DIR --kind smallfiles [--files 100000]
    python bench/dataset.py mutate DIR --kind smallfiles   # 1 % of the files changed

At scale 1: a 600 MiB database of 8 KiB pages of compressible text (base/cabinet.db),
about 200 incompressible images of 2-6 MiB (imagerie/), about 20,000 letters of
2-60 KiB of compressible text in year/month folders (courriers/YYYY/MM/), and about
500 scans of 100-500 KiB (scans/, incompressible). The weekly mutation rewrites 2 % of
the database pages at random positions, adds 150 letters and 10 images.

The `smallfiles` kind (issue 19: per-file cost, not per-byte cost): 100,000 letters of
0.4-8 KiB of compressible text in 1,000 folders of 100 (dossiers/NNN/), about 400 MB.
Its weekly mutation rewrites 1 % of them (chosen at random, new text, new size) and
adds nothing else, so the weekly backup measures the walk and the files cache.
"""

from __future__ import annotations

import argparse
import os
import random

PAGE = 8192
WORDS = ("patient consultation ordonnance tension artérielle suivi diabète vaccin radiographie "
         "courrier confrère compte-rendu antécédents allergie posologie biologie glycémie "
         "cholestérol échographie kinésithérapie Élodie Müller Françoise Benoît Zoé").split()


def _text(rng: random.Random, size: int) -> bytes:
    # Words plus numbers: compresses about 3:1 with zstd, like real letters and records.
    parts = []
    length = 0
    while length < size:
        word = rng.choice(WORDS) if rng.random() < 0.8 else str(rng.randint(0, 99999))
        parts.append(word)
        length += len(word) + 1
    return " ".join(parts).encode("utf-8")[:size].ljust(size, b" ")


def _page(rng: random.Random, number: int) -> bytes:
    header = f"PAGE{number:010d}".encode()
    return header + _text(rng, PAGE - len(header))


def _write(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)


def create(root: str, scale: float, seed: int) -> None:
    rng = random.Random(seed)
    pages = int(600 * 1024 * 1024 * scale) // PAGE
    os.makedirs(os.path.join(root, "base"), exist_ok=True)
    with open(os.path.join(root, "base", "cabinet.db"), "wb") as handle:
        for number in range(pages):
            handle.write(_page(rng, number))
    for i in range(int(200 * scale)):
        _write(os.path.join(root, "imagerie", f"{2020 + i % 6}", f"img-{i:05d}.jpg"),
               rng.randbytes(rng.randint(2 << 20, 6 << 20)))
    for i in range(int(20_000 * scale)):
        year, month = 2015 + i % 12, 1 + (i // 12) % 12
        _write(os.path.join(root, "courriers", str(year), f"{month:02d}", f"lettre-{i:06d}.txt"),
               _text(rng, rng.randint(2 << 10, 60 << 10)))
    for i in range(int(500 * scale)):
        _write(os.path.join(root, "scans", f"scan-{i:05d}.pdf"), rng.randbytes(rng.randint(100 << 10, 500 << 10)))


def mutate(root: str, seed: int) -> None:
    rng = random.Random(seed)
    database = os.path.join(root, "base", "cabinet.db")
    pages = os.path.getsize(database) // PAGE
    with open(database, "r+b") as handle:
        for number in rng.sample(range(pages), max(1, pages * 2 // 100)):
            handle.seek(number * PAGE)
            handle.write(_page(rng, number))
    week = f"semaine-{seed}"
    for i in range(150):
        _write(os.path.join(root, "courriers", "2026", week, f"lettre-{i:04d}.txt"),
               _text(rng, rng.randint(2 << 10, 60 << 10)))
    for i in range(10):
        _write(os.path.join(root, "imagerie", "2026", f"{week}-img-{i:02d}.jpg"),
               rng.randbytes(rng.randint(2 << 20, 6 << 20)))


SMALL_PER_FOLDER = 100


def _small_path(root: str, i: int) -> str:
    return os.path.join(root, "dossiers", f"{i // SMALL_PER_FOLDER:04d}", f"note-{i:06d}.txt")


def create_small(root: str, files: int, seed: int) -> None:
    rng = random.Random(seed)
    for i in range(files):
        if i % SMALL_PER_FOLDER == 0:
            os.makedirs(os.path.dirname(_small_path(root, i)), exist_ok=True)
        with open(_small_path(root, i), "wb") as handle:
            handle.write(_text(rng, rng.randint(400, 8 << 10)))


def mutate_small(root: str, seed: int) -> None:
    files = sum(len(names) for _d, _s, names in os.walk(os.path.join(root, "dossiers")))
    rng = random.Random(seed)
    for i in sorted(rng.sample(range(files), max(1, files // 100))):
        with open(_small_path(root, i), "wb") as handle:
            handle.write(_text(rng, rng.randint(400, 8 << 10)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="action", required=True)
    make = sub.add_parser("create")
    make.add_argument("root")
    make.add_argument("--scale", type=float, default=1.0)
    make.add_argument("--seed", type=int, default=2026)
    make.add_argument("--kind", choices=("practice", "smallfiles"), default="practice")
    make.add_argument("--files", type=int, default=100_000, help="smallfiles: how many")
    change = sub.add_parser("mutate")
    change.add_argument("root")
    change.add_argument("--seed", type=int, default=2027)
    change.add_argument("--kind", choices=("practice", "smallfiles"), default="practice")
    args = parser.parse_args()
    if args.action == "create" and args.kind == "smallfiles":
        create_small(args.root, args.files, args.seed)
    elif args.action == "create":
        create(args.root, args.scale, args.seed)
    elif args.kind == "smallfiles":
        mutate_small(args.root, args.seed)
    else:
        mutate(args.root, args.seed)


if __name__ == "__main__":
    main()

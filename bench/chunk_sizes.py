"""Choose the chunker's sizes by measurement (core issue, point 4).

A practice's weekly change is mostly scattered page rewrites inside one large database
file, plus new small letters (each smaller than any minimum chunk size, so one chunk
each whatever the parameters). This measures, for several FastCDC size sets, on a
deterministic 256 MiB "database" of 8 KiB text pages with 2 % of pages rewritten:

* chunks per GiB (index size and per-chunk overhead grow with it),
* bytes the weekly mutation adds (new chunks, after zstd level 3),
* chunking throughput.

    .venv/bin/python bench/chunk_sizes.py [--mib 256]
"""

from __future__ import annotations

import argparse
import io
import random
import time

import zstandard
from pyfastcdc.cy import FastCDC

PAGE = 8192
WORDS = ("patient consultation ordonnance tension artérielle suivi diabète vaccin "
         "radiographie courrier confrère compte-rendu").split()
SETS = [  # (min, avg parameter, max)
    (64 << 10, 256 << 10, 1 << 20),
    (128 << 10, 512 << 10, 2 << 20),
    (256 << 10, 1 << 20, 8 << 20),
    (512 << 10, 2 << 20, 8 << 20),
    (1 << 20, 4 << 20, 16 << 20),
]


def page(rng: random.Random) -> bytes:
    text = " ".join(rng.choice(WORDS) + str(rng.randint(0, 99999)) for _ in range(900)).encode()
    return text[:PAGE].ljust(PAGE, b" ")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=256)
    args = parser.parse_args()
    rng = random.Random(2026)
    pages = [page(rng) for _ in range(args.mib * 1024 * 1024 // PAGE)]
    before = b"".join(pages)
    for index in rng.sample(range(len(pages)), len(pages) * 2 // 100):
        pages[index] = page(rng)
    after = b"".join(pages)
    zstd = zstandard.ZstdCompressor(level=3)
    print(f"database {args.mib} MiB, {len(pages) * 2 // 100} of {len(pages)} pages rewritten\n")
    print("| min | avg param | max | chunks/GiB | mean chunk | weekly added (zstd) | chunking MiB/s |")
    print("|---|---|---|---|---|---|---|")
    for min_size, avg_size, max_size in SETS:
        cdc = FastCDC(avg_size, min_size=min_size, max_size=max_size, seed=0x5EED)
        started = time.perf_counter()
        old = {bytes(c.data) for c in cdc.cut_stream(io.BytesIO(before))}
        elapsed = time.perf_counter() - started
        new_chunks = [bytes(c.data) for c in cdc.cut_stream(io.BytesIO(after))]
        added = sum(len(zstd.compress(c)) for c in new_chunks if c not in old)
        per_gib = len(old) * 1024 / args.mib
        print(f"| {min_size >> 10} KiB | {avg_size >> 10} KiB | {max_size >> 10} KiB | {per_gib:.0f} | "
              f"{len(before) / len(old) / 1024:.0f} KiB | {added / 2**20:.1f} MiB | "
              f"{len(before) / elapsed / 2**20:.0f} |")
    print(f"\nfor scale: the rewritten pages alone are {len(pages) * 2 // 100 * PAGE / 2**20:.1f} MiB "
          f"before compression; the whole database compresses to {len(zstd.compress(before)) / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()

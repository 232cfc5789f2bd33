"""Memory and speed of the in-memory master index (agent/repo/index.py) alone.

    .venv/bin/python bench/index_memory.py [--blobs 1000000] [--per-pack 2000]

Makes one synthetic index file's plaintext (random chunk ids, `--per-pack` blobs per
pack, as a repository of one-chunk files has), then, in a fresh process, decodes it and
adds every pack to a MasterIndex as Repository.load_index does, and reports: resident
memory the index keeps (VmRSS after, minus before reading the file, per blob), the peak
while loading (VmHWM, the file's bytes included), CPU seconds of the load, lookups and
membership tests per CPU second (hits and misses, best of 3), and the time to walk packs()
as prune and check do. Run it with PYTHONPATH=<checkout> to measure that checkout's index.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import struct
import subprocess
import sys
import tempfile
import time


def _status(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(field)


def make(path: str, blobs: int, per_pack: int) -> None:
    from agent.repo.pack import ENTRY

    rng = random.Random(19)
    packs = (blobs + per_pack - 1) // per_pack
    out = [b"\x01", struct.pack("<I", 0), struct.pack("<I", packs)]
    left = blobs
    for _ in range(packs):
        count = min(per_pack, left)
        left -= count
        out.append(rng.randbytes(32) + struct.pack("<I", count))
        offset = 0
        for _ in range(count):
            length = rng.randrange(300, 9000)
            out.append(ENTRY.pack(rng.randrange(2), rng.randbytes(32), offset, length, length + 40))
            offset += length
    with open(path, "wb") as f:
        f.write(b"".join(out))


def measure(path: str) -> None:
    from agent.repo.index import MasterIndex, decode_index

    gc.collect()
    before = _status("VmRSS")
    with open(path, "rb") as f:
        plain = f.read()
    cpu = time.process_time()
    packs, _superseded = decode_index(plain, what="index")
    index = MasterIndex()
    for pack_id, entries in packs.items():
        index.add_pack(pack_id, entries)
    some = next(iter(packs.values()))[0].chunk_id
    assert some in index  # the first question asked settles whatever is built lazily
    load = time.process_time() - cpu
    blobs = sum(len(entries) for entries in packs.values())
    del plain, packs, entries
    gc.collect()
    kept = _status("VmRSS") - before
    peak = _status("VmHWM") - before

    rng = random.Random(5)
    all_packs = index.packs()
    hits = [e.chunk_id for entries in rng.sample(list(all_packs.values()), min(50, len(all_packs)))
            for e in entries][:100_000]
    del all_packs
    misses = [rng.randbytes(32) for _ in range(len(hits))]
    rates = {}
    lookup = index.lookup
    for name, ids in (("lookup hit", hits), ("lookup miss", misses), ("in hit", hits), ("in miss", misses)):
        best = float("inf")
        for _ in range(3):  # CPU seconds, the best of 3: the machine may be shared
            start = time.process_time()
            if name.startswith("in"):
                for chunk_id in ids:
                    chunk_id in index  # noqa: B015 -- the membership test is what is timed
            else:
                for chunk_id in ids:
                    lookup(chunk_id)
            best = min(best, time.process_time() - start)
        rates[name] = len(ids) / best
    start = time.process_time()
    walked = sum(e.length for entries in index.packs().values() for e in entries)
    walk = time.process_time() - start
    assert walked > 0
    print(f"blobs {blobs}: index keeps {kept / 2**20:.1f} MiB ({kept / blobs:.0f} B/blob), "
          f"peak while loading +{peak / 2**20:.1f} MiB, load {load:.2f} CPU s, "
          f"packs() walk {walk:.2f} CPU s")
    print("  " + ", ".join(f"{name} {rate / 1e6:.2f} M/s" for name, rate in rates.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blobs", type=int, default=1_000_000)
    parser.add_argument("--per-pack", type=int, default=2000)
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args.measure)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "index")
        make(path, args.blobs, args.per_pack)
        # A fresh process, so the generator's memory is not counted.
        subprocess.run([sys.executable, __file__, "--measure", path], check=True)


if __name__ == "__main__":
    main()

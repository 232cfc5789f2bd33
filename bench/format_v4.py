"""What format version 4 costs against version 3: chunking speed, space, backup and restore time.

    .venv/bin/python bench/format_v4.py [--scale 0.1] [--runs 3] [--chunk-mib 256] [--chunk-runs 7]

1. Chunking: the same random bytes cut by the seeded chunker (versions 1-3: public gear
   table XOR a 63-bit seed) and by the key-derived gear table (version 4), streamed like
   a large file, alternately; median MiB per CPU second over --chunk-runs.
2. For each run, a fresh synthetic practice (bench/dataset.py at --scale), then for each
   version a fresh local repository (Repository.init(format_version=...)), an initial
   backup, a weekly mutation, an incremental backup and a full restore of the latest
   snapshot. Wall times from time.perf_counter, CPU times (all threads) from
   time.process_time (steadier on a shared machine), bytes stored from the repository folder
   (packs and index files). Medians over the runs are printed as Markdown.

Both versions run in this one process, alternately, on the same files, so the page
cache treats them alike.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import dataset  # noqa: E402

from agent.crypto import ids  # noqa: E402
from agent.crypto.kdf import KdfParams  # noqa: E402
from agent.crypto.keys import MasterKey  # noqa: E402
from agent.engine.backup import BackupEngine, BackupOptions  # noqa: E402
from agent.engine.restore import RestoreEngine  # noqa: E402
from agent.repo.chunker import Chunker, ChunkerParams  # noqa: E402
from agent.repo.repository import Repository  # noqa: E402
from agent.storage.local import LocalStorage  # noqa: E402

PASSPHRASE = b"benchmark passphrase"
FAST_KDF = KdfParams(memory_kib=8192, iterations=1)  # key derivation is not what is measured
DATABASES = ["*.db"]  # as bench/run.py configures backupctl: the database in 32 KiB blocks


def chunking(mib: int, runs: int) -> dict[str, float]:
    data = os.urandom(mib << 20)
    master = MasterKey(bytes(range(32)))
    makers = {
        "seed (versions 1-3)": lambda: Chunker(ChunkerParams(), master.chunker_seed),
        "key-derived gear table (version 4)": lambda: Chunker(ChunkerParams(), gear=ids.gear_table(master.secret)),
    }
    speeds: dict[str, list[float]] = {name: [] for name in makers}
    for run in range(runs):
        for name in sorted(makers, reverse=bool(run % 2)):  # alternate which goes first
            chunker = makers[name]()
            start = time.process_time()  # CPU time: other processes on the machine do not count
            total = sum(len(c) for c in chunker.chunks(io.BytesIO(data)))
            speeds[name].append(total / (1 << 20) / (time.process_time() - start))
    return {name: statistics.median(values) for name, values in speeds.items()}


def stored_bytes(root: str) -> int:
    total = 0
    for folder in ("data", "index"):
        for directory, _dirs, files in os.walk(os.path.join(root, folder)):
            total += sum(os.path.getsize(os.path.join(directory, name)) for name in files)
    return total


def one_version(work: str, source: str, version: int, results: dict) -> None:
    root = os.path.join(work, f"repo-v{version}")
    repo = Repository.init(LocalStorage(root), PASSPHRASE, cipher="xchacha20-poly1305", compression_level=3,
                           kdf_params=FAST_KDF, format_version=version)
    start, cpu = time.perf_counter(), time.process_time()
    BackupEngine(repo, BackupOptions(paths=[source], databases=DATABASES)).run()
    results.setdefault(("initial backup (s)", version), []).append(time.perf_counter() - start)
    results.setdefault(("initial backup, CPU (s)", version), []).append(time.process_time() - cpu)
    results.setdefault(("stored after initial backup (MiB)", version), []).append(stored_bytes(root) / (1 << 20))
    results.setdefault(("packs", version), []).append(len(list(repo.index.pack_ids())))
    results.setdefault(("blobs", version), []).append(len(repo.index))


def second_backup(work: str, source: str, version: int, results: dict) -> None:
    root = os.path.join(work, f"repo-v{version}")
    repo = Repository.open(LocalStorage(root), PASSPHRASE)
    start, cpu = time.perf_counter(), time.process_time()
    BackupEngine(repo, BackupOptions(paths=[source], databases=DATABASES)).run()
    results.setdefault(("weekly backup (s)", version), []).append(time.perf_counter() - start)
    results.setdefault(("weekly backup, CPU (s)", version), []).append(time.process_time() - cpu)
    results.setdefault(("stored after weekly backup (MiB)", version), []).append(stored_bytes(root) / (1 << 20))
    # The format's own share of a restore, without the file system's: read every pack,
    # then open, unpad and decompress every blob in it.
    start = time.process_time()
    for pack_id in repo.index.pack_ids():
        data, entries = repo.read_pack(pack_id)
        for entry in entries:
            repo.decode_blob(entry.chunk_id, entry.kind, data[entry.offset : entry.offset + entry.length],
                             entry.raw_length, pack_name="p", verify_id=False)
    results.setdefault(("read and decode every blob, CPU (s)", version), []).append(time.process_time() - start)
    target = os.path.join(work, f"restore-v{version}")
    repo = Repository.open(LocalStorage(root), PASSPHRASE)
    repo.load_index()
    snapshot = repo.snapshots()[-1]
    os.sync()
    start, cpu = time.perf_counter(), time.process_time()
    report = RestoreEngine(repo, snapshot, target).run()
    results.setdefault(("full restore (s)", version), []).append(time.perf_counter() - start)
    results.setdefault(("full restore, CPU (s)", version), []).append(time.process_time() - cpu)
    assert not report.failures, report.failures
    shutil.rmtree(target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.1)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--chunk-mib", type=int, default=256)
    parser.add_argument("--chunk-runs", type=int, default=7)
    args = parser.parse_args()

    print(f"## Chunking speed ({args.chunk_mib} MiB of random bytes, streamed; MiB per CPU second, "
          f"median of {args.chunk_runs})\n")
    print("| gear table | MiB/s |\n|---|---|")
    for name, speed in chunking(args.chunk_mib, args.chunk_runs).items():
        print(f"| {name} | {speed:,.0f} |")

    results: dict = {}
    for run in range(args.runs):
        work = tempfile.mkdtemp(prefix="backupctl-v4-bench-")
        try:
            source = os.path.join(work, "cabinet")
            dataset.create(source, args.scale, 2026 + run)
            order = (3, 4) if run % 2 == 0 else (4, 3)
            for version in order:
                one_version(work, source, version, results)
            dataset.mutate(source, 2027 + run)
            for version in order:
                second_backup(work, source, version, results)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    print(f"\n## Version 3 against version 4 (dataset scale {args.scale}; median of {args.runs} runs)\n")
    print("| measure | version 3 | version 4 | version 4 / version 3 |\n|---|---|---|---|")
    for measure in dict.fromkeys(m for m, _v in results):
        v3, v4 = statistics.median(results[(measure, 3)]), statistics.median(results[(measure, 4)])
        print(f"| {measure} | {v3:,.2f} | {v4:,.2f} | {v4 / v3:.3f} |")


if __name__ == "__main__":
    main()

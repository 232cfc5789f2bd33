"""The floor of a weekly backup's added bytes: what the week's new content weighs compressed.

    python bench/weekly_floor.py BEFORE AFTER [--page 8192] [--database base/cabinet.db]

BEFORE and AFTER are the same tree before and after one week's mutation (bench/dataset.py
mutate). The floor is what no deduplicating tool can avoid storing:

* every file of AFTER that is new, or whose bytes differ from BEFORE's, compressed whole
  with zstd at backupctl's level (3);
* for each file declared a database (`--database`, repeatable): only the pages of
  `--page` bytes that differ, compressed together as one stream (the most favourable case:
  a tool stores at least the changed pages, and cannot compress them better than zstd
  sees them side by side).

Encryption, pack headers, tree objects and indexes come on top; bench/run.py prints each
tool's bytes added next to this floor and their ratio (issue 19 point 7: within 10 %).
"""

from __future__ import annotations

import argparse
import filecmp
import os

import zstandard

LEVEL = 3  # agent/repo/compression.py's DEFAULT_LEVEL: the floor at the level backupctl uses


def _compressed(data: bytes, compressor: zstandard.ZstdCompressor) -> int:
    return len(compressor.compress(data)) if data else 0


def _changed_pages(before: str, after: str, page: int) -> bytes:
    changed = bytearray()
    with open(before, "rb") as old, open(after, "rb") as new:
        while True:
            new_page = new.read(page)
            if not new_page:
                break
            if old.read(page) != new_page:
                changed += new_page
    return bytes(changed)


def weekly_floor(before: str, after: str, *, databases: tuple[str, ...] = ("base/cabinet.db",),
                 page: int = 8192) -> dict[str, int]:
    """{"new_files": bytes, "database_pages": bytes, "floor": their sum, "raw": uncompressed}."""
    compressor = zstandard.ZstdCompressor(level=LEVEL)
    new_files = database_pages = raw = 0
    for directory, _dirs, names in os.walk(after):
        for name in names:
            path = os.path.join(directory, name)
            relative = os.path.relpath(path, after)
            previous = os.path.join(before, relative)
            if relative in databases and os.path.exists(previous):
                pages = _changed_pages(previous, path, page)
                raw += len(pages)
                database_pages += _compressed(pages, compressor)
            elif not os.path.exists(previous) or not filecmp.cmp(previous, path, shallow=False):
                with open(path, "rb") as handle:
                    data = handle.read()
                raw += len(data)
                new_files += _compressed(data, compressor)
    return {"new_files": new_files, "database_pages": database_pages,
            "floor": new_files + database_pages, "raw": raw}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--page", type=int, default=8192)
    parser.add_argument("--database", action="append", default=None,
                        help="a database file, relative to the tree (default base/cabinet.db)")
    args = parser.parse_args()
    found = weekly_floor(args.before, args.after, databases=tuple(args.database or ["base/cabinet.db"]),
                         page=args.page)
    for key, value in found.items():
        print(f"{key}: {value / 2**20:.2f} MiB")


if __name__ == "__main__":
    main()

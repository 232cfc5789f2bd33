"""Files declared as databases are cut into page-aligned blocks: a week of scattered
page rewrites stores only the blocks that changed, and restores byte for byte."""

from __future__ import annotations

import hashlib
import random

from tests.integration.support import Backupctl

PAGE = 8192


def _page(rng: random.Random) -> bytes:
    words = [b"patient", b"ordonnance", b"tension", b"suivi", b"vaccin", b"glyc\xc3\xa9mie"]
    return b" ".join(rng.choice(words) + str(rng.randint(0, 99999)).encode() for _ in range(1200))[:PAGE].ljust(PAGE)


def _database(path, pages: int, rng: random.Random) -> None:
    with open(path, "wb") as handle:
        for _ in range(pages):
            handle.write(_page(rng))


def _rewrite_pages(path, share: float, rng: random.Random) -> None:
    pages = path.stat().st_size // PAGE
    with open(path, "r+b") as handle:
        for number in rng.sample(range(pages), int(pages * share)):
            handle.seek(number * PAGE)
            handle.write(_page(rng))


def _declare(bk: Backupctl, patterns: str) -> None:
    text = bk.config.read_text()
    bk.config.write_text(text.replace("exclude = []", f"exclude = []\ndatabases = {patterns}\n"
                                      f"database_chunk_size = 32768"))


def test_declared_database_weekly_page_rewrites_store_only_changed_blocks(tmp_path):
    plain = Backupctl(tmp_path / "cdc")
    declared = Backupctl(tmp_path / "declared")
    _declare(plain, '[]')  # turned off: "*.db" is declared by default
    _declare(declared, '["*.db"]')
    for world in (plain, declared):
        _database(world.src / "cabinet.db", 6400, random.Random(1))  # 50 MiB
        world.init()
        world.backup()
        _rewrite_pages(world.src / "cabinet.db", 0.01, random.Random(2))
    added_plain = plain.backup("--json")["bytes_added"]
    added_declared = declared.backup("--json")["bytes_added"]
    # 64 rewritten pages: content-defined chunks of about a megabyte store most of the
    # file again; 32 KiB blocks store at most 64 blocks of 32 KiB (2 MiB before compression).
    assert added_declared < 1.5 * 1024 * 1024, added_declared
    assert added_plain > 5 * added_declared, (added_plain, added_declared)

    target = tmp_path / "restored"
    declared.restore(target)
    restored = declared.restored(target, declared.src / "cabinet.db")
    original = (declared.src / "cabinet.db").read_bytes()
    assert hashlib.sha256(restored.read_bytes()).digest() == hashlib.sha256(original).digest()


def test_database_patterns_are_validated(tmp_path):
    bk = Backupctl(tmp_path / "bad")
    bk.config.write_text(bk.config.read_text().replace("exclude = []", "exclude = []\ndatabase_chunk_size = 10000"))
    result = bk.run("backup")
    assert result.returncode == 2 and "database_chunk_size" in result.stderr and "Traceback" not in result.stderr

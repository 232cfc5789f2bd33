"""agent.engine.backup: the walk's per-file decisions, made cheaply and the same as before."""

from __future__ import annotations

import itertools
import time

import pytest

import agent.engine.backup as backup_module
from agent.crypto.kdf import KdfParams
from agent.engine.backup import BackupEngine, BackupOptions, _matches_any, _Matcher
from agent.repo.repository import Repository
from agent.storage.memory import MemoryStorage
from tests.support.locked import run_locked

PATTERNS = [[], ["*.db"], ["*.tmp", "cache"], ["/srv/*/private", "*.db", "[!a]*.sqlite"], ["/srv/cabinet/x*"],
            ["*[*"]]
PATHS = [b"/srv/cabinet/cabinet.db", b"/srv/cabinet/cache", b"/srv/cabinet/lettre.txt", b"/srv/a/private",
         b"/srv/cabinet/xray.png", b"/srv/b.sqlite", b"/srv/a.sqlite", b"/srv/\xff\xfe.db", b"/srv/cabinet/x.tmp",
         b"/srv/a/b/private", b"/srv/cabinet/[x", b"/srv/a\nb.db"]


def test_the_compiled_matcher_decides_as_fnmatch_per_pattern():
    for patterns, path in itertools.product(PATTERNS, PATHS):
        name = path.rsplit(b"/", 1)[1]
        assert _Matcher(patterns)(path, name) == _matches_any(patterns, path, name), (patterns, path)


def _many_folders(root, folders: int, files: int) -> None:
    for d in range(folders):
        folder = root / f"folder{d:03d}"
        folder.mkdir(parents=True)
        for f in range(files):
            (folder / f"l{f}.txt").write_bytes(f"letter {d} {f} ".encode() * 20)


@pytest.mark.parametrize("bound", [100, 10**9])
def test_the_files_of_walked_folders_waiting_for_their_trees_are_bounded(tmp_path, monkeypatch, bound):
    """A slow file in the first folder (a database being streamed, say): the walk goes
    on, but holds at most MAX_FILES_PENDING files (plus the folder just walked) of
    folders whose trees wait behind it."""
    _many_folders(tmp_path / "src", 30, 50)
    (tmp_path / "src" / "folder000" / "cabinet.db").write_bytes(b"page" * 50_000)
    monkeypatch.setattr(backup_module, "MAX_FILES_PENDING", bound)
    real = BackupEngine._stream_file

    def slow(self, path, **kwargs):
        time.sleep(0.5)
        return real(self, path, **kwargs)

    monkeypatch.setattr(BackupEngine, "_stream_file", slow)
    repo = Repository.init(MemoryStorage(), b"phrase", cipher="xchacha20-poly1305", compression_level=1,
                           kdf_params=KdfParams(memory_kib=8192, iterations=1))
    engine = BackupEngine(repo, BackupOptions(paths=[str(tmp_path / "src")], databases=["*.db"]))
    report = run_locked(engine)
    assert report.files_new == 1501 and not report.warnings
    if bound == 100:
        assert engine.max_files_pending_seen <= 100 + 51
    else:  # without the bound the walk runs far ahead: the test can see the difference
        assert engine.max_files_pending_seen > 1000

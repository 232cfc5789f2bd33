"""The progress model (agent/engine/progress.py), driven by event sequences on a fake
clock: the total estimated from the previous run and refined by the walk, time left only
with a total, and the storage's silence said instead of a frozen rate (issue 18, point 2)."""

from __future__ import annotations

from agent.engine.progress import ProgressModel
from agent.storage.retry import RetryingStorage, RetryNotice
from agent.errors import TransientStorageError
from agent.storage.memory import MemoryStorage
from tests.support.locked import run_locked

MIB = 1024 * 1024


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_total_and_time_left_come_from_the_previous_run() -> None:
    clock = FakeClock()
    model = ProgressModel(monotonic=clock)
    model.start("backup")
    model.expect(files=100, bytes_total=100 * MIB)
    assert model.total() == (100, 100 * MIB) and not model.exact()
    clock.now += 10
    model.advance(files=25, bytes_done=25 * MIB)
    # 25 MiB in 10 s: the 75 MiB left take about 30 s.
    assert model.seconds_left() == 30.0
    line = model.line()
    assert "25 of ~100 files" in line and "25.0 MiB of ~100.0 MiB" in line
    assert "2.5 MiB/s" in line and "about 30 s left" in line


def test_the_walk_refines_the_estimate_and_makes_it_exact() -> None:
    clock = FakeClock()
    model = ProgressModel(monotonic=clock)
    model.start("backup")
    model.expect(files=10, bytes_total=10 * MIB)
    model.discovered(files=12, bytes_total=30 * MIB)  # more than last time: the estimate grows
    assert model.total() == (12, 30 * MIB) and not model.exact()
    model.walk_done()  # fewer files in the end than the previous run had: the walk is right
    model.expect(files=99, bytes_total=99 * MIB)
    assert model.total() == (12, 30 * MIB) and model.exact()
    clock.now += 5
    model.advance(files=6, bytes_done=15 * MIB)
    assert model.seconds_left() == 5.0
    assert "6 of 12 files, 15.0 MiB of 30.0 MiB" in model.line() and "5 s left" in model.line()
    assert "~" not in model.line() and "about" not in model.line()


def test_a_first_backup_shows_counts_and_rate_without_a_made_up_time_left() -> None:
    clock = FakeClock()
    model = ProgressModel(monotonic=clock)
    model.start("backup")
    model.discovered(files=3, bytes_total=8 * MIB)
    clock.now += 4
    model.advance(files=3, bytes_done=8 * MIB)
    assert model.total() is None and model.seconds_left() is None
    assert model.line() == "3 files, 8.0 MiB, 2.0 MiB/s"
    model.discovered(files=2, bytes_total=8 * MIB)
    model.walk_done()  # now the total is known: 8 of 16 MiB in 4 s, 4 s left
    assert model.total() == (5, 16 * MIB)
    assert model.line() == "3 of 5 files, 8.0 MiB of 16.0 MiB, 2.0 MiB/s, 4 s left"


def test_a_silent_storage_replaces_the_rate_with_its_retries() -> None:
    clock = FakeClock()
    model = ProgressModel(monotonic=clock)
    model.start("backup")
    model.expect(files=10, bytes_total=10 * MIB)
    clock.now += 3
    model.advance(files=1, bytes_done=MIB)
    model.retrying("S3 server", retry=3, delay_s=7.2)
    assert model.line() == "1 of ~10 files, 1.0 MiB of ~10.0 MiB, S3 server not answering, retry 3 in 8 s"
    clock.now += 5
    assert model.retry_text() == "S3 server not answering, retry 3 in 3 s"
    clock.now += 3
    assert model.retry_text() == "S3 server not answering, retry 3 under way"
    model.answered()
    assert model.retry_text() is None and "KiB/s" in model.line()


def test_the_retry_loop_tells_its_observer_of_each_wait_and_of_the_answer() -> None:
    class Flaky(MemoryStorage):
        failures = 2

        def read(self, name: str, *, max_size: int | None = None) -> bytes:
            if self.failures:
                self.failures -= 1
                raise TransientStorageError("S3 http://x bucket b: provider error 503 while reading x")
            return super().read(name, max_size=max_size)

    inner = Flaky()
    inner.write("x", b"data")
    sleeps: list[float] = []
    storage = RetryingStorage(inner, attempts=5, base_delay=1.0, sleep=sleeps.append, label="S3 server")
    notices: list[RetryNotice] = []
    stop = storage.watch(notices.append)
    assert storage.read("x") == b"data"
    assert [(n.retry, n.answered) for n in notices] == [(1, False), (2, False), (0, True)]
    assert [n.delay_s for n in notices[:2]] == sleeps and all(n.label == "S3 server" for n in notices)
    assert "503" in notices[0].problem
    stop()
    inner.failures = 1
    storage.read("x")
    assert len(notices) == 3  # no longer watching


def test_the_files_cache_gives_the_previous_run_totals(tmp_path) -> None:
    import os

    from agent.state.files_cache import FilesCache

    cache = FilesCache(str(tmp_path / "files.sqlite"))
    assert cache.previous_totals() is None  # the first run: nothing to estimate from
    for name, size in (("a", 10), ("b", 32)):
        path = tmp_path / name
        path.write_bytes(b"x" * size)
        cache.record(os.fsencode(path), os.stat(path), "0" * 64, [])
    cache.commit()
    cache.close()
    again = FilesCache(str(tmp_path / "files.sqlite"))
    assert again.previous_totals() == (2, 42)
    again.close()


class Recorder:
    """A Progress that keeps the backup engine's events, and a model fed with them."""

    def __init__(self) -> None:
        self.expected: tuple[int, int] | None = None
        self.model = ProgressModel()

    def start(self, phase: str, total_bytes: int | None = None) -> None:
        self.model.start(phase, total_bytes)

    def advance(self, *, files: int = 0, bytes_done: int = 0) -> None:
        self.model.advance(files=files, bytes_done=bytes_done)

    def finish(self) -> None:
        pass

    def expect(self, *, files: int, bytes_total: int) -> None:
        self.expected = (files, bytes_total)
        self.model.expect(files=files, bytes_total=bytes_total)

    def discovered(self, *, files: int = 0, bytes_total: int = 0) -> None:
        self.model.discovered(files=files, bytes_total=bytes_total)

    def walk_done(self) -> None:
        self.model.walk_done()


def test_the_backup_expects_what_the_previous_run_held_and_ends_exact(tmp_path) -> None:
    import socket

    from agent.crypto.kdf import KdfParams
    from agent.engine.backup import BackupEngine, BackupOptions
    from agent.state.files_cache import FilesCache
    from agent.repo.repository import Repository

    repo = Repository.init(MemoryStorage(), b"phrase", cipher="xchacha20-poly1305", compression_level=1,
                           kdf_params=KdfParams(memory_kib=8192, iterations=1, parallelism=1))
    source = tmp_path / "src"
    source.mkdir()
    for number in range(5):
        (source / f"f{number}").write_bytes(b"x" * (1000 * (number + 1)))  # 15,000 bytes in 5 files
    options = BackupOptions(paths=[str(source)], host=socket.gethostname())

    first = Recorder()  # the very first backup: nothing to expect, exact at the end
    cache = FilesCache(str(tmp_path / "cache.sqlite"))
    snapshot = run_locked(BackupEngine(repo, options, files_cache=cache, progress=first)).snapshot
    cache.close()
    assert first.expected is None
    assert first.model.exact() and first.model.total() == (5, 15_000)

    (source / "f5").write_bytes(b"y" * 5000)
    second = Recorder()  # from the files cache: what the first run saw
    cache = FilesCache(str(tmp_path / "cache.sqlite"))
    run_locked(BackupEngine(repo, options, files_cache=cache, progress=second))
    cache.close()
    assert second.expected == (5, 15_000)
    assert second.model.total() == (6, 20_000)

    third = Recorder()  # no files cache (a new state directory): from the snapshot's summary
    with_ledger = BackupOptions(paths=[str(source)], host=socket.gethostname(),
                                previous_snapshots=["00" * 16, snapshot.id.hex()])  # the unreadable one is skipped
    run_locked(BackupEngine(repo, with_ledger, files_cache=FilesCache(str(tmp_path / "new.sqlite")), progress=third))
    assert third.expected == (5, 15_000)

    other_host = Recorder()  # another machine's snapshot says nothing of this one's folders
    elsewhere = BackupOptions(paths=[str(source)], host="autre-poste", previous_snapshots=[snapshot.id.hex()])
    run_locked(BackupEngine(repo, elsewhere, progress=other_host))
    assert other_host.expected is None

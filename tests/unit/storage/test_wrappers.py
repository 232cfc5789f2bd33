"""The retry and throttle wrappers, with injected clocks (no timed assertions)."""

from __future__ import annotations

import pytest

from agent.errors import StorageError, TransientStorageError
from agent.storage.memory import MemoryStorage
from agent.storage.retry import RetryingStorage
from agent.storage.throttle import ThrottledStorage


class Flaky(MemoryStorage):
    """Fails the first `failures` calls of each kind with a transient error."""

    def __init__(self, failures: int, *, land_before_failing: bool = False) -> None:
        super().__init__()
        self.failures = failures
        self.land_before_failing = land_before_failing
        self.calls = 0

    def write(self, name, data, *, exclusive=False, **extra):
        self.calls += 1
        if self.calls <= self.failures:
            if self.land_before_failing:
                super().write(name, data, exclusive=exclusive)  # stored, but the answer is lost
            raise TransientStorageError("503 SlowDown")
        super().write(name, data, exclusive=exclusive)


def test_transient_failures_are_retried_with_growing_jittered_delays():
    sleeps: list[float] = []
    storage = RetryingStorage(Flaky(3), attempts=5, base_delay=1.0, max_delay=3.0, sleep=sleeps.append)
    storage.write("data/aa/x", b"payload")
    assert storage.read("data/aa/x") == b"payload"
    assert storage.retries == 3 and len(sleeps) == 3
    for attempt, delay in enumerate(sleeps, start=1):
        assert 0 <= delay <= min(3.0, 2 ** (attempt - 1))  # full jitter under the capped exponential


def test_retries_stop_after_the_budget_and_the_error_surfaces():
    sleeps: list[float] = []
    storage = RetryingStorage(Flaky(10), attempts=3, sleep=sleeps.append)
    with pytest.raises(TransientStorageError):
        storage.write("data/aa/x", b"payload")
    assert len(sleeps) == 2
    assert not storage.exists("data/aa/x")


def test_permanent_errors_are_not_retried():
    sleeps: list[float] = []
    inner = MemoryStorage()
    inner.write("config", b"first")
    storage = RetryingStorage(inner, attempts=5, sleep=sleeps.append)
    with pytest.raises(StorageError):
        storage.write("config", b"second", exclusive=True)
    assert sleeps == [] and inner.read("config") == b"first"


def test_exclusive_write_whose_answer_was_lost_counts_as_done_only_if_the_bytes_are_ours():
    storage = RetryingStorage(Flaky(1, land_before_failing=True), attempts=3, sleep=lambda _s: None)
    storage.write("config", b"ours", exclusive=True)
    assert storage.read("config") == b"ours"

    other = Flaky(1, land_before_failing=False)
    other.objects["config"] = b"someone else's"
    with pytest.raises(StorageError):
        RetryingStorage(other, attempts=3, sleep=lambda _s: None).write("config", b"ours", exclusive=True)
    assert other.read("config") == b"someone else's"


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept += seconds
        self.now += seconds


def test_bandwidth_cap_paces_transfers_to_the_configured_rate():
    clock = FakeClock()
    storage = ThrottledStorage(MemoryStorage(), bandwidth_limit_kib=100,
                               monotonic=clock.monotonic, sleep=clock.sleep)
    payload = b"x" * (1024 * 1024)  # 1 MiB at 100 KiB/s: about 10 s, less the 1 s burst
    storage.write("data/aa/x", payload)
    storage.read("data/aa/x")
    moved = 2 * len(payload)
    expected = moved / (100 * 1024) - 1.0  # one second of burst allowance
    assert expected - 0.01 <= clock.slept <= expected + 0.01


def test_no_cap_means_no_waiting():
    clock = FakeClock()
    storage = ThrottledStorage(MemoryStorage(), bandwidth_limit_kib=0, monotonic=clock.monotonic, sleep=clock.sleep)
    storage.write("data/aa/x", b"x" * 10_000_000)
    assert clock.slept == 0

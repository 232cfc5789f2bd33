"""The optional capabilities of a storage (agent/storage/base.py) through the wrappers.

A wrapper exposes exactly the capabilities of the storage it wraps, each call of one goes
through its retries (retry.py) and its slots (throttle.py), and nothing else of the backend
is reachable through it. The S3 backend knows no repository names: the caller says with
each write what differs.
"""

from __future__ import annotations

import ast
import datetime as dt
import itertools
from pathlib import Path

import pytest

from agent.errors import ObjectExists, ObjectNotFound, StorageError, TransientStorageError
from agent.repo import layout
from agent.storage import open_storage
from agent.storage.base import (CAPABILITIES, NetworkStorage, ObjectLocking, Probing, ServerClock,
                                VersionCleanup)
from agent.storage.memory import MemoryStorage
from agent.storage.options import S3Options
from agent.storage.retry import RetryingStorage
from agent.storage.throttle import ThrottledStorage
from agent.storage.verification import Verification

STORAGE = Path(__file__).resolve().parents[3] / "agent" / "storage"
UNTIL = dt.datetime(2027, 1, 1, tzinfo=dt.timezone.utc)


class _Failing:
    """Fails the first call of each capability method with a transient error."""

    def __init__(self) -> None:
        super().__init__()  # the MemoryStorage it is mixed into
        self.calls: dict[str, int] = {}

    def _once(self, method: str) -> None:
        self.calls[method] = self.calls.get(method, 0) + 1
        if self.calls[method] == 1:
            raise TransientStorageError(f"503 SlowDown during {method}")


class _Locking(_Failing):
    object_lock_enabled = True

    def __init__(self) -> None:
        super().__init__()
        self.until: dict[str, dt.datetime] = {}

    def retention(self, name):
        self._once("retention")
        return self.until.get(name)

    def extend_retention(self, name, until):
        self._once("extend_retention")
        self.until[name] = max(self.until.get(name, until), until)


class _Probing(_Failing):
    facts: dict | None = None

    def probe(self):
        self._once("probe")
        return {"endpoint": "here", "bucket": "b"}

    def require_object_lock(self, facts):
        if facts.get("object_lock") != "Enabled":
            raise StorageError("no object lock on this bucket")

    def verification(self):
        return Verification("read-back", "auto", "not probed")

    def use_probe_facts(self, facts):
        self.facts = facts

    def record_probes_with(self, record):
        self.record = record


class _Cleanup(_Failing):
    def cleanup(self, *, dry_run, older_than=dt.timedelta(days=1)):
        self._once("cleanup")
        return {"deleted_versions": 2, "dry_run": dry_run}


class _Clock(_Failing):
    def clock_skew(self):
        return dt.timedelta(seconds=3)


class _Network(_Failing):
    max_concurrency = 7


MIXINS = {ObjectLocking: _Locking, Probing: _Probing, VersionCleanup: _Cleanup, ServerClock: _Clock,
          NetworkStorage: _Network}


def _backend(capabilities: tuple[type, ...]) -> MemoryStorage:
    """A MemoryStorage with exactly `capabilities`."""
    return type("Backend", (*(MIXINS[c] for c in capabilities), MemoryStorage), {})()


WRAPPINGS = {
    "retry": lambda inner: RetryingStorage(inner, attempts=3, sleep=lambda _s: None),
    "throttle": lambda inner: ThrottledStorage(inner, max_concurrency=1),
    "retry+throttle": lambda inner: RetryingStorage(ThrottledStorage(inner, max_concurrency=1), attempts=3,
                                                    sleep=lambda _s: None),
}
SUBSETS = [()] + [(c,) for c in CAPABILITIES] + [(ObjectLocking, ServerClock, NetworkStorage), CAPABILITIES]


def _has(storage) -> set[type]:
    return {c for c in CAPABILITIES if isinstance(storage, c)}


@pytest.mark.parametrize("wrapping", sorted(WRAPPINGS))
@pytest.mark.parametrize("capabilities", SUBSETS, ids=lambda s: "+".join(c.__name__ for c in s) or "none")
def test_a_wrapper_has_exactly_the_capabilities_of_what_it_wraps(wrapping, capabilities):
    backend = _backend(capabilities)
    assert _has(backend) == set(capabilities)
    wrapped = WRAPPINGS[wrapping](backend)
    assert _has(wrapped) == set(capabilities)
    assert isinstance(wrapped, RetryingStorage if wrapping.startswith("retry") else ThrottledStorage)


def test_nothing_of_the_backend_is_reachable_around_the_wrapper():
    wrapped = RetryingStorage(ThrottledStorage(MemoryStorage()))
    for name in ("objects", "extend_retention", "retention", "probe", "cleanup", "clock_skew", "max_concurrency"):
        assert not hasattr(wrapped, name), name


def test_s3_as_opened_has_every_capability_through_its_wrappers():
    options = S3Options(bucket="bucket", endpoint="http://127.0.0.1:9", region="us-east-1", max_concurrency=6)
    storage = open_storage("s3://bucket", s3=options)  # no request is made until one is asked for
    assert isinstance(storage, RetryingStorage) and isinstance(storage.inner, ThrottledStorage)
    assert _has(storage) == _has(storage.inner) == _has(storage.inner.inner) == set(CAPABILITIES)
    assert isinstance(storage, NetworkStorage) and storage.max_concurrency == 6
    assert isinstance(storage, ObjectLocking) and storage.object_lock_enabled is False


def test_every_capability_call_is_retried_through_both_wrappers():
    backend = _backend(CAPABILITIES)
    storage = WRAPPINGS["retry+throttle"](backend)
    storage.extend_retention("snapshots/ab", UNTIL)
    assert storage.retention("snapshots/ab") == UNTIL
    assert storage.probe() == {"endpoint": "here", "bucket": "b"}
    assert storage.cleanup(dry_run=True) == {"deleted_versions": 2, "dry_run": True}
    assert backend.calls == {"extend_retention": 2, "retention": 2, "probe": 2, "cleanup": 2}
    assert storage.retries == 4
    # What makes no request is passed on as it is.
    assert storage.clock_skew() == dt.timedelta(seconds=3)
    assert storage.max_concurrency == 7
    assert storage.verification().mode == "read-back"
    storage.use_probe_facts({"endpoint": "here"})
    assert backend.facts == {"endpoint": "here"}
    with pytest.raises(StorageError, match="no object lock"):
        storage.require_object_lock({"object_lock": "Disabled"})


def test_capability_requests_wait_for_a_slot_of_the_throttle():
    seen = []

    class Watched(_Locking, MemoryStorage):
        def extend_retention(self, name, until):
            seen.append(throttled._slots.acquire(blocking=False))  # the only slot is ours meanwhile
            self.until[name] = until

    backend = Watched()
    throttled = ThrottledStorage(backend, max_concurrency=1)
    throttled.extend_retention("data/aa/x", UNTIL)
    assert seen == [False]
    assert throttled._slots.acquire(blocking=False)  # and given back


def test_an_exclusive_write_over_an_object_raises_object_exists_at_once():
    sleeps: list[float] = []
    backend = MemoryStorage()
    backend.write("config", b"first", exclusive=True)
    storage = RetryingStorage(ThrottledStorage(backend), attempts=5, sleep=sleeps.append)
    with pytest.raises(ObjectExists):
        storage.write("config", b"second", exclusive=True)
    assert sleeps == [] and storage.retries == 0 and backend.read("config") == b"first"


def test_a_permanent_failure_after_a_transient_one_is_raised_as_it_is():
    """Only ObjectExists after a lost answer means "perhaps ours": any other permanent error
    of a repeated exclusive write is what the caller sees (not a read of the object)."""

    class Refusing(MemoryStorage):
        attempts = 0

        def write(self, name, data, **options):
            self.attempts += 1
            if self.attempts == 1:
                raise TransientStorageError("connection reset")
            raise StorageError("access denied while writing")

    storage = RetryingStorage(Refusing(), attempts=5, sleep=lambda _s: None)
    with pytest.raises(StorageError, match="access denied") as raised:
        storage.write("snapshots/ab", b"x", exclusive=True, random_name=True)
    assert not isinstance(raised.value, ObjectNotFound)


def test_the_write_options_reach_the_backend_through_the_wrappers():
    written = []

    class Recording(MemoryStorage):
        def write(self, name, data, **options):
            written.append((name, options))
            super().write(name, data, **options)

        def delete(self, name, **options):
            written.append((name, options))
            super().delete(name, **options)

    storage = WRAPPINGS["retry+throttle"](Recording())
    storage.write("a", b"1", exclusive=True, random_name=True)
    storage.write("b", b"2", ephemeral=True)
    storage.delete("b", ephemeral=True)
    assert written == [("a", {"exclusive": True, "random_name": True, "ephemeral": False}),
                       ("b", {"exclusive": False, "random_name": False, "ephemeral": True}),
                       ("b", {"ephemeral": True})]


def _string_literals(path: Path) -> list[str]:
    """The string constants of a module, its docstrings left out."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    return [node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


@pytest.mark.parametrize("module", sorted(p.name for p in STORAGE.glob("*.py")))
def test_the_storage_layer_names_no_repository_object(module):
    """What an object is to the repository (its config, a lock) is said by the caller with
    each write (agent/repo), never recognised by name in a backend."""
    names = (layout.CONFIG, layout.KEYS_PREFIX, layout.DATA_PREFIX, layout.INDEX_PREFIX, layout.SNAPSHOTS_PREFIX,
             layout.LOCKS_PREFIX, layout.REPORTS_PREFIX, layout.RESCUE_PREFIX)
    found = [text for text, name in itertools.product(_string_literals(STORAGE / module), names)
             if text == name or (name.endswith("/") and name in text)]
    assert found == []

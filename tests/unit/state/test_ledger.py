"""The snapshot ledger (agent/state/ledger.py): the pure comparison, and the file."""

from __future__ import annotations

import threading

from agent.state import ledger
from agent.state.ledger import Ledger

A, B, C = "aa" * 16, "bb" * 16, "cc" * 16
T1, T2, T3 = "2026-01-05T10:00:00+00:00", "2026-02-02T10:00:00+00:00", "2026-03-02T10:00:00+00:00"


def test_an_empty_ledger_finds_nothing_and_adopts_the_listing() -> None:
    assert ledger.compare({}, {A, B}).ok
    adopted = ledger.adopt({}, {A: T1, B: T2})
    assert adopted["snapshots"] == {A: T1, B: T2}


def test_a_snapshot_gone_without_a_prune_is_vanished_oldest_first() -> None:
    doc = {"snapshots": {A: T1, B: T2, C: T3}}
    findings = ledger.compare(doc, {A})
    assert findings.vanished == [(B, T2), (C, T3)]
    assert not findings.ok
    assert any("rolled back" in line and B[:8] in line for line in findings.problems())


def test_a_snapshot_forgotten_by_prune_is_not_vanished_but_is_replayed_if_back() -> None:
    doc = {"snapshots": {B: T2}, "forgotten": {A: T2}}
    assert ledger.compare(doc, {B}).ok
    findings = ledger.compare(doc, {A, B})
    assert findings.replayed == [(A, T2)] and not findings.vanished
    assert "is back" in findings.problems()[0]
    assert A not in ledger.adopt(doc, {A: T1, B: T2})["snapshots"], "a replayed snapshot must not be adopted"


def test_a_prune_killed_before_or_after_deleting_is_not_an_attack() -> None:
    doc = {"snapshots": {A: T1, B: T2}, "forgetting": {A: T3}}
    assert ledger.compare(doc, {A, B}).ok  # killed before deleting A
    assert ledger.compare(doc, {B}).ok  # killed after deleting A
    settled = ledger.settle(doc, {B}, T3)
    assert settled["forgotten"] == {A: T3} and A not in settled["snapshots"] and settled["forgetting"] == {}
    settled = ledger.settle(doc, {A, B}, T3)
    assert settled["snapshots"] == {A: T1, B: T2} and settled["forgotten"] == {}
    assert ledger.compare(settled, {B}).vanished == [(A, T1)], "once settled, A deleted by others is vanished"


def test_accept_makes_the_listing_the_reference() -> None:
    fresh = ledger.accept({B: T2})
    assert ledger.compare(fresh, {B}).ok
    assert ledger.compare(fresh, set()).vanished == [(B, T2)]


def test_malformed_sections_read_as_empty() -> None:
    assert ledger.compare({"snapshots": ["not", "a", "dict"], "forgotten": 3}, {A}).ok


def test_the_file_keeps_saves_forgets_and_settles(tmp_path) -> None:
    repo_id = bytes(range(16))
    book = Ledger(str(tmp_path), repo_id)
    assert book.verify({A: T1}).ok
    book.note_saved(B, T2)
    assert book.verify({A: T1}).vanished == [(B, T2)]
    book.note_forgetting([A], T3)
    book.note_forgotten([A], T3)
    assert book.verify({B: T2}).ok
    assert book.verify({A: T1, B: T2}).replayed == [(A, T3)]
    accepted = book.accept({A: T1, B: T2})
    assert accepted.replayed == [(A, T3)]
    assert book.verify({A: T1, B: T2}).ok
    assert (tmp_path / "ledger" / f"{repo_id.hex()}.json").stat().st_mode & 0o077 == 0


def test_no_state_dir_keeps_nothing() -> None:
    book = Ledger(None, b"\0" * 16)
    book.note_saved(A, T1)
    assert book.verify({}).ok


def test_concurrent_writers_all_land(tmp_path) -> None:
    """Backups finishing together each add their snapshot; none is lost to a race."""
    book = Ledger(str(tmp_path), b"\1" * 16)
    ids = [f"{i:032x}" for i in range(40)]
    threads = [threading.Thread(target=book.note_saved, args=(sid, T1)) for sid in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(book.load()["snapshots"]) == set(ids)


def test_an_unwritable_ledger_still_compares_and_says_why(tmp_path) -> None:
    """Run as root, permissions do not stop writes: a file in the way of the folder does."""
    (tmp_path / "file").write_text("not a folder")
    blocked = Ledger(str(tmp_path / "file"), b"\2" * 16)
    blocked.note_saved(A, T1)  # does not raise: the backup it follows is done
    assert blocked.write_problem and "cannot be opened" in blocked.write_problem
    assert blocked.verify({A: T1}).ok

"""agent.state.audit: a hash-chained, append-only trail; edits and deletions are detected;
records older than six months are purged while the chain stays verifiable."""

from __future__ import annotations

import datetime as dt
import json
import os
import threading

import pytest

from agent import clock
from agent.state.audit import GENESIS, RETENTION, AuditTrail
from agent.errors import IntegrityError

NOW = dt.datetime(2026, 11, 23, 9, tzinfo=dt.timezone.utc)


@pytest.fixture(autouse=True)
def frozen():
    clock.freeze(NOW)
    yield
    clock.freeze(None)


def trail_with(tmp_path, n: int) -> AuditTrail:
    trail = AuditTrail(str(tmp_path))
    for i in range(n):
        trail.append("backup", repository="main", snapshot=f"{i:032x}")
    return trail


def lines(trail: AuditTrail) -> list[str]:
    with open(trail.path, encoding="utf-8") as handle:
        return handle.read().splitlines()


def test_records_are_chained_private_and_verified(tmp_path):
    trail = trail_with(tmp_path, 3)
    trail.append("restore", repository="main", snapshot="ab", target="/tmp/r", includes=["Dupont*"])
    records = [json.loads(line) for line in lines(trail)]
    assert records[0]["prev"] == GENESIS and [r["action"] for r in records] == ["backup"] * 3 + ["restore"]
    assert {"time", "user", "host", "pid", "action", "prev"} <= set(records[3])
    assert records[3]["target"] == "/tmp/r" and records[3]["includes"] == ["Dupont*"]
    assert oct(os.stat(trail.path).st_mode & 0o777) == "0o600"
    assert trail.verify()["records"] == 4


@pytest.mark.parametrize("damage", ["edit-first", "edit-middle", "edit-last", "delete-middle", "delete-first",
                                    "delete-last", "insert", "swap"])
def test_any_edit_insertion_or_deletion_is_detected(tmp_path, damage):
    trail = trail_with(tmp_path, 5)
    text = lines(trail)
    if damage == "edit-first":
        text[0] = text[0].replace('"backup"', '"check"')
    elif damage == "edit-middle":
        text[2] = text[2].replace('"main"', '"other"')
    elif damage == "edit-last":
        text[4] = text[4].replace('"main"', '"other"')
    elif damage == "delete-middle":
        del text[2]
    elif damage == "delete-first":
        del text[0]
    elif damage == "delete-last":
        del text[4]
    elif damage == "insert":
        text.insert(3, text[1])
    else:
        text[1], text[2] = text[2], text[1]
    with open(trail.path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(text) + "\n")
    with pytest.raises(IntegrityError, match="audit trail"):
        trail.verify()


def test_records_older_than_six_months_are_purged_and_the_chain_still_verifies(tmp_path):
    clock.freeze(NOW - RETENTION - dt.timedelta(days=30))
    trail = trail_with(tmp_path, 3)  # seven months old
    clock.freeze(NOW - dt.timedelta(days=10))
    trail.append("backup", repository="main", snapshot="recent")
    clock.freeze(NOW)
    trail.append("prune", repository="main")
    records = [json.loads(line) for line in lines(trail)]
    assert [r["action"] for r in records] == ["audit_purged", "backup", "prune"]
    assert records[0]["purged_records"] == 3 and records[1]["snapshot"] == "recent"
    assert trail.verify()["records"] == 3
    # Purged again later: the marker itself goes, a new one takes its place.
    clock.freeze(NOW + RETENTION + dt.timedelta(days=1))
    trail.append("check", repository="main")
    assert [json.loads(line)["action"] for line in lines(trail)] == ["audit_purged", "check"]
    assert trail.verify()["records"] == 2


def test_concurrent_appends_keep_one_chain(tmp_path):
    trail = AuditTrail(str(tmp_path))

    def writer(k):
        for i in range(20):
            AuditTrail(str(tmp_path)).append("backup", writer=k, i=i)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert trail.verify()["records"] == 80

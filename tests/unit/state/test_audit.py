"""agent.state.audit: a hash-chained, append-only trail; edits and deletions are detected;
records older than six months are purged while the chain stays verifiable."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
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


def _forged(after: str, action: str = "restore") -> str:
    """A record that names `after` as the line before it, as its writer would have."""
    return json.dumps({"time": NOW.isoformat(), "user": "x", "host": "h", "pid": 1, "action": action,
                       "prev": hashlib.sha256(after.encode()).hexdigest()}, sort_keys=True)


def _edit(line: str) -> str:
    return line.replace('"main"', '"other"')


# What an alteration of a trail of seven records (lines 1 to 7) does to it, and how
# `verify` names it: the line edited or inserted, the lines swapped, or the lines records were deleted between.
ALTERATIONS = {
    "edit-first": (lambda t: [_edit(t[0]), *t[1:]], "line 1: it was changed (line 2 does not follow it)"),
    "edit-middle": (lambda t: [*t[:3], _edit(t[3]), *t[4:]], "line 4: it was changed (line 5 does not follow it)"),
    "edit-last": (lambda t: [*t[:6], _edit(t[6])], "line 7: the last record was changed"),
    "edit-prev-only": (lambda t: [*t[:3], t[3].replace('"prev": "', '"prev": "0'), *t[4:]],
                       "line 4: it was changed, its own link too (it does not follow line 3, nor does line 5 "
                       "follow it; or lines 3 and 4 both were changed)"),
    "insert-first": (lambda t: [t[2], *t], "line 1: it was inserted (line 2 is the first record written)"),
    "insert-middle": (lambda t: [*t[:4], t[1], *t[4:]], "line 5: it was inserted (line 6 follows line 4)"),
    "insert-middle-forged": (lambda t: [*t[:4], _forged(t[3]), *t[4:]],
                             "line 5: it was inserted (line 6 names the same line before it)"),
    "insert-last": (lambda t: [*t, t[1]], "line 8: it was inserted (it does not follow line 7)"),
    "append-forged": (lambda t: [*t, _forged(t[6])], "line 8: it was added after the last record written (line 7)"),
    "append-two-forged": (lambda t: [*t, _forged(t[6]), _forged(_forged(t[6]))],
                          "lines 8 to 9: they were added after the last record written (line 7)"),
    "delete-first": (lambda t: t[1:], "line 1: the trail does not start at its beginning nor at a purge record "
                                      "(records before it were deleted)"),
    "delete-middle": (lambda t: [*t[:3], *t[4:]], "between line 3 and line 4: 1 record(s) were deleted"),
    "delete-two": (lambda t: [*t[:3], *t[5:]], "between line 3 and line 4: 2 record(s) were deleted"),
    "delete-last": (lambda t: t[:6], "after line 6: the last 1 record(s) were deleted (the trail had 7 lines)"),
    "delete-all": (lambda t: [], "all 7 record(s) were deleted (the file is empty or gone)"),
    "swap": (lambda t: [t[0], t[2], t[1], *t[3:]], "lines 2 and 3: they were swapped"),
    "swap-later": (lambda t: [*t[:4], t[5], t[4], *t[6:]], "lines 5 and 6: they were swapped"),
    "swap-first": (lambda t: [t[1], t[0], *t[2:]], "lines 1 and 2: they were swapped"),
    "swap-last": (lambda t: [*t[:5], t[6], t[5]], "lines 6 and 7: they were swapped"),
}


@pytest.mark.parametrize("damage", ALTERATIONS)
def test_an_edit_insertion_or_deletion_is_named_by_its_line(tmp_path, damage):
    trail = trail_with(tmp_path, 7)
    alter, named = ALTERATIONS[damage]
    altered = alter(lines(trail))
    with open(trail.path, "w", encoding="utf-8") as handle:
        handle.write("".join(line + "\n" for line in altered))
    with pytest.raises(IntegrityError) as raised:
        trail.verify()
    assert str(raised.value).startswith(f"audit trail {trail.path}{':' if damage == 'delete-all' else ','} {named}"), \
        str(raised.value)


def test_a_removed_trail_whose_head_remains_is_detected(tmp_path):
    trail = trail_with(tmp_path, 3)
    os.unlink(trail.path)
    with pytest.raises(IntegrityError, match="all 3 record"):
        trail.verify()
    os.unlink(trail.head_path)  # a machine that never wrote a record
    assert trail.verify() == {"records": 0, "first": None, "last": None}


def test_without_the_head_file_an_edit_and_a_deletion_look_alike(tmp_path):
    """A trail whose head file is gone (copied alone, say) still locates the alteration."""
    trail = trail_with(tmp_path, 7)
    os.unlink(trail.head_path)
    text = lines(trail)
    with open(trail.path, "w", encoding="utf-8") as handle:
        handle.write("\n".join([*text[:3], _edit(text[3]), *text[4:]]) + "\n")
    with pytest.raises(IntegrityError, match=re.escape("line 4: it was changed, or records were deleted after it")):
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

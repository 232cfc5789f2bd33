"""A snapshot forged with a stolen key whose tree names one folder twice at each of 30
levels (61 stored entries, 2**31 once expanded): every command that walks a whole tree
ends in one line and exit 13, at once (each run is given 120 s; path by path, they would
run for days), and the ordinary snapshot beside it still lists.
"""

from __future__ import annotations

import json

import datetime as dt
import hashlib

import pytest

from agent.repo.pack import BLOB_DATA, BLOB_TREE
from agent.repo.repository import Repository
from agent.repo.snapshot import Snapshot
from agent.repo.tree import DIR, FILE, Node, encode_tree
from agent.storage import open_storage

from .support import PASSPHRASE, Backupctl, assert_error, write

NOTE = b"ordonnance : amoxicilline 1 g\n"
PROMPT = 120  # seconds; the exponential walks did not finish in hours


def _forge(bk: Backupctl) -> str:
    """What someone holding the key can write: an authentic snapshot of a crafted DAG."""
    repo = Repository.open(open_storage(f"file://{bk.repo}"), PASSPHRASE.encode("utf-8"))
    repo.load_index()
    chunk, _ = repo.store_blob(BLOB_DATA, NOTE)
    level = [Node(name=b"note.txt", type=FILE, mode=0o640, uid=0, gid=0, mtime_ns=10**18, size=len(NOTE),
                  chunks=[chunk], sha256=hashlib.sha256(NOTE).hexdigest())]
    for _ in range(30):
        subtree, _ = repo.store_blob(BLOB_TREE, encode_tree(level))
        level = [Node(name=name, type=DIR, mode=0o755, uid=0, gid=0, mtime_ns=10**18, subtree=subtree)
                 for name in (b"a", b"b")]
    tree, _ = repo.store_blob(BLOB_TREE, encode_tree(level))
    repo.flush()
    snapshot = Snapshot(time=dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1), host="h", user="u",
                        paths=["/"], tree=tree)
    return repo.save_snapshot(snapshot).hex()


@pytest.fixture(scope="module")
def forged(tmp_path_factory) -> tuple[Backupctl, str]:
    bk = Backupctl(tmp_path_factory.mktemp("crafted"))
    write(bk.src / "courriers" / "lettre.txt", "Cher confrère,\n")
    bk.init()
    bk.backup()
    return bk, _forge(bk)


def test_restore_test_of_a_crafted_snapshot_fails_in_one_line(forged, tmp_path):
    bk, snapshot = forged
    result = bk.run("restore-test", "--snapshot", snapshot, "--sample", "3", "--scratch-dir", str(tmp_path / "s"),
                    timeout=PROMPT)
    assert_error(result, 13, f"restore test failed: snapshot {snapshot[:8]}", "would expand to 3221225470 entries "
                 "from 61 stored", "backupctl check")
    assert not (tmp_path / "s").exists()
    # Recorded as a failed test: status says so, and the audit trail has it.
    records = json.loads(next((bk.state / "records").glob("*.json")).read_text())
    assert records["restore_test"]["ok"] is False and records["restore_test"]["snapshot"] == snapshot
    trail = [json.loads(line) for line in (bk.state / "audit.jsonl").read_text().splitlines()]
    assert trail[-1]["action"] == "restore_test" and trail[-1]["ok"] is False


def test_ls_recursive_and_find_refuse_a_crafted_snapshot_in_one_line(forged):
    bk, snapshot = forged
    assert_error(bk.run("ls", snapshot, "/", "--recursive", timeout=PROMPT), 13, "would expand to 3221225470")
    assert_error(bk.run("find", "note.txt", timeout=PROMPT), 13, "would expand to 3221225470")
    assert_error(bk.run("find", "a/*/note.txt", timeout=PROMPT), 13, "would expand to 3221225470")
    top = bk.ok_json("ls", snapshot, "/a/b", timeout=PROMPT)  # one folder at a time still works
    assert [e["path"] for e in top["entries"]] == ["/a/b/a", "/a/b/b"]


def test_check_names_the_crafted_snapshot_and_exits_13(forged):
    bk, snapshot = forged
    result = bk.run("check", "--json", timeout=PROMPT)
    assert result.returncode == 13 and "Traceback" not in result.stderr, str(result)
    errors = result.json()["errors"]
    assert any(e.startswith(f"snapshot {snapshot[:8]}") and "would expand to 3221225470 entries from 61 stored" in e
               for e in errors), errors

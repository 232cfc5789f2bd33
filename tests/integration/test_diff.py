"""`backupctl diff SNAPSHOT_A SNAPSHOT_B [--json]`, the real command: what a person reads,
what a script parses (valid UTF-8 whatever the names), exit 0 whether or not anything
differs, and a snapshot that does not exist said in one line (exit 2), no traceback."""

from __future__ import annotations

import os
import subprocess

import pytest

from .support import Backupctl, assert_error, base_env, write

NON_UTF8 = b"r\xe9sum\xe9.txt"  # latin-1 bytes: not valid UTF-8


@pytest.fixture
def two(bk: Backupctl) -> tuple[Backupctl, str, str]:
    """Two snapshots: a letter rewritten, an order made private, a note deleted, a folder
    of scans and a non-UTF-8 name added; 20 archived reports unchanged."""
    for i in range(20):
        write(bk.src / "archives" / f"cr-{i:02d}.txt", f"compte rendu {i}\n")
    write(bk.src / "lettre.txt", "Cher confrère\n")
    write(bk.src / "ordonnance.txt", "paracétamol\n", mode=0o644)
    write(bk.src / "vieux.txt", "à jeter\n")
    bk.init()
    first = bk.backup()["snapshot_id"]
    write(bk.src / "lettre.txt", "Cher confrère, suite à votre courrier\n")
    os.chmod(bk.src / "ordonnance.txt", 0o600)
    os.unlink(bk.src / "vieux.txt")
    write(bk.src / "scans" / "bilan.pdf", b"%PDF" * 256)
    write(os.path.join(os.fsencode(bk.src), NON_UTF8), b"CV\n")
    second = bk.backup()["snapshot_id"]
    return bk, first, second


def test_one_line_per_difference_and_a_summary(two) -> None:
    bk, first, second = two
    result = bk.ok("diff", first[:8], second[:8])
    assert result.stderr == "", str(result)
    src = str(bk.src)
    lines = result.stdout.splitlines()
    below = [line for line in lines if line[2:].startswith(f"{src}/") and not line.startswith(f"m {src}/  ")]
    assert below == [
        f"M {src}/lettre.txt  15 B -> 40 B",
        f"m {src}/ordonnance.txt  mode 0644 -> 0600",
        f"+ {src}/r\ufffdsum\ufffd.txt  3 B",
        f"+ {src}/scans/",
        f"+ {src}/scans/bilan.pdf  1.0 KiB",
        f"- {src}/vieux.txt  9 B",
    ], str(result)
    assert not any("archives" in line for line in lines)
    assert lines[-1].startswith(f"{first[:8]} (") and f"-> {second[:8]} (" in lines[-1]
    assert "3 added (2 file(s), 1.0 KiB), 1 removed (1 file(s), 9 B), 1 changed (15 B -> 40 B)" in lines[-1]


def test_the_json_document(two) -> None:
    bk, first, second = two
    result = bk.run("diff", first, "latest", "--json")
    assert result.returncode == 0 and result.stderr == "", str(result)
    doc = result.json()  # fails if stdout is not valid UTF-8
    assert (doc["snapshot_a"], doc["snapshot_b"]) == (first, second)
    src = str(bk.src)
    added = {entry["path"]: entry for entry in doc["added"]}
    assert set(added) == {f"{src}/r\udce9sum\udce9.txt", f"{src}/scans", f"{src}/scans/bilan.pdf"}
    assert added[f"{src}/scans/bilan.pdf"] == {"path": f"{src}/scans/bilan.pdf", "type": "file", "size": 1024}
    assert doc["removed"] == [{"path": f"{src}/vieux.txt", "type": "file", "size": 9}]
    assert [(c["path"], c["size_before"], c["size_after"]) for c in doc["changed"]] == [
        (f"{src}/lettre.txt", 15, 40)]
    order = next(m for m in doc["metadata"] if m["path"] == f"{src}/ordonnance.txt")
    assert order["metadata"] == {"mode": {"before": "0644", "after": "0600"}}
    summary = doc["summary"]
    assert (summary["added"], summary["removed"], summary["changed"]) == (3, 1, 1)
    assert (summary["bytes_added"], summary["bytes_removed"]) == (1027, 9)
    # the folders from / down to src, and scans/: never the unchanged archives/
    depth = len(bk.src.parts)  # "/" and each folder down to src: one listing each, on both sides
    assert summary["listings_read"] == 2 * depth + 1

    # the other way round: what was added is removed
    back = bk.ok_json("diff", "latest", first)
    assert {e["path"] for e in back["removed"]} == set(added)
    assert back["added"] == [{"path": f"{src}/vieux.txt", "type": "file", "size": 9}]


def test_a_snapshot_against_itself_differs_in_nothing(two) -> None:
    bk, _, second = two
    doc = bk.ok_json("diff", second, "latest")
    assert doc["added"] == doc["removed"] == doc["changed"] == doc["metadata"] == []
    assert doc["summary"]["listings_read"] == 0
    assert "0 added" in bk.ok("diff", "latest", "latest").stdout


def test_a_snapshot_that_does_not_exist(two) -> None:
    bk, first, _ = two
    result = bk.run("diff", first, "ffffffffff")
    assert_error(result, 2, "no snapshot id starts with 'ffffffffff'")
    assert result.stdout == ""
    result = bk.run("diff", "0123456789abcdef", first, "--json")
    assert_error(result, 2, "no snapshot id starts with")
    assert result.stdout == ""


def test_human_output_with_a_non_utf8_name_under_a_plain_c_locale(two) -> None:
    bk, first, second = two
    env = base_env()
    env.update(LANG="C", LC_ALL="C")
    proc = subprocess.run(bk.command("diff", first, second), env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, cwd=bk.base)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert b"Traceback" not in proc.stderr and b"sum" in proc.stdout

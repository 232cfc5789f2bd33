"""The one pattern rule of restore's --include/--exclude and `find` (agent/engine/patterns.py),
the suggestions when a pattern names nothing, and what the restore engine does with them."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import unicodedata
from pathlib import Path

import pytest

from agent.engine import browse
from agent.engine.patterns import Pattern, closest_names, quoted
from agent.engine.restore import RestoreEngine
from agent.engine.restore_testing import glob_escape
from agent.errors import UsageError
from agent.repo.pack import BLOB_DATA, BLOB_TREE
from agent.repo.repository import Repository
from agent.repo.snapshot import Snapshot
from agent.repo.tree import DIR, FILE, Node, encode_tree
from tests.support.repos import memory_repository

LETTER = "lettre-urgente Martin.odt"
DEEP = f"srv/cabinet/courriers/2026/{LETTER}"


# ---- matching ------------------------------------------------------------------------------


def test_a_bare_name_matches_that_name_at_any_depth_and_nothing_else() -> None:
    pattern = Pattern(LETTER)
    assert pattern.matches(DEEP) and pattern.matches(LETTER)
    assert not pattern.matches("srv/cabinet/courriers/2026/lettre-urgente Martin.odt.bak")
    assert not pattern.matches(f"srv/{LETTER}/autre.odt"), "matches() is the path alone, not its parents"
    assert Pattern("lettre*.odt").matches(DEEP)
    assert not Pattern("cabinet").matches(DEEP)


def test_a_pattern_with_a_slash_matches_the_whole_path() -> None:
    assert Pattern("srv/cabinet/courriers/*/lettre-urgente*").matches(DEEP)
    assert Pattern("/srv/cabinet/courriers/2026/*").matches(DEEP), "a leading / is the snapshot's top"
    assert not Pattern("courriers/2026/*").matches(DEEP), "a path pattern is not a name anywhere"
    assert Pattern("*/2026/*").matches(DEEP), "* crosses / in a path pattern, as before"
    assert not Pattern("/agenda.txt").matches("srv/agenda.txt"), "/NAME is the top-level one only"
    assert Pattern("/agenda.txt").matches("agenda.txt")


def test_covers_is_the_path_or_a_parent_folder_for_both_kinds() -> None:
    assert Pattern("courriers").covers(DEEP), "a folder named anywhere brings its content"
    assert Pattern("srv/cabinet").covers(DEEP)
    assert not Pattern("srv/cab").covers(DEEP)
    assert not Pattern("2027").covers(DEEP)
    assert Pattern(LETTER).covers(DEEP)


def test_names_compare_in_nfc_and_casefolded_on_request() -> None:
    decomposed = unicodedata.normalize("NFD", "patients/Élodie Müller/bilan.txt")
    assert Pattern("Élodie Müller").covers(decomposed), "typed NFC, stored NFD (a Mac client)"
    assert not Pattern("élodie müller").covers(decomposed)
    assert Pattern("élodie müller", ignore_case=True).covers(decomposed)
    assert Pattern("LETTRE-URGENTE*", ignore_case=True).matches(DEEP)
    assert not Pattern("LETTRE-URGENTE*").matches(DEEP)


# ---- suggestions ---------------------------------------------------------------------------


NAMES = {LETTER, "lettre-001.txt", "lettre-002.txt", "agenda.txt", "Élodie Müller", "bilan.txt", "radio.png",
         "Lettre-urgente Martine.odt", "lettre urgente martin.odt"}


def test_closest_names_ignore_case_at_most_three_closest_first() -> None:
    close = closest_names("LETTRE-URGENTE MARTIN.ODT", NAMES)
    assert close[0] == LETTER and len(close) == 3
    assert set(close) == {LETTER, "Lettre-urgente Martine.odt", "lettre urgente martin.odt"}
    assert closest_names("srv/cabinet/agenda.tx", NAMES) == ["agenda.txt"], "a path: its last part"
    assert closest_names("ordonnance-zzz.pdf", NAMES) == []
    assert closest_names("lettre-urgente Martin.odt", NAMES, limit=1) == [LETTER]


def test_quoted_names_paste_back_into_a_shell() -> None:
    assert quoted(LETTER) == f"'{LETTER}'"
    assert quoted("lettre d'Élodie.odt") == "'lettre d'\"'\"'Élodie.odt'"


# ---- the restore engine ----------------------------------------------------------------------


@pytest.fixture
def repo() -> Repository:
    return memory_repository(compression_level=3)


def _file(repo: Repository, name: bytes, content: bytes, *, sparse: bool = False, pieces: int = 1) -> Node:
    step = -(-len(content) // pieces) if content else 0
    chunks = [repo.store_blob(BLOB_DATA, content[i:i + step])[0] for i in range(0, len(content), step or 1)]
    return Node(name=name, type=FILE, mode=0o640, uid=os.getuid(), gid=os.getgid(), mtime_ns=10**18,
                size=len(content), chunks=chunks, sha256=hashlib.sha256(content).hexdigest(), sparse=sparse)


def _dir(repo: Repository, name: bytes, children: list[Node]) -> Node:
    subtree, _ = repo.store_blob(BLOB_TREE, encode_tree(sorted(children, key=lambda n: n.name)))
    return Node(name=name, type=DIR, mode=0o755, uid=os.getuid(), gid=os.getgid(), mtime_ns=10**18, subtree=subtree)


def _snapshot(repo: Repository, nodes: list[Node]) -> Snapshot:
    tree_id, _ = repo.store_blob(BLOB_TREE, encode_tree(sorted(nodes, key=lambda n: n.name)))
    repo.flush()
    snapshot = Snapshot(time=dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc), host="h", user="u", paths=["/"],
                        tree=tree_id)
    snapshot.id = repo.save_snapshot(snapshot)
    return snapshot


@pytest.fixture
def practice(repo: Repository) -> Snapshot:
    letter = _file(repo, LETTER.encode(), b"PK\x03\x04 urgent")
    agenda = _file(repo, b"agenda.txt", b"lundi 9h\n")
    nested_agenda = _file(repo, b"agenda.txt", b"ancien agenda\n")
    return _snapshot(repo, [agenda, _dir(repo, b"srv", [_dir(repo, b"courriers", [letter]),
                                                         _dir(repo, b"archives", [nested_agenda])])])


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_restore_include_by_bare_name_finds_the_file_deep_in_the_tree(repo, practice, tmp_path) -> None:
    report = RestoreEngine(repo, practice, str(tmp_path / "t"), includes=[LETTER]).run()
    assert report.verified == 1 and report.failures == []
    assert _files(tmp_path / "t") == [f"srv/courriers/{LETTER}"]


def test_restore_include_naming_nothing_names_each_and_suggests_before_writing(repo, practice, tmp_path) -> None:
    with pytest.raises(UsageError) as raised:
        RestoreEngine(repo, practice, str(tmp_path / "t"),
                      includes=["Lettre-Urgente-Martin.odt", "agenda.txt", "zzz-qqq"]).run()
    text = raised.value.one_line()
    assert f"--include 'Lettre-Urgente-Martin.odt' matches nothing (closest names: '{LETTER}')" in text
    assert "--include 'zzz-qqq' matches nothing in snapshot" in text
    assert "agenda.txt" not in text
    assert "nothing was written" in text
    assert not (tmp_path / "t").exists()


def test_a_restore_test_sample_of_a_top_level_file_takes_only_that_one(repo, practice, tmp_path) -> None:
    """restore-test passes exact paths: "agenda.txt" at the top must not also bring
    srv/archives/agenda.txt now that a bare name matches anywhere."""
    report = RestoreEngine(repo, practice, str(tmp_path / "t"), includes=[glob_escape("agenda.txt")]).run()
    assert report.verified == 1 and _files(tmp_path / "t") == ["agenda.txt"]


def test_names_in_reads_each_shared_folder_once(repo, practice) -> None:
    assert browse.names_in(repo, [practice, practice]) == {"agenda.txt", "srv", "courriers", "archives", LETTER}


def test_dry_run_counts_the_room_a_restore_needs_holes_left_out(repo, tmp_path) -> None:
    MiB = 1 << 20
    image = os.urandom(MiB) + bytes(8 * MiB) + os.urandom(MiB)
    snapshot = _snapshot(repo, [_file(repo, b"disque.img", image, sparse=True, pieces=10),
                                _file(repo, b"plein.bin", bytes(2 * MiB), sparse=False, pieces=2)])
    report = RestoreEngine(repo, snapshot, str(tmp_path / "t"), dry_run=True).run()
    free = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize
    assert abs(report.space_available - free) < 64 * MiB
    # 2 MiB of data + the 2 MiB of zeros of a file that is not sparse, not the image's 8 MiB of holes
    # (less 128 KiB at each hole chunk's ends), + 2 % + 1 MiB.
    assert 4 * MiB < report.space_needed < 7 * MiB, report.space_needed
    assert not (tmp_path / "t").exists()

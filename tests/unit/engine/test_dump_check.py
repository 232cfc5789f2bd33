"""agent/engine/dump_check.py without servers: what is reported when a dump is not loaded."""

from __future__ import annotations

import pathlib

import pytest

from agent.engine import throwaway_db
from agent.engine.dump_check import check_dump, quote_mariadb
from agent.engine.source.dumps import DatabaseSettings
from agent.errors import IntegrityError
from agent.state.layout import StateLayout


def _blocks(read: list, *, damaged: bool = False):
    yield b"-- MariaDB dump\nCREATE DATABASE agenda;\n"
    yield b"INSERT INTO rdv VALUES (1);\n"
    read.append("all")
    if damaged:  # what browse.file_bytes does when the SHA-256 differs
        raise IntegrityError("/backupctl-databases/mariadb/agenda.sql: the content read does not have the SHA-256 "
                             "recorded at backup")


@pytest.mark.parametrize("kind, finder", [("mariadb", "mariadb_binaries"), ("mysql", "mariadb_binaries"),
                                          ("postgresql", "postgresql_bin")])
def test_without_server_binaries_the_dump_is_read_and_verified_not_loaded(tmp_path, monkeypatch, kind, finder):
    monkeypatch.setattr(throwaway_db, finder, lambda: None)
    read: list = []
    check = check_dump(DatabaseSettings(name="agenda", type=kind, database="agenda"), _blocks(read), "/p",
                       state_dir=str(tmp_path))
    assert read == ["all"] and check.ok and check.loaded_into is None
    assert "SHA-256 verified, not loaded" in check.note and "no " in check.note and "server is installed" in check.note
    servers = pathlib.Path(StateLayout(str(tmp_path)).restore_test_databases())
    assert not servers.exists() or not list(servers.iterdir())


def test_a_damaged_dump_read_without_a_server_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setattr(throwaway_db, "mariadb_binaries", lambda: None)
    with pytest.raises(IntegrityError):
        check_dump(DatabaseSettings(name="agenda", type="mariadb", database="agenda"), _blocks([], damaged=True),
                   "/p", state_dir=str(tmp_path))


def test_restore_test_none_reads_only(tmp_path):
    read: list = []
    check = check_dump(DatabaseSettings(name="agenda", type="postgresql", database="agenda", restore_test="none"),
                       _blocks(read), "/p", state_dir=str(tmp_path))
    assert read == ["all"] and check.ok and check.loaded_into is None and 'restore_test = "none"' in check.note


def test_mariadb_identifiers_are_quoted_by_doubling():
    assert quote_mariadb("t'a\"b`c") == "`t'a\"b``c`"

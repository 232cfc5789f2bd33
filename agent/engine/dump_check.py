"""Proof that a database dump restores (the restore test, rule S7): load it, count the rows of
every table, throw the copy away.

Where the dump is loaded is [[databases]] restore_test:

* "throwaway" (the default): into a server the restore test starts for it alone and wipes
  afterwards (agent/engine/throwaway_db.py). The dump, read from the repository, may have been
  written by whoever holds the key: its SQL must never reach the practice's server.
* "production": into a scratch database created on the practice's own PostgreSQL, as before;
  only for hosts with no server binaries, refused for a superuser role, and the report
  carries a warning.
* "none": the dump is read and its SHA-256 verified, not loaded.

Table names come from the dump, so from whoever wrote it: they are quoted by the server
(format('%I')) or by doubling, and results come back as JSON, never split on separators.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from dataclasses import dataclass, field
from typing import Any, Iterator

from agent.engine.source import db_credentials
from agent.engine.source.dumps import DatabaseSettings, DumpError, drain, postgresql_connection, telling_line, tool
from agent.engine.throwaway_db import (LOADER, MariaDBServer, NoServerUser, PostgreSQLServer, ServerFailed,
                                       Unavailable)
from agent.errors import BackupctlError

RESTORE_TEST_CHOICES = ("throwaway", "production", "none")
PRODUCTION_WARNING = ("loaded into the production server (restore_test = \"production\"): SQL written by whoever "
                      "holds the key runs there; prefer \"throwaway\"")

# Every base table with its exact row count, quoted by the server, as one JSON document.
POSTGRESQL_COUNTS = """
SELECT coalesce(json_object_agg(quote_ident(table_schema) || '.' || quote_ident(table_name),
  (xpath('/row/n/text()', query_to_xml(format('SELECT pg_catalog.count(*) AS n FROM %I.%I',
                                              table_schema, table_name), false, true, '')))[1]::text::bigint), '{}')
FROM information_schema.tables
WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')
"""
MARIADB_TABLES = """
SELECT JSON_ARRAYAGG(JSON_ARRAY(table_schema, table_name)) FROM information_schema.tables
WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys')
"""


@dataclass
class DatabaseCheck:
    name: str
    type: str
    path: str  # the dump in the snapshot
    ok: bool = False
    tables: int = 0
    rows: dict[str, int] = field(default_factory=dict)  # {"schema.table": row count}
    problem: str | None = None
    loaded_into: str | None = None  # "throwaway" or "production"; None: read and verified, not loaded
    note: str | None = None  # why it was not loaded, or the warning of a load into production

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "path": self.path, "ok": self.ok, "tables": self.tables,
                "rows": self.rows, "problem": self.problem, "loaded_into": self.loaded_into, "note": self.note}


def check_dump(settings: DatabaseSettings, dump_bytes: Iterator[bytes], path: str, *,
               state_dir: str) -> DatabaseCheck:
    """Load one dump as settings.restore_test says; IntegrityError (a damaged dump) goes to the caller."""
    check = DatabaseCheck(settings.name, settings.type, path)
    if settings.restore_test == "none":
        return _read_only(check, dump_bytes, "restore_test = \"none\"")
    if settings.type == "postgresql" and settings.restore_test == "production":
        _production_postgresql(check, settings, dump_bytes, state_dir)
        return check
    server_class: type[PostgreSQLServer] | type[MariaDBServer] = (
        PostgreSQLServer if settings.type == "postgresql" else MariaDBServer)
    try:
        with server_class(state_dir, timeout=settings.timeout) as server:
            if isinstance(server, PostgreSQLServer):
                _load_postgresql(check, server, dump_bytes, settings.timeout)
            else:
                _load_mariadb(check, server, dump_bytes, settings.timeout)
        if not server.wiped:
            check.ok = False
            check.problem = f"the throwaway server's folder {server.folder} could not be removed"
    except Unavailable as exc:
        return _read_only(check, dump_bytes, str(exc))
    except (NoServerUser, ServerFailed, OSError) as exc:
        check.problem = str(exc)
    return check


def _read_only(check: DatabaseCheck, dump_bytes: Iterator[bytes], why: str) -> DatabaseCheck:
    """Read the whole dump (file_bytes verifies its SHA-256 at the end) and say why it was not loaded."""
    size = sum(len(block) for block in dump_bytes)
    check.ok = True
    check.note = f"read ({size} bytes) and its SHA-256 verified, not loaded: {why}"
    return check


def _feed(process: subprocess.Popen[bytes], dump_bytes: Iterator[bytes], timeout: float) -> tuple[int, bytes]:
    """Write the dump into the loading client; the client is killed if anything stops us (a
    damaged dump, the time limit, SIGTERM), so that the server can be stopped and wiped."""
    errors = bytearray()
    reader = threading.Thread(target=drain, args=(process.stderr, errors), daemon=True)
    reader.start()
    assert process.stdin is not None  # every loader is started with stdin=PIPE
    try:
        try:
            for block in dump_bytes:
                process.stdin.write(block)
            process.stdin.close()
        except BrokenPipeError:
            pass
        code = process.wait(timeout=timeout)
    except BaseException:
        process.kill()
        process.wait()
        raise
    reader.join(5)
    return code, bytes(errors)


def _counted(check: DatabaseCheck, rows: dict[str, int], into: str) -> None:
    check.rows = dict(sorted(rows.items()))
    check.tables = len(rows)
    check.loaded_into = into
    check.ok = True


# ---- PostgreSQL ---------------------------------------------------------------------------------


def _loaded(check: DatabaseCheck, loader: subprocess.Popen[bytes], dump_bytes: Iterator[bytes], timeout: float,
            what: str) -> bool:
    """Feed the dump to the loading client; False (and the check's problem set) if it failed."""
    try:
        code, errors = _feed(loader, dump_bytes, timeout)
    except subprocess.TimeoutExpired:
        check.problem = f"{what} did not finish loading within {timeout} s (the database's timeout)"
        return False
    if code != 0:
        check.problem = f"{what} failed to load the dump (exit code {code}): {telling_line(errors)}"
        return False
    return True


def _load_postgresql(check: DatabaseCheck, server: PostgreSQLServer, dump_bytes: Iterator[bytes],
                     timeout: float) -> None:
    restore = subprocess.Popen([server.tool("pg_restore"), *server.connection(LOADER), "--no-owner",
                                "--no-privileges", "--exit-on-error", f"--dbname={LOADER}"],
                               stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               **server.run_options())
    if not _loaded(check, restore, dump_bytes, timeout, "pg_restore"):
        return
    try:
        rows = json.loads(server.psql(LOADER, LOADER, POSTGRESQL_COUNTS))
    except (ServerFailed, ValueError) as exc:
        check.problem = f"the sanity query failed ({exc})"
        return
    _counted(check, {str(k): int(v) for k, v in rows.items()}, "throwaway")


# What a role must not hold to load a dump written with the key into the practice's own
# server: each runs shell commands or reads and writes the server's files (COPY ... TO
# PROGRAM, pg_read_file), and CREATEROLE could grant itself the others (before PostgreSQL 16).
DANGEROUS_POWERS = ("SUPERUSER", "CREATEROLE", "pg_execute_server_program", "pg_write_server_files",
                    "pg_read_server_files")
POWERS_QUERY = ("SELECT r.rolsuper, r.rolcreaterole, pg_has_role(current_user, 'pg_execute_server_program', 'USAGE'), "
                "pg_has_role(current_user, 'pg_write_server_files', 'USAGE'), "
                "pg_has_role(current_user, 'pg_read_server_files', 'USAGE') "
                "FROM pg_roles r WHERE r.rolname = current_user")


def _production_postgresql(check: DatabaseCheck, settings: DatabaseSettings, dump_bytes: Iterator[bytes],
                           state_dir: str) -> None:
    """The explicit fallback: a scratch database on the practice's server, loaded by a role that
    is not a superuser (refused otherwise), dropped afterwards."""
    check.note = PRODUCTION_WARNING
    scratch = f"backupctl_restore_test_{os.urandom(4).hex()}"
    try:
        with db_credentials.private_folder(state_dir) as private:
            connection, env = postgresql_connection(settings, private)
            psql = [tool("psql"), *connection, "--no-psqlrc", "-v", "ON_ERROR_STOP=1", "-At", "-v",
                    f"scratch={scratch}", "-f", "-"]

            def sql(database: str, statement: str) -> str:
                done = subprocess.run([*psql, f"--dbname={database}"], input=statement, env=env,
                                      capture_output=True, text=True, timeout=settings.timeout)
                if done.returncode != 0:
                    raise DumpError((done.stderr.strip().splitlines() or ["psql failed"])[-1][:300])
                return done.stdout

            try:
                powers = sql(settings.server_database, POWERS_QUERY).strip().split("|")
            except (DumpError, OSError, subprocess.TimeoutExpired) as exc:
                check.problem = f"the production server cannot be reached ({exc})"
                return
            # strict=False: the server's answer may be short; the length is checked just below.
            dangerous = [power for power, held in zip(DANGEROUS_POWERS, powers, strict=False) if held != "f"]
            if dangerous or len(powers) != len(DANGEROUS_POWERS):
                powers_named = ', '.join(dangerous) or 'unknown powers'
                check.problem = (f"the role {settings.user or '(default)'} has {powers_named}: "
                                 f"a dump written with the key could run commands or reach files on the practice's "
                                 f"server; restore_test = \"production\" needs a role with CREATEDB and none of "
                                 f"{', '.join(DANGEROUS_POWERS)}, or use \"throwaway\"")
                return
            try:
                sql(settings.server_database, 'CREATE DATABASE :"scratch"')
            except (DumpError, OSError, subprocess.TimeoutExpired) as exc:
                check.problem = f"the scratch database cannot be created ({exc}); grant CREATEDB to the backup role"
                return
            try:
                restore = subprocess.Popen([tool("pg_restore"), *connection, "--no-owner", "--no-privileges",
                                            "--exit-on-error", f"--dbname={scratch}"], env=env, stdin=subprocess.PIPE,
                                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                code, errors = _feed(restore, dump_bytes, settings.timeout)
                if code != 0:
                    check.problem = f"pg_restore failed (exit code {code}): {telling_line(errors)}"
                    return
                rows = json.loads(sql(scratch, POSTGRESQL_COUNTS))
                _counted(check, {str(k): int(v) for k, v in rows.items()}, "production")
            except (DumpError, OSError, subprocess.TimeoutExpired, ValueError) as exc:
                check.problem = f"the sanity query failed ({exc})"
            finally:
                try:
                    sql(settings.server_database, 'DROP DATABASE IF EXISTS :"scratch" WITH (FORCE)')
                except (DumpError, OSError, subprocess.TimeoutExpired) as exc:
                    check.problem = ((check.problem or "")
                                     + f"; the scratch database {scratch} could not be dropped ({exc})")
                    check.ok = False
    except BackupctlError as exc:
        check.problem = str(exc)


# ---- MariaDB / MySQL ----------------------------------------------------------------------------


def quote_mariadb(identifier: str) -> str:
    """A MariaDB identifier, quoted: backticks around it, its own backticks doubled."""
    return "`" + identifier.replace("`", "``") + "`"


def _load_mariadb(check: DatabaseCheck, server: MariaDBServer, dump_bytes: Iterator[bytes], timeout: float) -> None:
    load = subprocess.Popen(server.client_command("--batch"), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, **server.run_options())
    if not _loaded(check, load, dump_bytes, timeout, "mariadb"):
        return
    try:
        tables = json.loads(server.sql(MARIADB_TABLES).strip() or "null") or []
        rows: dict[str, int] = {}
        if tables:
            # Numbers, not names, come back: the names stay on this side, quoted by doubling.
            union = " UNION ALL ".join(f"SELECT {number}, COUNT(*) FROM {quote_mariadb(schema)}.{quote_mariadb(table)}"
                                       for number, (schema, table) in enumerate(tables))
            for line in server.sql(union + ";").splitlines():
                number, count = line.split("\t")
                schema, table = tables[int(number)]
                rows[f"{schema}.{table}"] = int(count)
    except (ServerFailed, ValueError) as exc:
        check.problem = f"the sanity query failed ({exc})"
        return
    _counted(check, rows, "throwaway")

"""Consistent database backups (issue 9): dumps streamed into the snapshot from real
PostgreSQL and MariaDB servers (Debian's packages, started by the tests on loopback) and
from SQLite; restored back into a server with the documented commands; credentials never
on a command line; hooks around the backup."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path


from agent.engine.throwaway_db import SOCKET_PREFIX
from tests.support.databases import PASSWORD, PATIENTS

from .support import NOBODY, ROOT, Backupctl, as_user, assert_error, base_env, write

DUMP_WRAPPER = """#!/bin/sh
# Records the command line the dump program was given, then runs the real one.
printf '%s\\n' "$0" "$@" >> "{log}"
exec {real} "$@"
"""


def _secret(bk: Backupctl) -> Path:
    path = bk.base / "db-password"
    path.write_text(PASSWORD + "\n")
    path.chmod(0o600)
    if bk.user is not None:
        os.chown(path, bk.user, bk.user)  # the service user's own password file
    return path


def _server_config(bk: Backupctl, kind: str, port: int, *, user: str = "backupctl",
                   password_file: Path | None = None, database: str = "cabinet",
                   restore_test: str = "throwaway") -> None:
    """A configuration dumping the test server's "cabinet" database (by default)."""
    bk.write_config(extra_repo_lines=f"""
[[databases]]
name = "cabinet"
type = "{kind}"
host = "127.0.0.1"
port = {port}
user = "{user}"
database = {json.dumps(database)}
password_file = "{password_file or _secret(bk)}"
{"" if restore_test == "throwaway" else f'restore_test = "{restore_test}"'}
""")


def _spy(bk: Backupctl, name: str, real: str) -> tuple[dict, Path]:
    """PATH with a wrapper of `name` that logs its arguments (to prove no password is in them)."""
    folder = bk.base / "bin"
    folder.mkdir(exist_ok=True)
    log = bk.base / f"{name}.argv"
    wrapper = folder / name
    wrapper.write_text(DUMP_WRAPPER.format(log=log, real=real))
    wrapper.chmod(0o755)
    return {"PATH": f"{folder}:{os.environ['PATH']}"}, log


def _run(bk: Backupctl, *args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(bk.command(*args), env={**base_env(), **(env_extra or {})}, cwd=bk.base,
                          capture_output=True, timeout=600)


def _no_private_files_left(bk: Backupctl) -> None:
    """A client's password file lives in state_dir/credentials/<pid>-<random>/ while it runs
    (agent/engine/source/db_credentials.py): nothing of it stays after the run. (This world's
    own folder is checked, not a glob of /tmp, which other suites on the machine share.)"""
    credentials = bk.state / "credentials"
    assert credentials.is_dir(), "no client password file was written"
    assert not list(credentials.iterdir()), "a client's password folder stayed"


def test_postgresql_dump_is_streamed_into_the_snapshot_and_restores(bk: Backupctl, postgresql):
    write(bk.src / "lettre.txt", "Madame, " * 100)
    _server_config(bk, "postgresql", postgresql.port)
    bk.init()
    env, log = _spy(bk, "pg_dump", str(postgresql.bin / "pg_dump"))
    result = _run(bk, "backup", "--json", env_extra=env)
    assert result.returncode == 0, result.stderr.decode()
    report = json.loads(result.stdout)
    dump_path = "/backupctl-databases/postgresql/cabinet.pgdump"
    assert report["databases_dumped"] == [dump_path] and report["database_failures"] == 0
    argv = log.read_text()
    assert "--format=custom" in argv and PASSWORD not in argv and "mot de passe" not in argv
    _no_private_files_left(bk)
    entry = bk.ok_json("ls", "latest", dump_path)["entries"][0]
    assert entry["mode"] == "0600" and entry["size"] > 1000
    # The documented restore: backupctl dump ... | pg_restore into a database.
    postgresql.psql("CREATE DATABASE restauree")
    dump = subprocess.Popen(bk.command("dump", "latest", dump_path), env=base_env(), stdout=subprocess.PIPE)
    restore = subprocess.run(["runuser", "-u", "postgres", "--", str(postgresql.bin / "pg_restore"), "-h",
                              str(postgresql.socket_dir), "-p", str(postgresql.port), "--no-owner", "-d", "restauree"],
                             stdin=dump.stdout, capture_output=True, text=True)
    dump.stdout.close()
    assert dump.wait() == 0 and restore.returncode == 0, restore.stderr
    query = "SELECT count(*), string_agg(name || born, ',' ORDER BY id) FROM patients"
    assert postgresql.psql(query, "restauree") == postgresql.psql(query, "cabinet")
    assert postgresql.psql("SELECT count(*) FROM rendez_vous", "restauree").strip() == str(len(PATIENTS))


def test_a_failing_dump_saves_the_rest_with_a_warning(bk: Backupctl, postgresql):
    write(bk.src / "lettre.txt", "Madame, " * 100)
    wrong = bk.base / "wrong"
    wrong.write_text("pas le bon mot de passe\n")
    wrong.chmod(0o600)
    _server_config(bk, "postgresql", postgresql.port, password_file=wrong)
    bk.init()
    result = bk.run("backup", "--json")
    assert result.returncode == 3, str(result)
    report = result.json()
    assert report["database_failures"] == 1 and report["databases_dumped"] == []
    (warning,) = report["warnings"]
    assert warning["path"].endswith("cabinet.pgdump") and "pg_dump failed" in warning["problem"]
    assert "password authentication failed" in warning["problem"]
    assert any(e["path"].endswith("lettre.txt") for e in bk.ok_json("ls", "latest", "/", "-r")["entries"])
    _no_private_files_left(bk)


def test_mariadb_dump_single_transaction_and_restore(bk: Backupctl, mariadb):
    write(bk.src / "lettre.txt", "Madame, " * 100)
    _server_config(bk, "mariadb", mariadb.port)
    bk.init()
    env, log = _spy(bk, "mariadb-dump", "/usr/bin/mariadb-dump")
    result = _run(bk, "backup", "--json", env_extra=env)
    assert result.returncode == 0, result.stderr.decode()
    assert json.loads(result.stdout)["databases_dumped"] == ["/backupctl-databases/mariadb/cabinet.sql"]
    argv = log.read_text()
    assert "--single-transaction" in argv and PASSWORD not in argv and "--defaults-extra-file=" in argv
    _no_private_files_left(bk)
    before = mariadb.sql("SELECT count(*), md5(group_concat(name, born ORDER BY id)) FROM cabinet.patients")
    # The documented restore: backupctl dump ... | mariadb (the dump recreates the database).
    mariadb.sql("DROP DATABASE cabinet")
    dump = subprocess.Popen(bk.command("dump", "latest", "/backupctl-databases/mariadb/cabinet.sql"), env=base_env(),
                            stdout=subprocess.PIPE)
    restore = subprocess.run(["mariadb", "--no-defaults", f"--socket={mariadb.socket}", "-u", "root"],
                             stdin=dump.stdout, capture_output=True, text=True)
    dump.stdout.close()
    assert dump.wait() == 0 and restore.returncode == 0, restore.stderr
    assert mariadb.sql("SELECT count(*), md5(group_concat(name, born ORDER BY id)) FROM cabinet.patients") == before


def test_sqlite_online_backup_while_the_software_writes(bk: Backupctl):
    base = bk.base / "logiciel" / "base.sqlite"
    base.parent.mkdir()
    db = sqlite3.connect(base)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE patients (id INTEGER PRIMARY KEY, name TEXT)")
    db.executemany("INSERT INTO patients VALUES (?, ?)", [(i, n) for i, n, _b in PATIENTS])
    db.commit()
    db.execute("INSERT INTO patients VALUES (999, 'pas encore validé')")  # an open, uncommitted transaction
    write(bk.src / "lettre.txt", "Madame, " * 100)
    bk.write_config(extra_repo_lines=f"""
[[databases]]
name = "base"
type = "sqlite"
path = "{base}"
""")
    bk.init()
    report = bk.backup()
    db.rollback()
    db.close()
    assert report["databases_dumped"] == ["/backupctl-databases/sqlite/base.sqlite"]
    restored = bk.base / "restauree.sqlite"
    dumped = bk.run("dump", "latest", "/backupctl-databases/sqlite/base.sqlite")
    assert dumped.returncode == 0
    restored.write_bytes(dumped.stdout_bytes)
    copy = sqlite3.connect(restored)
    assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert copy.execute("SELECT count(*), max(id) FROM patients").fetchone() == (len(PATIENTS), len(PATIENTS))
    copy.close()


def test_database_configuration_errors(bk: Backupctl):
    bk.write_config(extra_repo_lines='[[databases]]\nname = "x"\ntype = "oracle"\ndatabase = "x"\n')
    assert_error(bk.run("backup"), 2, "type", "postgresql")
    bk.write_config(extra_repo_lines='[[databases]]\nname = "x"\ntype = "postgresql"\n')
    assert_error(bk.run("backup"), 2, "needs database")
    bk.write_config(extra_repo_lines='[[databases]]\nname = "x"\ntype = "sqlite"\npath = "relative.db"\n')
    assert_error(bk.run("backup"), 2, "absolute path")
    bk.write_config(extra_repo_lines='[databases]\nname = "x"\n')
    assert_error(bk.run("backup"), 2, "[[databases]]")


# ---- hooks ---------------------------------------------------------------------------------


def _hooks(bk: Backupctl, text: str) -> None:
    write(bk.src / "lettre.txt", "Madame, " * 100)
    bk.write_config(extra_repo_lines=text)
    bk.init()


def test_hooks_run_before_and_after_with_their_environment(bk: Backupctl):
    trace = bk.base / "trace"
    _hooks(bk, f"""
[[hooks]]
name = "arrêt du logiciel"
before = ["sh", "-c", "echo before-1 $LOGICIEL >> {trace}; echo arrêté"]
after = ["sh", "-c", "echo after-1 >> {trace}"]
environment = {{ LOGICIEL = "cabinet" }}
[[hooks]]
name = "instantané"
before = ["sh", "-c", "echo before-2 >> {trace}"]
after = ["sh", "-c", "echo after-2 >> {trace}"]
""")
    result = bk.run("backup", "--json")
    assert result.returncode == 0 and result.json()["hook_failures"] == 0, str(result)
    assert trace.read_text().split("\n")[:-1] == ["before-1 cabinet", "before-2", "after-2", "after-1"]
    # The hooks' output goes to standard error (the daemon forwards it to its journal).
    assert "backupctl: hook arrêt du logiciel (before): arrêté" in result.stderr


def test_an_abort_hook_stops_the_backup_and_still_undoes_what_ran(bk: Backupctl):
    trace = bk.base / "trace"
    _hooks(bk, f"""
[[hooks]]
name = "arrêt du logiciel"
before = ["sh", "-c", "echo stopped >> {trace}"]
after = ["sh", "-c", "echo started >> {trace}"]
[[hooks]]
name = "vérification"
before = ["sh", "-c", "echo 'la base est verrouillée' >&2; exit 7"]
""")
    result = bk.run("backup")
    # The hook's own output comes first (it is the log), then the one error line.
    assert_error(result, 20, "vérification", "exit code 7", "la base est verrouillée", "no backup was made",
                 only_line=False)
    assert result.stderr.splitlines()[0] == "backupctl: hook vérification (before): la base est verrouillée"
    assert trace.read_text() == "stopped\nstarted\n"
    assert bk.ok_json("snapshots")["snapshots"] == []


def test_a_continue_hook_backs_up_with_a_warning_and_a_slow_hook_is_stopped(bk: Backupctl):
    _hooks(bk, """
[[hooks]]
name = "lent"
before = ["sleep", "30"]
timeout = 1
on_failure = "continue"
[[hooks]]
name = "après"
after = ["false"]
""")
    result = bk.run("backup", "--json")
    assert result.returncode == 3, str(result)
    report = result.json()
    problems = [w["problem"] for w in report["warnings"]]
    assert report["hook_failures"] == 2 and report["snapshot_id"]
    assert any("stopped after 1 s" in p and "backed up anyway" in p for p in problems)
    assert any("'après' (after) failed with exit code 1" in p for p in problems)
    bk.write_config(extra_repo_lines='[[hooks]]\nname = "vide"\n')
    assert_error(bk.run("backup"), 2, "before = [...]")


def _service_world(open_dir: Path) -> Backupctl:
    """A world of an unprivileged service user (nobody), as `backupctl` owns /var/lib/backupctl
    and runs every command on a server (root may not: agent/run_as.py); its throwaway
    servers run as it."""
    bk = Backupctl(open_dir)
    bk.state.mkdir(mode=0o700)
    for path in (bk.base, bk.src, bk.state, bk.config):
        os.chown(path, NOBODY, NOBODY)
    bk.user = NOBODY
    return bk


def _our_server_processes(bk: Backupctl) -> list[str]:
    """Processes whose command line names the world's state dir (a throwaway server left running)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if entry.name.isdigit() and str(bk.state).encode() in cmdline and b"agent" not in cmdline:
            found.append(cmdline.replace(b"\0", b" ").decode(errors="replace"))
    return found


def _assert_throwaway_gone(bk: Backupctl) -> None:
    assert list((bk.state / "restore-test-databases").iterdir()) == []
    assert _our_server_processes(bk) == []


def test_the_restore_test_loads_the_dump_into_a_throwaway_server(open_dir: Path, postgresql):
    bk = _service_world(open_dir)
    write(bk.src / "lettre.txt", "Madame, " * 100)
    _server_config(bk, "postgresql", postgresql.port)
    bk.init()
    bk.backup()
    databases_before = postgresql.psql("SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database")
    result = bk.run("restore-test", "--scratch-dir", str(bk.base / "scratch"), "--json")
    assert result.returncode == 0, str(result)
    (check,) = result.json()["databases"]
    assert check["ok"] is True and check["tables"] == 2 and check["loaded_into"] == "throwaway"
    assert check["rows"] == {"public.patients": len(PATIENTS), "public.rendez_vous": len(PATIENTS)}
    # Not a database was created on the practice's server, even for a moment it would show.
    assert postgresql.psql("SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database") == databases_before
    _assert_throwaway_gone(bk)
    page = Path(result.json()["report"]["html"]).read_text(encoding="utf-8")
    assert 'id="databases"' in page and "restaurée" in page and str(2 * len(PATIENTS)) in page
    assert "Database cabinet (postgresql): the dump restored into a throwaway" in bk.ok(
        "restore-test", "--scratch-dir", str(bk.base / "scratch")).stdout


def test_the_production_fallback_needs_createdb_and_warns(open_dir: Path, postgresql):
    escaped = PASSWORD.replace("'", "''")
    postgresql.psql(f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'lecteur') THEN "
                    f"CREATE ROLE lecteur LOGIN PASSWORD '{escaped}'; END IF; END $$;")
    postgresql.psql("GRANT SELECT ON ALL TABLES IN SCHEMA public TO lecteur; "
                    "GRANT SELECT, USAGE ON ALL SEQUENCES IN SCHEMA public TO lecteur", database="cabinet")
    bk = _service_world(open_dir)
    write(bk.src / "lettre.txt", "Madame, " * 100)
    # "lecteur" may read and dump, may not create a database.
    _server_config(bk, "postgresql", postgresql.port, user="lecteur", restore_test="production")
    bk.init()
    assert bk.backup()["databases_dumped"]
    result = bk.run("restore-test", "--scratch-dir", str(bk.base / "scratch"), "--json")
    assert result.returncode == 13
    (check,) = result.json()["databases"]
    assert check["ok"] is False and "grant CREATEDB" in check["problem"]
    assert "database dump(s) did not load" in result.stderr
    # With CREATEDB (the backupctl role) it loads there, and says how unsafe that is.
    _server_config(bk, "postgresql", postgresql.port, restore_test="production")
    result = bk.run("restore-test", "--scratch-dir", str(bk.base / "scratch"), "--json")
    assert result.returncode == 0, str(result)
    (check,) = result.json()["databases"]
    assert check["ok"] is True and check["loaded_into"] == "production" and check["tables"] == 2
    assert "production server" in check["note"] and "holds the key" in check["note"]
    assert "WARNING: database cabinet: loaded into the production server" in result.stderr
    page = Path(result.json()["report"]["html"]).read_text(encoding="utf-8")
    assert "ATTENTION" in page and "production server" in page
    assert "backupctl_restore_test" not in postgresql.psql("SELECT string_agg(datname, ',') FROM pg_database")


def test_the_production_fallback_refuses_a_superuser_role(open_dir: Path, postgresql):
    escaped = PASSWORD.replace("'", "''")
    postgresql.psql(f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'patron') THEN "
                    f"CREATE ROLE patron LOGIN SUPERUSER PASSWORD '{escaped}'; END IF; END $$;")
    bk = _service_world(open_dir)
    write(bk.src / "lettre.txt", "Madame, " * 100)
    _server_config(bk, "postgresql", postgresql.port, user="patron", restore_test="production")
    bk.init()
    assert bk.backup()["databases_dumped"]
    result = bk.run("restore-test", "--scratch-dir", str(bk.base / "scratch"), "--json")
    assert result.returncode == 13
    (check,) = result.json()["databases"]
    assert check["ok"] is False and "has SUPERUSER" in check["problem"] and "throwaway" in check["problem"]
    assert "backupctl_restore_test" not in postgresql.psql("SELECT string_agg(datname, ',') FROM pg_database")


def test_the_production_fallback_refuses_a_role_that_can_run_programs(open_dir: Path, postgresql):
    """Not a superuser, but a member of pg_execute_server_program: COPY ... TO PROGRAM in a
    dump written with the key would run a shell command as the server's user."""
    escaped = PASSWORD.replace("'", "''")
    postgresql.psql(f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'operateur') THEN "
                    f"CREATE ROLE operateur LOGIN CREATEDB PASSWORD '{escaped}'; END IF; END $$;")
    postgresql.psql("GRANT pg_execute_server_program TO operateur")
    postgresql.psql("GRANT pg_read_all_data TO operateur")  # to dump the practice's tables
    bk = _service_world(open_dir)
    write(bk.src / "lettre.txt", "Madame, " * 100)
    _server_config(bk, "postgresql", postgresql.port, user="operateur", restore_test="production")
    bk.init()
    assert bk.backup()["databases_dumped"]
    result = bk.run("restore-test", "--scratch-dir", str(bk.base / "scratch"), "--json")
    assert result.returncode == 13
    (check,) = result.json()["databases"]
    assert check["ok"] is False and "pg_execute_server_program" in check["problem"], check
    assert "backupctl_restore_test" not in postgresql.psql("SELECT string_agg(datname, ',') FROM pg_database")


# ---- the restore test never runs repository SQL on the production server (issue 16, point 5) ----


def test_a_crafted_dump_runs_only_in_the_throwaway_server(open_dir: Path, postgresql):
    """A dump whose restore runs SQL (a CHECK constraint calling a function, evaluated for each
    row loaded): it alters the loading role on the whole server, creates a table, and tries a
    shell command. All of it stays in the throwaway server, which is gone afterwards."""
    marker = open_dir / "commande-executee"
    postgresql.psql("CREATE DATABASE piege OWNER backupctl")
    postgresql.psql(f"""
        CREATE FUNCTION public.piege(n int) RETURNS boolean LANGUAGE plpgsql AS $f$
        BEGIN
          IF pg_catalog.current_database() = 'piege' THEN RETURN true; END IF;  -- only where it is loaded
          EXECUTE pg_catalog.format('ALTER ROLE %I SET application_name = %L', current_user, 'intrus');
          CREATE TABLE IF NOT EXISTS public.intrusion (n int);
          BEGIN
            EXECUTE 'COPY (SELECT 1) TO PROGRAM ''touch {marker}''';
          EXCEPTION WHEN insufficient_privilege THEN NULL;
          END;
          RETURN true;
        END $f$;
        CREATE TABLE public.appat (n int CHECK (public.piege(n)));
        INSERT INTO public.appat VALUES (1), (2);
        ALTER FUNCTION public.piege(int) OWNER TO backupctl; ALTER TABLE public.appat OWNER TO backupctl;
        """, database="piege")
    try:
        bk = _service_world(open_dir)
        write(bk.src / "lettre.txt", "Madame, " * 100)
        _server_config(bk, "postgresql", postgresql.port, database="piege")
        bk.init()
        assert bk.backup()["databases_dumped"]
        databases_before = postgresql.psql("SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database")
        result = bk.run("restore-test", "--scratch-dir", str(bk.base / "scratch"), "--json")
        assert result.returncode == 0, str(result)
        # Nothing of the dump's SQL reached the practice's server: no role altered, no table, no database ...
        assert postgresql.psql("SELECT rolname FROM pg_roles WHERE rolconfig IS NOT NULL") == ""
        assert postgresql.psql("SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database") == databases_before
        for database in ("piege", "cabinet"):
            assert postgresql.psql("SELECT count(*) FROM pg_tables WHERE tablename = 'intrusion'", database) == "0\n"
        # ... though it did run (its table is counted), in the throwaway server.
        (check,) = result.json()["databases"]
        assert check["loaded_into"] == "throwaway" and check["rows"] == {"public.appat": 2, "public.intrusion": 0}
        # The loading role is no superuser even there: no shell command ran.
        assert not marker.exists()
        _assert_throwaway_gone(bk)
    finally:
        postgresql.psql("ALTER ROLE backupctl RESET ALL")
        postgresql.psql("DROP DATABASE piege WITH (FORCE)")


def test_names_with_quotes_are_quoted(open_dir: Path, postgresql):
    """A database, a schema and a table named with ' and " (the dump's names come from its writer)."""
    postgresql.psql('CREATE DATABASE "d\'b""c" OWNER backupctl')
    postgresql.psql('SET ROLE backupctl; CREATE SCHEMA "s\'c""h"; CREATE TABLE "s\'c""h"."t\'a""b" (n int); '
                    'INSERT INTO "s\'c""h"."t\'a""b" VALUES (1), (2), (3); CREATE TABLE public."x|y" (n int);',
                    database='d\'b"c')
    try:
        bk = _service_world(open_dir)
        write(bk.src / "lettre.txt", "Madame, " * 100)
        _server_config(bk, "postgresql", postgresql.port, database='d\'b"c')
        bk.init()
        assert bk.backup()["databases_dumped"]
        result = bk.run("restore-test", "--scratch-dir", str(bk.base / "scratch"), "--json")
        assert result.returncode == 0, str(result)
        (check,) = result.json()["databases"]
        assert check["rows"] == {'"s\'c""h"."t\'a""b"': 3, 'public."x|y"': 0}
        # The production fallback quotes its own names too.
        _server_config(bk, "postgresql", postgresql.port, database='d\'b"c', restore_test="production")
        result = bk.run("restore-test", "--scratch-dir", str(bk.base / "scratch"), "--json")
        assert result.returncode == 0, str(result)
        assert result.json()["databases"][0]["rows"] == {'"s\'c""h"."t\'a""b"': 3, 'public."x|y"': 0}
    finally:
        postgresql.psql('DROP DATABASE "d\'b""c" WITH (FORCE)')


def test_as_root_the_throwaway_server_never_runs_as_root(bk: Backupctl, postgresql):
    """The world's state dir belongs to root: no unprivileged user to run the server as."""
    write(bk.src / "lettre.txt", "Madame, " * 100)
    _server_config(bk, "postgresql", postgresql.port)
    bk.init()
    bk.backup()
    result = bk.run("restore-test", "--scratch-dir", str(bk.base / "scratch"), "--json")
    assert result.returncode == 13
    (check,) = result.json()["databases"]
    assert check["ok"] is False and "must not run as root" in check["problem"]
    assert "sudo -u backupctl" in check["problem"] and "chown" in check["problem"]


def test_a_killed_restore_test_leaves_a_server_that_the_next_one_removes(open_dir: Path, postgresql):
    bk = _service_world(open_dir)
    write(bk.src / "lettre.txt", "Madame, " * 100)
    _server_config(bk, "postgresql", postgresql.port)
    bk.init()
    bk.backup()
    # A process that starts a throwaway server and dies without stopping it (SIGKILL, power cut).
    crash = subprocess.run([*as_user(NOBODY), sys.executable, "-c", (
        "import os, sys\n"
        "from agent.engine.throwaway_db import PostgreSQLServer\n"
        "server = PostgreSQLServer(sys.argv[1], timeout=60).__enter__()\n"
        "os._exit(0)\n"), str(bk.state)], env=base_env(), cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert crash.returncode == 0, crash.stderr
    assert len(_our_server_processes(bk)) >= 1 and len(list((bk.state / "restore-test-databases").iterdir())) == 1
    result = bk.run("restore-test", "--scratch-dir", str(bk.base / "scratch"), "--json")
    assert result.returncode == 0, str(result)
    _assert_throwaway_gone(bk)


def _mariadb_config(bk: Backupctl, port: int, database: str) -> None:
    bk.write_config(extra_repo_lines=f"""
[[databases]]
name = "agenda"
type = "mariadb"
host = "127.0.0.1"
port = {port}
user = "backupctl"
database = "{database}"
password_file = "{_secret(bk)}"
""")


def test_the_restore_test_loads_a_mariadb_dump_into_a_throwaway_server(open_dir: Path, mariadb):
    mariadb.sql("CREATE DATABASE IF NOT EXISTS agenda; CREATE TABLE IF NOT EXISTS agenda.rdv (id int PRIMARY KEY);"
                "CREATE TABLE IF NOT EXISTS agenda.`t'a\"b``c` (n int); DELETE FROM agenda.rdv;"
                "DELETE FROM agenda.`t'a\"b``c`; INSERT INTO agenda.rdv VALUES (1), (2), (3);"
                "INSERT INTO agenda.`t'a\"b``c` VALUES (7), (8);")
    bk = _service_world(open_dir)
    write(bk.src / "lettre.txt", "Madame, " * 100)
    _mariadb_config(bk, mariadb.port, "agenda")
    bk.init()
    assert bk.backup()["databases_dumped"] == ["/backupctl-databases/mariadb/agenda.sql"]
    databases_before = mariadb.sql("SHOW DATABASES")
    result = bk.run("restore-test", "--scratch-dir", str(bk.base / "scratch"), "--json")
    assert result.returncode == 0, str(result)
    (check,) = result.json()["databases"]
    assert check["ok"] is True and check["loaded_into"] == "throwaway"
    assert check["rows"] == {"agenda.rdv": 3, "agenda.t'a\"b`c": 2}
    assert mariadb.sql("SHOW DATABASES") == databases_before
    _assert_throwaway_gone(bk)


CRAFTED_MARIADB_DUMP = """#!/bin/sh
# A "dump" written by whoever holds the key: plain SQL with a shell escape of the client.
cat <<'SQL'
CREATE DATABASE intrusion;
\\! touch {marker}
SQL
"""


def test_a_crafted_mariadb_dump_stays_in_the_throwaway_server(open_dir: Path, mariadb):
    marker = open_dir / "commande-executee"
    bk = _service_world(open_dir)
    write(bk.src / "lettre.txt", "Madame, " * 100)
    _mariadb_config(bk, mariadb.port, "cabinet")
    bk.init()
    folder = bk.base / "bin"
    folder.mkdir()
    (folder / "mariadb-dump").write_text(CRAFTED_MARIADB_DUMP.format(marker=marker))
    (folder / "mariadb-dump").chmod(0o755)
    result = _run(bk, "backup", "--json", env_extra={"PATH": f"{folder}:{os.environ['PATH']}"})
    assert result.returncode == 0 and json.loads(result.stdout)["databases_dumped"], result.stderr
    result = bk.run("restore-test", "--scratch-dir", str(bk.base / "scratch"), "--json")
    (check,) = result.json()["databases"]
    # The client's shell escape is refused (--sandbox): the load fails, and says so.
    assert result.returncode == 13 and check["ok"] is False and "sandbox" in check["problem"], str(result)
    assert not marker.exists()
    assert "intrusion" not in mariadb.sql("SHOW DATABASES")
    _assert_throwaway_gone(bk)


SLOW_PG_RESTORE = """#!/bin/sh
touch "{started}"
sleep 60
exec {real} "$@"
"""


def test_sigterm_stops_and_wipes_the_throwaway_server(open_dir: Path, postgresql):
    """The daemon stops a job with SIGTERM: the server being loaded is stopped and removed."""
    bk = _service_world(open_dir)
    write(bk.src / "lettre.txt", "Madame, " * 100)
    _server_config(bk, "postgresql", postgresql.port)
    bk.init()
    bk.backup()
    # The PostgreSQL programs of this folder (first on PATH) are used, pg_restore taking its time.
    folder, flags = open_dir / "bin", open_dir / "flags"
    folder.mkdir()
    flags.mkdir(mode=0o777)
    flags.chmod(0o777)
    for tool in ("initdb", "postgres", "psql"):
        (folder / tool).symlink_to(postgresql.bin / tool)
    started = flags / "pg_restore-started"
    (folder / "pg_restore").write_text(SLOW_PG_RESTORE.format(started=started, real=postgresql.bin / "pg_restore"))
    (folder / "pg_restore").chmod(0o755)
    agent = subprocess.Popen(bk.command("restore-test", "--scratch-dir", str(bk.base / "scratch")),
                             env={**base_env(), "PATH": f"{folder}:{os.environ['PATH']}"}, cwd=bk.base,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not started.exists():
        assert agent.poll() is None and time.monotonic() < deadline, agent.communicate()
        time.sleep(0.2)
    assert any("postgres" in p for p in _our_server_processes(bk))
    agent.send_signal(signal.SIGTERM)
    _out, err = agent.communicate(timeout=60)
    assert agent.returncode != 0 and b"SIGTERM" in err, err
    _assert_throwaway_gone(bk)


def _dead_pid() -> int:
    """The pid of a process that has ended."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_a_deep_state_dir_puts_the_socket_in_a_short_private_folder(open_dir: Path, mariadb):
    """A Unix socket's path holds at most 107 bytes: past that, a fresh short folder, removed too."""
    deep = open_dir / ("dossier-du-cabinet-" * 5)
    deep.mkdir(mode=0o755)
    bk = _service_world(deep)
    assert len(str(bk.state / "restore-test-databases" / "123456-mariadb-0123abcd" / "s" / "m.sock")) > 107
    write(bk.src / "lettre.txt", "Madame, " * 100)
    _mariadb_config(bk, mariadb.port, "cabinet")
    bk.init()
    bk.backup()
    # The short folder is made in the temporary folder: this world's own (short too), not
    # /tmp, which other suites on the machine share.
    temporary = open_dir / "t"
    temporary.mkdir(mode=0o700)
    os.chown(temporary, NOBODY, NOBODY)
    # A leftover of a dead run, found by its name: the next run removes it.
    stale = temporary / f"{SOCKET_PREFIX}{_dead_pid()}-stale"
    stale.mkdir()
    os.chown(stale, NOBODY, NOBODY)
    result = bk.run("restore-test", "--scratch-dir", str(bk.base / "scratch"), "--json",
                    env={"TMPDIR": str(temporary)})
    assert result.returncode == 0, str(result)
    (check,) = result.json()["databases"]
    assert check["loaded_into"] == "throwaway" and check["rows"] == {"cabinet.patients": len(PATIENTS)}
    assert list(temporary.iterdir()) == []
    _assert_throwaway_gone(bk)


# ---- added by the security review: the throwaway servers' confinement, seen from inside ----------

PROBING_MARIADB_DUMP = """#!/bin/sh
# A "dump" that asks the server it is loaded into how it is confined: one row in a table
# for each confinement missing (TCP listening; file access not limited to a folder).
cat <<'SQL'
CREATE DATABASE sonde;
USE sonde;
CREATE TABLE reseau (n int);
INSERT INTO reseau SELECT 1 FROM DUAL WHERE @@skip_networking = 0;
CREATE TABLE fichiers (n int);
INSERT INTO fichiers SELECT 1 FROM DUAL WHERE @@secure_file_priv IS NULL OR @@secure_file_priv = '';
SQL
"""


def test_the_throwaway_mariadb_listens_on_no_port_and_reaches_no_file_outside_its_folder(open_dir: Path, mariadb):
    """What a dump written with the key can reach from inside the throwaway MariaDB: no TCP
    listener (--skip-networking), file access confined to a folder (--secure-file-priv)."""
    bk = _service_world(open_dir)
    write(bk.src / "lettre.txt", "Madame, " * 100)
    _mariadb_config(bk, mariadb.port, "cabinet")
    bk.init()
    folder = bk.base / "bin"
    folder.mkdir()
    (folder / "mariadb-dump").write_text(PROBING_MARIADB_DUMP)
    (folder / "mariadb-dump").chmod(0o755)
    result = _run(bk, "backup", "--json", env_extra={"PATH": f"{folder}:{os.environ['PATH']}"})
    assert result.returncode == 0 and json.loads(result.stdout)["databases_dumped"], result.stderr
    result = bk.run("restore-test", "--scratch-dir", str(bk.base / "scratch"), "--json")
    assert result.returncode == 0, str(result)
    (check,) = result.json()["databases"]
    assert check["loaded_into"] == "throwaway"
    assert check["rows"] == {"sonde.reseau": 0, "sonde.fichiers": 0}
    _assert_throwaway_gone(bk)


def test_the_throwaway_postgresql_listens_on_no_tcp_address(open_dir: Path, postgresql):
    """A CHECK constraint evaluated for each row loaded asks the throwaway server for its
    listen_addresses: the load fails (and the test with it) if it listens on TCP."""
    postgresql.psql("CREATE DATABASE sonde OWNER backupctl")
    postgresql.psql("""
        CREATE FUNCTION public.sans_tcp(n int) RETURNS boolean LANGUAGE sql AS $f$
          SELECT pg_catalog.current_database() = 'sonde' OR pg_catalog.current_setting('listen_addresses') = ''
        $f$;
        CREATE TABLE public.sonde (n int CHECK (public.sans_tcp(n)));
        INSERT INTO public.sonde VALUES (1);
        ALTER FUNCTION public.sans_tcp(int) OWNER TO backupctl; ALTER TABLE public.sonde OWNER TO backupctl;
        """, database="sonde")
    try:
        bk = _service_world(open_dir)
        write(bk.src / "lettre.txt", "Madame, " * 100)
        _server_config(bk, "postgresql", postgresql.port, database="sonde")
        bk.init()
        assert bk.backup()["databases_dumped"]
        result = bk.run("restore-test", "--scratch-dir", str(bk.base / "scratch"), "--json")
        assert result.returncode == 0, str(result)
        (check,) = result.json()["databases"]
        assert check["loaded_into"] == "throwaway" and check["rows"] == {"public.sonde": 1}
        _assert_throwaway_gone(bk)
    finally:
        postgresql.psql("DROP DATABASE sonde WITH (FORCE)")

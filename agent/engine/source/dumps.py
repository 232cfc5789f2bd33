"""Consistent dumps of the practice's databases, streamed into the snapshot.

Copying a live database's files gives a backup that may not open; a dump by the database
itself is consistent. Each [[databases]] entry becomes one file of the snapshot,
/backupctl-databases/<type>/<name>.<ext>, whose bytes come straight from the dump
program's standard output into the chunker: no copy of patient data is left on disk.

* PostgreSQL: `pg_dump --format=custom` (compressed, restorable table by table with
  pg_restore). The password, if any, goes through a pgpass file (0600, in a private
  folder of the state dir, agent/engine/source/db_credentials.py, removed when pg_dump exits),
  never on a command line that `ps` shows.
* MariaDB / MySQL: `mariadb-dump` (or `mysqldump`) `--single-transaction` (a consistent
  read of InnoDB tables without locking the practice software out), with routines,
  events and triggers. Credentials through a temporary option file given by
  `--defaults-extra-file`, likewise private.
* Every client gets a clean environment (agent/child_env.py): no passphrase, no S3 keys,
  not even a PGPASSWORD or PGHOST of the shell that started the agent.
* SQLite: Python's online backup API into memory, then its serialized image: consistent
  even while the software writes.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import sqlite3
import subprocess
import threading
from dataclasses import dataclass
from typing import IO, Iterator

from agent.child_env import child_environment
from agent.engine.source import db_credentials
from agent.errors import BackupctlError, SourceError
from agent.state.files import read_private_file

DATABASE_TYPES = ("postgresql", "mariadb", "mysql", "sqlite")
DUMP_FOLDER = b"backupctl-databases"
EXTENSIONS = {"postgresql": "pgdump", "mariadb": "sql", "mysql": "sql", "sqlite": "sqlite"}
STDERR_KEPT = 4000  # bytes of a failing dump's messages kept for the warning


@dataclass(frozen=True)
class DatabaseSettings:
    """[[databases]] in the configuration: one database dumped into every snapshot."""

    name: str  # file name in the snapshot: /backupctl-databases/<type>/<name>.<ext>
    type: str  # one of DATABASE_TYPES
    database: str | None = None  # server databases: the database to dump
    host: str | None = None  # a host name or address, or a socket (PostgreSQL: its folder; MariaDB: the file)
    port: int | None = None
    user: str | None = None
    password_file: str | None = None  # the password alone, mode 0600; else the client's own files
    options_file: str | None = None  # PostgreSQL: a pgpass file; MariaDB/MySQL: an option file ([client]) used
    #                                  instead of host, port, user and password_file
    path: str | None = None  # SQLite: the database file
    timeout: int = 3600  # seconds a dump may take
    # The restore test loads a PostgreSQL or MariaDB/MySQL dump: "throwaway" into a server it starts
    # for it alone (agent/engine/throwaway_db.py), "production" into a scratch database on the
    # practice's own server (PostgreSQL only), or "none" (read and verified only).
    restore_test: str = "throwaway"

    @property
    def server_database(self) -> str:
        """`database`, which the configuration requires of every type but SQLite."""
        assert self.database is not None, f"[[databases]] {self.name}: no database (config requires one)"
        return self.database


class DumpError(SourceError):
    """A database dump failed: the snapshot is saved without it, with a warning."""


@dataclass(frozen=True)
class Dump:
    settings: DatabaseSettings
    state_dir: str  # its credentials folder holds the client's password file while it runs

    @property
    def path(self) -> bytes:
        """Where the dump is in the snapshot (relative to its root)."""
        name = f"{self.settings.name}.{EXTENSIONS[self.settings.type]}".encode()
        return b"/".join((DUMP_FOLDER, self.settings.type.encode(), name))

    @contextlib.contextmanager
    def open(self) -> Iterator[IO[bytes]]:
        """The dump's bytes as a stream; raises DumpError (at the end) if it failed."""
        if self.settings.type == "sqlite":
            yield io.BytesIO(_sqlite_image(self.settings))
            return
        with contextlib.ExitStack() as credentials:  # the password file goes as soon as the client is gone
            try:
                private = credentials.enter_context(db_credentials.private_folder(self.state_dir))
            except (BackupctlError, OSError) as exc:
                raise DumpError(f"database {self.settings.name}: no private folder for its credentials "
                                f"({exc})") from None
            argv, env = _command(self.settings, private)
            try:
                process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                           stderr=subprocess.PIPE, env=env)
            except OSError as exc:
                raise DumpError(f"database {self.settings.name}: {argv[0]} cannot be started ({exc.strerror}); "
                                f"install the database's client tools") from None
            assert process.stdout is not None  # stdout=PIPE
            errors = bytearray()
            reader = threading.Thread(target=drain, args=(process.stderr, errors), daemon=True)
            reader.start()
            timed_out = threading.Event()

            def stop() -> None:
                timed_out.set()
                process.kill()

            timer = threading.Timer(self.settings.timeout, stop)
            timer.start()
            try:
                yield process.stdout
                process.stdout.read()  # whatever the consumer left: let the dump finish
                code = process.wait()
            except BaseException:
                process.kill()
                process.wait()
                raise
            finally:
                timer.cancel()
                reader.join(5)
                process.stdout.close()
            if code != 0:
                why = f"stopped after {self.settings.timeout} s" if timed_out.is_set() else f"exit code {code}"
                raise DumpError(f"database {self.settings.name}: {os.path.basename(argv[0])} failed ({why}): "
                                f"{telling_line(errors)}")


def telling_line(errors: bytes | bytearray) -> str:
    """The line of a client's messages that says what went wrong (FATAL/error), else the last."""
    lines = [line.strip() for line in bytes(errors).decode("utf-8", "replace").splitlines() if line.strip()]
    telling = [line for line in lines if "FATAL" in line or "error" in line.lower()]
    return (telling or lines or ["no message"])[0 if telling else -1][:300]


def drain(stream: IO[bytes], into: bytearray) -> None:
    for line in stream:
        into.extend(line)
        del into[:-STDERR_KEPT]


def _password(settings: DatabaseSettings) -> str | None:
    if not settings.password_file:
        return None
    try:
        return read_private_file(settings.password_file,
                                 where=f"[[databases]] {settings.name}: password_file ").decode("utf-8")
    except BackupctlError as exc:
        raise DumpError(str(exc)) from None


def tool(*names: str) -> str:
    return next((found for name in names if (found := shutil.which(name))), names[0])


def postgresql_connection(settings: DatabaseSettings, private: str) -> tuple[list[str], dict[str, str]]:
    """The options and environment every PostgreSQL client here (pg_dump, psql, pg_restore)
    connects with; a password goes through a pgpass file in `private`."""
    env: dict[str, str] = {}
    options = ["--no-password"]
    if settings.host:
        options.append(f"--host={settings.host}")
    if settings.port:
        options.append(f"--port={settings.port}")
    if settings.user:
        options.append(f"--username={settings.user}")
    if settings.options_file:
        env["PGPASSFILE"] = settings.options_file
    password = _password(settings)
    if password is not None:
        line = ":".join(_pgpass_escape(v) for v in ("*", "*", "*", "*", password))
        env["PGPASSFILE"] = db_credentials.private_file(private, "pgpass", line + "\n")
    return options, child_environment(env)


def _command(settings: DatabaseSettings, private: str) -> tuple[list[str], dict[str, str]]:
    if settings.type == "postgresql":
        options, env = postgresql_connection(settings, private)
        return [tool("pg_dump"), "--format=custom", *options, f"--dbname={settings.database}"], env
    env = child_environment()
    password = _password(settings)
    # MariaDB and MySQL: --defaults-extra-file must be the first option.
    lines = ["[client]"]
    if settings.user:
        lines.append(f"user={_option_escape(settings.user)}")
    if password is not None:
        lines.append(f"password={_option_escape(password)}")
    if settings.host and settings.host.startswith("/"):
        lines.append(f"socket={settings.host}")
    elif settings.host:
        lines += [f"host={settings.host}", "protocol=tcp"]
    if settings.port:
        lines.append(f"port={settings.port}")
    argv = [tool("mariadb-dump", "mysqldump") if settings.type == "mariadb" else tool("mysqldump", "mariadb-dump")]
    defaults = settings.options_file or db_credentials.private_file(private, "client.cnf", "\n".join(lines) + "\n")
    argv.append(f"--defaults-extra-file={defaults}")
    argv += ["--single-transaction", "--routines", "--events", "--triggers", "--hex-blob", "--databases",
             settings.server_database]
    return argv, env


def _pgpass_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


def _option_escape(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _sqlite_image(settings: DatabaseSettings) -> bytes:
    """A consistent copy of the database, made in memory by SQLite's online backup."""
    try:
        source = sqlite3.connect(f"file:{settings.path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise DumpError(f"database {settings.name}: {settings.path} cannot be opened ({exc})") from None
    try:
        copy = sqlite3.connect(":memory:")
        try:
            source.backup(copy)
            return copy.serialize()
        finally:
            copy.close()
    except sqlite3.Error as exc:
        raise DumpError(f"database {settings.name}: the online backup of {settings.path} failed ({exc})") from None
    finally:
        source.close()

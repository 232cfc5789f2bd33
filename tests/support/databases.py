"""Real database servers for the tests: PostgreSQL and MariaDB from Debian's packages,
each started in a fresh data folder on a free loopback port (and a private socket), with
a practice-like database, and stopped at the end. `make test` installs the packages
(scripts/install-system-packages.sh); a missing server is a failure, not a skip."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

PASSWORD = "mot de passe: de la base 'cabinet'"  # spaces, colon and quote: escaping is tested too

PATIENTS = [(i, f"Patient {i}", f"19{50 + i % 50:02d}-0{1 + i % 9}-1{i % 9}") for i in range(1, 201)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _owned_folder(user: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix=f"backupctl-{user}-", dir="/tmp"))
    entry = pwd.getpwnam(user)
    os.chown(folder, entry.pw_uid, entry.pw_gid)
    os.chmod(folder, 0o700)
    return folder


def _as(user: str, *argv: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", user, "--", *argv], check=True, capture_output=True, text=True,
                          **kwargs)


@dataclass
class PostgreSQL:
    bin: Path
    data: Path
    socket_dir: Path
    port: int

    def psql(self, sql: str, database: str = "postgres") -> str:
        return _as("postgres", str(self.bin / "psql"), "-h", str(self.socket_dir), "-p", str(self.port), "-d",
                   database, "-v", "ON_ERROR_STOP=1", "-At", "-c", sql).stdout

    def stop(self) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", str(self.bin / "pg_ctl"), "-D", str(self.data), "-m",
                        "immediate", "stop"], capture_output=True)
        shutil.rmtree(self.data.parent, ignore_errors=True)


def start_postgresql() -> PostgreSQL:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    assert found, "PostgreSQL server is not installed: run `make test` (it installs Debian's postgresql)"
    bin_dir = Path(found[-1]).parent
    base = _owned_folder("postgres")
    data, sockets = base / "data", base / "sockets"
    _as("postgres", "mkdir", str(sockets))
    _as("postgres", str(bin_dir / "initdb"), "-D", str(data), "--auth-local=trust", "--auth-host=scram-sha-256",
        "--username=postgres", "--encoding=UTF8", "--locale=C.UTF-8")
    port = free_port()
    _as("postgres", str(bin_dir / "pg_ctl"), "-D", str(data), "-w", "-l", str(base / "log"), "-o",
        f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
    server = PostgreSQL(bin_dir, data, sockets, port)
    escaped = PASSWORD.replace("'", "''")
    server.psql(f"CREATE ROLE backupctl LOGIN CREATEDB PASSWORD '{escaped}'")
    server.psql("CREATE DATABASE cabinet OWNER backupctl")
    rows = ",".join(f"({i}, '{name}', '{born}')" for i, name, born in PATIENTS)
    server.psql("CREATE TABLE patients (id int PRIMARY KEY, name text NOT NULL, born date);"
                "CREATE TABLE rendez_vous (id serial PRIMARY KEY, patient int REFERENCES patients, at timestamptz);"
                f"INSERT INTO patients VALUES {rows};"
                "INSERT INTO rendez_vous (patient, at) SELECT id, now() - id * interval '1 day' FROM patients;"
                "ALTER TABLE patients OWNER TO backupctl; ALTER TABLE rendez_vous OWNER TO backupctl;",
                database="cabinet")
    return server


@dataclass
class MariaDB:
    process: subprocess.Popen
    base: Path
    socket: Path
    port: int

    def sql(self, statement: str, database: str | None = None) -> str:
        argv = ["mariadb", "--no-defaults", f"--socket={self.socket}", "-u", "root", "-N", "-B", "-e", statement]
        if database:
            argv.insert(-2, database)
        return subprocess.run(argv, check=True, capture_output=True, text=True).stdout

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        shutil.rmtree(self.base, ignore_errors=True)


def start_mariadb() -> MariaDB:
    server_binary = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
    assert os.path.exists(server_binary), "MariaDB server is not installed: run `make test` (mariadb-server)"
    base = _owned_folder("mysql")
    data, sock = base / "data", base / "mysqld.sock"
    subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={data}", "--user=mysql",
                    "--auth-root-authentication-method=socket", "--skip-test-db"], check=True, capture_output=True)
    port = free_port()
    process = subprocess.Popen([server_binary, "--no-defaults", f"--datadir={data}", f"--socket={sock}",
                                f"--port={port}", "--bind-address=127.0.0.1", "--user=mysql", "--skip-log-bin",
                                f"--pid-file={base / 'mysqld.pid'}", "--innodb-flush-log-at-trx-commit=0"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = MariaDB(process, base, sock, port)
    deadline = time.monotonic() + 60
    while True:
        try:
            server.sql("SELECT 1")
            break
        except subprocess.CalledProcessError:
            if time.monotonic() > deadline or process.poll() is not None:
                server.stop()
                raise AssertionError("MariaDB did not start") from None
            time.sleep(0.3)
    escaped = PASSWORD.replace("\\", "\\\\").replace("'", "\\'")
    rows = ",".join(f"({i}, '{name}', '{born}')" for i, name, born in PATIENTS)
    server.sql(f"CREATE USER 'backupctl'@'127.0.0.1' IDENTIFIED BY '{escaped}';"
               "GRANT SELECT, SHOW VIEW, TRIGGER, LOCK TABLES, EVENT ON *.* TO 'backupctl'@'127.0.0.1';"
               "CREATE DATABASE cabinet CHARACTER SET utf8mb4;"
               "CREATE TABLE cabinet.patients (id int PRIMARY KEY, name varchar(100) NOT NULL, born date) "
               "ENGINE=InnoDB;"
               f"INSERT INTO cabinet.patients VALUES {rows};")
    return server

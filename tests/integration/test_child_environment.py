"""No secret reaches a child process (issue 16, point 3), and database clients' password files
live in a private folder of the state dir (point 7): every child the agent starts (a hook,
pg_dump, mariadb-dump, psql, pg_restore, the throwaway servers, Chromium) is replaced on PATH
by a wrapper that records its environment, then runs the real program; the agent runs with
the passphrase, S3 keys and other secrets in its own environment."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path


from tests.support.databases import PASSWORD

from .support import NOBODY, PASSPHRASE, Backupctl, base_env, write

SECRETS = {
    "BACKUPCTL_PASSPHRASE": PASSPHRASE,
    "AWS_ACCESS_KEY_ID": "AKIAFAUXCLEFDUCABINET",
    "AWS_SECRET_ACCESS_KEY": "secret-s3-du-cabinet-0123456789",
    "AWS_SESSION_TOKEN": "jeton-de-session-s3",
    "PGPASSWORD": "mot-de-passe-du-shell",
    "MYSQL_PWD": "autre-mot-de-passe-du-shell",
    "CABINET_API_TOKEN": "jeton-du-logiciel",
}
WRAPPER = """#!/bin/sh
# Records the environment it was given (one file per process: servers start in parallel), then
# runs the real program.
{{ echo "== {name}"; env; {extra} }} > "{logs}/{name}.$$"
exec {real} "$@"
"""
PGPASSFILE_PROBE = ('[ -n "$PGPASSFILE" ] && echo "PGPASSFILE_FOUND=$PGPASSFILE '
                    'mode=$(stat -c %a "$PGPASSFILE") folder=$(stat -c %a "$(dirname "$PGPASSFILE")")";')


class Spy:
    """A folder of wrappers, first on PATH, all writing to one log (writable by the service
    user, as which the throwaway servers run)."""

    def __init__(self, base: Path) -> None:
        self.folder = base / "spy-bin"
        self.folder.mkdir(mode=0o755)
        self.logs = base / "spy-log"
        self.logs.mkdir(mode=0o777)
        self.logs.chmod(0o777)

    def wrap(self, name: str, real: str, *, extra: str = "") -> Path:
        wrapper = self.folder / name
        wrapper.write_text(WRAPPER.format(name=name, real=real, logs=self.logs, extra=extra))
        wrapper.chmod(0o755)
        return wrapper

    def environments(self) -> dict[str, list[dict[str, str]]]:
        """{program: [its environment, each time it ran]}"""
        found: dict[str, list[dict[str, str]]] = {}
        for record in sorted(self.logs.iterdir()):
            lines = record.read_text().splitlines()
            name = lines[0].removeprefix("== ")
            found.setdefault(name, []).append(dict(line.split("=", 1) for line in lines[1:] if "=" in line))
        return found

    def agent_env(self, **extra: str) -> dict[str, str]:
        env = {**base_env(), **SECRETS, **extra, "PATH": f"{self.folder}:{os.environ['PATH']}"}
        return env


def _assert_no_secret(environments: dict[str, list[dict[str, str]]], expected: set[str]) -> None:
    assert expected <= set(environments), f"not every child ran: {sorted(environments)}"
    for name, runs in environments.items():
        for env in runs:
            leaked = {key for key in env if key in SECRETS or key.startswith("AWS_")
                      or key in ("CREDENTIALS_DIRECTORY", "BACKUPCTL_CHROMIUM")}
            assert not leaked, f"{name} received {sorted(leaked)}"
            for key, value in env.items():
                for secret in SECRETS.values():
                    assert secret not in value, f"{name} received a secret in {key}"


def _run(bk: Backupctl, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(bk.command(*args), env=env, cwd=bk.base, capture_output=True, text=True, timeout=600)


def _world(open_dir: Path, postgresql, mariadb, *, restore_test: str = "throwaway") -> Backupctl:
    """A world of the service user (nobody), a hook, a PostgreSQL and a MariaDB database."""
    bk = Backupctl(open_dir)
    bk.state.mkdir(mode=0o700)
    os.chown(bk.state, NOBODY, NOBODY)
    write(bk.src / "lettre.txt", "Madame, " * 100)
    secret = bk.base / "db-password"
    secret.write_text(PASSWORD + "\n")
    secret.chmod(0o600)
    bk.write_config(extra_repo_lines=f"""
[[databases]]
name = "cabinet"
type = "postgresql"
host = "127.0.0.1"
port = {postgresql.port}
user = "backupctl"
database = "cabinet"
password_file = "{secret}"
{"" if restore_test == "throwaway" else f'restore_test = "{restore_test}"'}
[[databases]]
name = "agenda"
type = "mariadb"
host = "127.0.0.1"
port = {mariadb.port}
user = "backupctl"
database = "cabinet"
password_file = "{secret}"
[[hooks]]
name = "instantané"
before = ["sh", "-c", "{{ echo '== hook'; env; }} > {bk.base / 'spy-log'}/hook.$$"]
environment = {{ LOGICIEL = "cabinet" }}
""")
    # The service user runs the commands, as on a server (root may not write its files).
    for path in (bk.base, bk.src, bk.src / "lettre.txt", bk.state, bk.config, secret):
        os.chown(path, NOBODY, NOBODY)
    bk.user = NOBODY
    bk.init()
    return bk


def test_no_secret_reaches_a_hook_or_a_dump_client(open_dir: Path, postgresql, mariadb):
    spy = Spy(open_dir)
    bk = _world(open_dir, postgresql, mariadb)
    spy.wrap("pg_dump", str(postgresql.bin / "pg_dump"), extra=PGPASSFILE_PROBE)
    spy.wrap("mariadb-dump", "/usr/bin/mariadb-dump")
    credentials = open_dir / "credentials-of-systemd"
    credentials.mkdir()
    result = _run(bk, spy.agent_env(CREDENTIALS_DIRECTORY=str(credentials)), "backup", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["database_failures"] == 0
    environments = spy.environments()
    _assert_no_secret(environments, {"hook", "pg_dump", "mariadb-dump"})
    (hook,) = environments["hook"]
    # What a hook gets: the allow-list, and its own environment table (docs/REFERENCE.md, "The practice database:
    # dumps and hooks").
    assert hook["LOGICIEL"] == "cabinet" and hook["PATH"].startswith(str(spy.folder)) and hook["LANG"]
    # The PostgreSQL password went through a file, in the private folder of the state dir.
    (dump,) = environments["pg_dump"]
    found = re.fullmatch(r"(\S+) mode=(\d+) folder=(\d+)", dump["PGPASSFILE_FOUND"])
    assert found, dump["PGPASSFILE_FOUND"]
    path, mode, folder_mode = found.groups()
    assert Path(path).parent.parent == bk.state / "credentials" and (mode, folder_mode) == ("600", "700")
    assert list((bk.state / "credentials").iterdir()) == []  # removed when the client exited


def test_no_secret_reaches_the_throwaway_servers_their_clients_or_chromium(open_dir: Path, postgresql, mariadb):
    spy = Spy(open_dir)
    bk = _world(open_dir, postgresql, mariadb)
    assert subprocess.run(bk.command("backup"), env=base_env(), capture_output=True).returncode == 0
    for tool in ("initdb", "postgres", "psql", "pg_restore"):
        spy.wrap(tool, str(postgresql.bin / tool))
    for tool in ("mariadbd", "mariadb-install-db", "mariadb"):
        spy.wrap(tool, shutil.which(tool) or f"/usr/sbin/{tool}")
    chromium = spy.wrap("chromium-spy", shutil.which("chromium"))
    result = _run(bk, spy.agent_env(BACKUPCTL_CHROMIUM=str(chromium)), "restore-test", "--scratch-dir",
                  str(bk.base / "scratch"), "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert [d["loaded_into"] for d in document["databases"]] == ["throwaway", "throwaway"]
    assert document["report"]["pdf"]
    _assert_no_secret(spy.environments(), {"initdb", "postgres", "psql", "pg_restore", "mariadbd",
                                            "mariadb-install-db", "mariadb", "chromium-spy"})


def test_no_secret_reaches_the_production_fallback_clients(open_dir: Path, postgresql, mariadb):
    spy = Spy(open_dir)
    bk = _world(open_dir, postgresql, mariadb, restore_test="production")
    assert subprocess.run(bk.command("backup"), env=base_env(), capture_output=True).returncode == 0
    for tool in ("psql", "pg_restore"):
        spy.wrap(tool, str(postgresql.bin / tool), extra=PGPASSFILE_PROBE)
    result = _run(bk, spy.agent_env(), "restore-test", "--scratch-dir", str(bk.base / "scratch"), "--json")
    assert result.returncode == 0, result.stderr
    environments = spy.environments()
    _assert_no_secret(environments, {"psql", "pg_restore"})
    for env in environments["psql"] + environments["pg_restore"]:
        assert env["PGPASSFILE_FOUND"].startswith(str(bk.state / "credentials") + "/")
    assert list((bk.state / "credentials").iterdir()) == []


def test_a_crash_leftover_credentials_folder_is_removed_at_the_next_dump(open_dir: Path, postgresql, mariadb):
    Spy(open_dir)
    bk = _world(open_dir, postgresql, mariadb)
    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid that no longer runs
    leftover = bk.state / "credentials" / f"{dead.pid}-0123456789ab"
    leftover.mkdir(parents=True, mode=0o700)
    (leftover / "pgpass").write_text("*:*:*:*:secret\n")
    running = bk.state / "credentials" / f"{os.getpid()}-ba9876543210"  # another run, still going: kept
    running.mkdir(mode=0o700)
    for path in (bk.state / "credentials", leftover, leftover / "pgpass", running):  # the service's own
        os.chown(path, NOBODY, NOBODY)
    result = subprocess.run(bk.command("backup", "--json"), env=base_env(), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert not leftover.exists() and running.exists()

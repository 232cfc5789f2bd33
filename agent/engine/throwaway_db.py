"""Throwaway database servers for the restore test: a dump read from the repository is loaded
into a server that the restore test starts for it alone, then stops and wipes.

Why: a dump is SQL (or, for pg_restore, a list of SQL statements). Whoever holds the key can
write a dump that decrypts correctly and says anything: `CREATE TABLE` in the practice's live
database, `COPY ... TO PROGRAM` (a shell command) if the role is a superuser. Loaded into the
production server, that runs there. Loaded into a throwaway server it runs in a scratch
instance that nothing else uses, which is gone a minute later:

* its own data folder (initdb / mariadb-install-db), under state_dir/restore-test-databases/,
  never the practice's files;
* no TCP at all (PostgreSQL: listen_addresses = ''; MariaDB: --skip-networking); a Unix
  socket in a folder only the agent can enter (0700), so nobody else can even connect;
* run as the unprivileged service user, never root: when the agent itself runs as root (a
  restore test by hand), the servers and their clients run as the owner of the state dir
  (the `backupctl` user of systemd/), and the restore test refuses if that owner is root;
  capabilities the daemon holds (CAP_DAC_READ_SEARCH, to read the practice files) are dropped;
* PostgreSQL dumps are loaded by a role that is not a superuser (no COPY TO PROGRAM, no
  server file access); MariaDB's file access is confined to an empty folder
  (--secure-file-priv) and its client runs in --sandbox mode (no shell escapes);
* stopped (immediate shutdown) and removed in a `finally`, which SIGTERM reaches too
  (agent/cli/main.py turns it into an exception); a run killed outright leaves a folder that
  the next restore test stops and removes.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from typing import Any, Callable, Self

from agent.child_env import child_environment
from agent.errors import BackupctlError
from agent.processes import process_exists
from agent.state.layout import StateLayout

START_TIMEOUT_S = 120
STOP_TIMEOUT_S = 30
SOCKET_PATH_MAX = 100  # sun_path holds 108 bytes with its final NUL; keep a margin
SOCKET_PREFIX = "backupctl-db-"  # short socket folders in the temporary folder: backupctl-db-<pid>-<random>
POSTGRESQL_PORT = 5432  # only names the socket file (.s.PGSQL.5432): no TCP listener exists
ADMIN = "backupctl_admin"  # the throwaway's superuser: creates the loading role, nothing else
LOADER = "restore_test"  # owns the scratch database and loads the dump; not a superuser
PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 47, 4  # linux/prctl.h


class Unavailable(BackupctlError):
    """No throwaway server can run here: its programs are not installed."""


class ServerFailed(BackupctlError):
    """The throwaway server or one of its clients failed (to start, to answer)."""


class NoServerUser(BackupctlError):
    """Run as root with a state dir of root's: no unprivileged user to run the server as."""


def _server_owner(state_dir: str) -> tuple[int, int] | None:
    """(uid, gid) the servers run as when we are root; None when we already are unprivileged."""
    if os.geteuid() != 0:
        return None
    found = os.stat(state_dir)
    if found.st_uid == 0:
        raise NoServerUser(f"the throwaway database server must not run as root, and the state dir {state_dir} "
                          f"belongs to root; run restore-test as the service user (sudo -u backupctl backupctl "
                          f"restore-test) or give the state dir to that user (chown -R backupctl: {state_dir})")
    return found.st_uid, found.st_gid


def _ambient_capabilities() -> bool:
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            return any(line.startswith("CapAmb:") and int(line.split()[1], 16) for line in handle)
    except (OSError, ValueError):
        return False


def _clear_ambient() -> Callable[[], None] | None:
    """A preexec function dropping the ambient capabilities (the daemon's CAP_DAC_READ_SEARCH) in
    the child, or None when there are none (preexec functions are best avoided in threads)."""
    if not _ambient_capabilities():
        return None
    import ctypes  # only here: the one place a system call Python lacks is needed
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def clear() -> None:
        prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    return clear


def clean_stale(state_dir: str) -> list[str]:
    """Stop and remove the servers left by restore tests that no longer run (killed, power cut)."""
    base = StateLayout(state_dir).restore_test_databases()
    removed: list[str] = []
    try:
        names = os.listdir(base)
    except OSError:
        return removed
    for name in names:
        pid = name.partition("-")[0]
        if pid.isdigit() and int(pid) != os.getpid() and process_exists(int(pid)):
            continue  # another restore test, still running
        folder = os.path.join(base, name)
        _kill_server_of(folder)
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(name)
    # Short socket folders of dead runs. Found by their name, never through anything written in
    # the server's folder (the server's user could point that anywhere; root would remove it).
    temporary = tempfile.gettempdir()
    for name in os.listdir(temporary):
        pid = name.removeprefix(SOCKET_PREFIX).partition("-")[0]
        path = os.path.join(temporary, name)
        if not (name.startswith(SOCKET_PREFIX) and pid.isdigit() and not process_exists(int(pid))):
            continue
        with contextlib.suppress(OSError):
            if stat.S_ISDIR(os.lstat(path).st_mode):  # a symlink of that name is not followed
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    return removed


def _kill_server_of(folder: str) -> None:
    """Kill the server still running on `folder`'s data, if any: only a process whose command
    line names that folder (a reused pid is someone else's)."""
    for pid_file in (os.path.join(folder, "data", "postmaster.pid"), os.path.join(folder, "server.pid")):
        try:
            with open(pid_file, encoding="ascii") as handle:
                pid = int(handle.readline().strip())
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                cmdline = handle.read()
        except (OSError, ValueError):
            continue
        if os.fsencode(folder) in cmdline:
            os.kill(pid, signal.SIGKILL)
            for _ in range(100):
                if not process_exists(pid):
                    break
                time.sleep(0.05)


class ThrowawayServer:
    """One server's life: `with PostgreSQLServer(state_dir) as server:` starts it, and the end of
    the block stops it and removes its folder."""

    kind = ""
    stop_signal = signal.SIGKILL

    def __init__(self, state_dir: str, *, timeout: float) -> None:
        self.state_dir = os.path.abspath(state_dir)
        self.timeout = timeout
        self.folder = ""
        self.socket_folder = ""
        self.process: subprocess.Popen[bytes] | None = None
        self.owner: tuple[int, int] | None = None

    # -- the folder ---------------------------------------------------------------------------

    def _prepare(self) -> None:
        self._check_binaries()
        self.owner = _server_owner(self.state_dir)
        base = StateLayout(self.state_dir).restore_test_databases()
        os.makedirs(base, mode=0o700, exist_ok=True)
        self._own(base)
        clean_stale(self.state_dir)
        self.folder = os.path.join(base, f"{os.getpid()}-{self.kind}-{os.urandom(4).hex()}")
        os.mkdir(self.folder, 0o700)
        self._own(self.folder)
        sockets = os.path.join(self.folder, "s")
        if len(sockets) + len("/.s.PGSQL.5432") > SOCKET_PATH_MAX:
            # A deep state dir: the socket goes to a short private folder (mkdtemp: new, random, 0700).
            sockets = tempfile.mkdtemp(prefix=f"{SOCKET_PREFIX}{os.getpid()}-")
        else:
            os.mkdir(sockets, 0o700)
        self._own(sockets)
        self.socket_folder = sockets

    def _own(self, path: str) -> None:
        found = os.lstat(path)
        if not stat.S_ISDIR(found.st_mode):
            raise ServerFailed(f"{path} is not a folder; remove it")
        if self.owner is not None and (found.st_uid, found.st_gid) != self.owner:
            os.chown(path, *self.owner, follow_symlinks=False)
        os.chmod(path, 0o700)

    # -- running things as the server user ----------------------------------------------------------

    def run_options(self) -> dict[str, Any]:
        """subprocess options: the unprivileged user, no ambient capabilities, a clean environment."""
        options: dict[str, Any] = {"env": child_environment({"HOME": self.folder}), "cwd": self.folder}
        if self.owner is not None:
            options.update(user=self.owner[0], group=self.owner[1], extra_groups=[])
        clear = _clear_ambient()
        if clear is not None:
            options["preexec_fn"] = clear
        return options

    def _run(self, argv: list[str], *, what: str, stdin: str | None = None) -> str:
        try:
            done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=self.timeout,
                                  **self.run_options())
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ServerFailed(f"{what}: {exc}") from None
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines() or ["no message"]
            raise ServerFailed(f"{what} failed: {lines[-1][:300]}")
        output: str = done.stdout  # text=True (the options' dict hides that from the overloads)
        return output

    def _start_process(self, argv: list[str]) -> None:
        log = open(os.path.join(self.folder, "server.log"), "ab")
        if self.owner is not None:
            os.fchown(log.fileno(), *self.owner)
        with log:
            self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                            start_new_session=True, **self.run_options())
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.process.poll() is not None:
                raise ServerFailed(f"the throwaway {self.kind} server stopped at once: {self._last_log_line()}")
            try:
                self.ready()
                return
            except ServerFailed:
                if time.monotonic() > deadline:
                    raise ServerFailed(f"the throwaway {self.kind} server did not start within {START_TIMEOUT_S} s: "
                                      f"{self._last_log_line()}") from None
                time.sleep(0.2)

    def _last_log_line(self) -> str:
        try:
            with open(os.path.join(self.folder, "server.log"), "rb") as handle:
                lines = [line for line in handle.read().decode("utf-8", "replace").splitlines() if line.strip()]
        except OSError:
            return "no message"
        return (lines or ["no message"])[-1][:300]

    # -- life ---------------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        try:
            self._prepare()
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop at once (nothing in it is worth a clean shutdown) and remove every file."""
        if self.process is not None and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, self.stop_signal)
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
            except ProcessLookupError:
                pass
        if self.socket_folder and not self.socket_folder.startswith(self.folder + "/"):
            shutil.rmtree(self.socket_folder, ignore_errors=True)
        if self.folder:
            shutil.rmtree(self.folder, ignore_errors=True)

    @property
    def wiped(self) -> bool:
        return not self.folder or not os.path.exists(self.folder)

    def _check_binaries(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        raise NotImplementedError

    def ready(self) -> None:
        raise NotImplementedError


POSTGRESQL_TOOLS = ("initdb", "postgres", "psql", "pg_restore")


def postgresql_bin() -> str | None:
    """The folder of the PostgreSQL server programs: the one on PATH that has them all (other
    distributions put them in /usr/bin), else the newest of Debian's /usr/lib/postgresql/<version>/bin
    (Debian's /usr/bin has psql and pg_restore, not the server)."""
    on_path = shutil.which("initdb")
    found = [os.path.dirname(p) for p in glob.glob("/usr/lib/postgresql/*/bin/postgres")]
    found.sort(key=lambda folder: int(folder.split("/")[-2]) if folder.split("/")[-2].isdigit() else 0)
    if on_path:
        found.append(os.path.dirname(on_path))
    for folder in reversed(found):
        if all(os.access(os.path.join(folder, tool), os.X_OK) for tool in POSTGRESQL_TOOLS):
            return folder
    return None


class PostgreSQLServer(ThrowawayServer):
    kind = "postgresql"
    stop_signal = signal.SIGQUIT  # PostgreSQL's "immediate shutdown"
    bin = ""  # the folder of its programs, found by _check_binaries

    def _check_binaries(self) -> None:
        folder = postgresql_bin()
        if folder is None:
            raise Unavailable("no PostgreSQL server is installed here (/usr/lib/postgresql/*/bin/postgres); "
                              "install Debian's postgresql package to load dumps in the restore test")
        self.bin = folder

    def tool(self, name: str) -> str:
        return os.path.join(self.bin, name)

    def start(self) -> None:
        data = os.path.join(self.folder, "data")
        self._run([self.tool("initdb"), f"--pgdata={data}", "--auth=trust", f"--username={ADMIN}",
                   "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync", "--no-instructions"],
                  what="initdb of the throwaway PostgreSQL")
        self._start_process([self.tool("postgres"), "-D", data, "-c", "listen_addresses=", "-c",
                             f"unix_socket_directories={self.socket_folder}", "-c", "unix_socket_permissions=0700",
                             "-p", str(POSTGRESQL_PORT), "-c", "fsync=off", "-c", "full_page_writes=off",
                             "-c", "synchronous_commit=off"])
        self.psql(ADMIN, "postgres", f"CREATE ROLE {LOADER} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE; "
                                     f"CREATE DATABASE {LOADER} OWNER {LOADER}")

    def connection(self, role: str) -> list[str]:
        return [f"--host={self.socket_folder}", f"--port={POSTGRESQL_PORT}", f"--username={role}", "--no-password"]

    def psql(self, role: str, database: str, sql: str) -> str:
        return self._run([self.tool("psql"), *self.connection(role), f"--dbname={database}", "--no-psqlrc",
                          "-v", "ON_ERROR_STOP=1", "-At", "-f", "-"], what="psql", stdin=sql)

    def ready(self) -> None:
        self.psql(ADMIN, "postgres", "SELECT 1")


def mariadb_binaries() -> tuple[str, str, str] | None:
    """(server, installer, client), or None when the server is not installed."""
    server = shutil.which("mariadbd") or next((p for p in ("/usr/sbin/mariadbd", "/usr/sbin/mysqld")
                                                if os.access(p, os.X_OK)), None)
    installer = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
    client = shutil.which("mariadb") or shutil.which("mysql")
    return (server, installer, client) if server and installer and client else None


class MariaDBServer(ThrowawayServer):
    kind = "mariadb"
    stop_signal = signal.SIGKILL  # InnoDB recovers from anything; and the data is thrown away
    server = installer = client = ""  # its programs, found by _check_binaries

    def _check_binaries(self) -> None:
        found = mariadb_binaries()
        if found is None:
            raise Unavailable("no MariaDB server is installed here (mariadbd, mariadb-install-db); install "
                              "Debian's mariadb-server package to load MariaDB/MySQL dumps in the restore test")
        self.server, self.installer, self.client = found

    @property
    def socket(self) -> str:
        return os.path.join(self.socket_folder, "m.sock")

    def start(self) -> None:
        data, files = os.path.join(self.folder, "data"), os.path.join(self.folder, "files")
        os.mkdir(files, 0o700)
        self._own(files)
        self._run([self.installer, "--no-defaults", f"--datadir={data}", "--auth-root-authentication-method=normal",
                   "--skip-test-db", "--skip-name-resolve"], what="mariadb-install-db of the throwaway MariaDB")
        self._start_process([self.server, "--no-defaults", f"--datadir={data}", f"--socket={self.socket}",
                             "--skip-networking", "--skip-log-bin", "--skip-name-resolve",
                             f"--pid-file={os.path.join(self.folder, 'server.pid')}", f"--secure-file-priv={files}",
                             "--innodb-flush-log-at-trx-commit=0", "--local-infile=0"])

    def client_command(self, *options: str) -> list[str]:
        return [self.client, "--no-defaults", f"--socket={self.socket}", "--user=root", "--sandbox", *options]

    def sql(self, statement: str) -> str:
        return self._run(self.client_command("--batch", "--raw", "--skip-column-names"), what="mariadb",
                         stdin=statement)

    def ready(self) -> None:
        self.sql("SELECT 1")

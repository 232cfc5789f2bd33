"""Helpers of the integration suite: run the real CLI, build trees, compare trees.

Every command runs `python -m agent` as a subprocess against real directories, with
the agent package of this checkout first on PYTHONPATH (so the tests always exercise
the tree they live in, whatever is installed in the virtualenv).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.support.waits import wait_until

ROOT = Path(__file__).resolve().parents[2]
PASSPHRASE = "Cabinet médical — phrase de passe de test 2026"
NOBODY = 65534
ERROR_PREFIX = "backupctl: error:"


# ---- running the CLI -----------------------------------------------------------------


@dataclass
class Result:
    args: list[str]
    returncode: int
    stdout_bytes: bytes
    stderr_bytes: bytes

    @property
    def stdout(self) -> str:
        return self.stdout_bytes.decode("utf-8", errors="surrogateescape")

    @property
    def stderr(self) -> str:
        return self.stderr_bytes.decode("utf-8", errors="surrogateescape")

    def json(self) -> dict:
        """stdout parsed as a JSON document; bytes in, so it must be valid UTF-8 too."""
        try:
            return json.loads(self.stdout_bytes)
        except ValueError as exc:
            raise AssertionError(f"stdout of {self.describe()} is not valid JSON: {exc}\n"
                                 f"stdout: {self.stdout_bytes[:2000]!r}") from None

    def describe(self) -> str:
        shown = " ".join(self.args[self.args.index("--config") + 2:] if "--config" in self.args else self.args)
        return f"`backupctl {shown}` (exit {self.returncode})"

    def __str__(self) -> str:
        return f"{self.describe()}\n--- stdout:\n{self.stdout[-4000:]}\n--- stderr:\n{self.stderr[-4000:]}"


def base_env(passphrase: str | None = PASSPHRASE) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("BACKUPCTL_CONFIG", "BACKUPCTL_DEBUG", "BACKUPCTL_PASSPHRASE"):
        env.pop(name, None)
    if passphrase is not None:
        env["BACKUPCTL_PASSPHRASE"] = passphrase
    env["PYTHONPATH"] = str(ROOT)
    # No rescue kit unless a test gives one: a developer's `make dist` puts one into .venv,
    # which every test's repository would otherwise receive (tests/integration/test_rescue_kit.py).
    env["BACKUPCTL_RESCUE_KIT_DIR"] = str(ROOT / "tests" / "no-rescue-kit")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.setdefault("LANG", "C.UTF-8")
    return env


def as_user(uid: int) -> list[str]:
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--"]


class Backupctl:
    """One test's world: a source tree, a repository, a state dir and a config file."""

    def __init__(self, base: Path, *, cipher: str | None = None) -> None:
        self.base = Path(base)
        # Who runs the commands (None: the suite's root). On an installed server the service
        # user does, and root may not write its files (agent/run_as.py).
        self.user: int | None = None
        self.src = self.base / "src"
        self.repo = self.base / "repo"
        self.state = self.base / "state"
        self.config = self.base / "config.toml"
        self.src.mkdir(parents=True, exist_ok=True)
        self.write_config(cipher=cipher)

    # ---- config ----

    def write_config(
        self,
        *,
        paths: list[os.PathLike | str] | None = None,
        exclude: list[str] = (),
        cipher: str | None = None,
        repo_url: str | None = None,
        extra_repo_lines: str = "",
        agent_lines: str = "",
    ) -> Path:
        paths = [str(p) for p in (paths if paths is not None else [self.src])]
        url = repo_url or f"file://{self.repo}"
        lines = [
            "[agent]",
            f"state_dir = {json.dumps(str(self.state))}",
            agent_lines,
            "",
            "[source]",
            f"paths = {json.dumps(paths)}",
            f"exclude = {json.dumps(list(exclude), ensure_ascii=False)}",
            "",
            "[repositories.main]",
            f"url = {json.dumps(url)}",
        ]
        if cipher:
            lines.append(f"cipher = {json.dumps(cipher)}")
        if extra_repo_lines:
            lines.append(extra_repo_lines)
        self.config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return self.config

    # ---- running ----

    def command(self, *args: str, config: os.PathLike | str | None = None, user: int | None = None) -> list[str]:
        user = user if user is not None else self.user
        prefix = as_user(user) if user is not None else []
        return [*prefix, sys.executable, "-m", "agent", "--config", str(config or self.config), *map(str, args)]

    def run(
        self,
        *args: str,
        passphrase: str | None = PASSPHRASE,
        config: os.PathLike | str | None = None,
        user: int | None = None,
        timeout: float = 600,
        env: dict[str, str] | None = None,
    ) -> Result:
        argv = self.command(*args, config=config, user=user)
        proc = subprocess.run(argv, cwd=self.base, env={**base_env(passphrase), **(env or {})},
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
        return Result(argv, proc.returncode, proc.stdout, proc.stderr)

    def popen(self, *args: str, passphrase: str | None = PASSPHRASE) -> subprocess.Popen:
        return subprocess.Popen(self.command(*args), cwd=self.base, env=base_env(passphrase),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def ok(self, *args: str, **kwargs) -> Result:
        """Run and require exit 0 and no traceback."""
        result = self.run(*args, **kwargs)
        assert result.returncode == 0, str(result)
        assert "Traceback" not in result.stderr, str(result)
        return result

    def ok_json(self, *args: str, **kwargs) -> dict:
        return self.ok(*args, "--json", **kwargs).json()

    def init(self, **kwargs) -> dict:
        return self.ok_json("init", **kwargs)

    def backup(self, *args: str, **kwargs) -> dict:
        return self.ok_json("backup", *args, **kwargs)

    def snapshots(self, **kwargs) -> list[dict]:
        return self.ok_json("snapshots", **kwargs)["snapshots"]

    def restore(self, target: os.PathLike | str, *args: str, snapshot: str = "latest", **kwargs) -> dict:
        return self.ok_json("restore", snapshot, "--target", str(target), *args, **kwargs)

    def assert_restores(self, snapshot_id: str, expected: dict[str, str], where: Path) -> None:
        """The snapshot restores into `where` with exactly these files (tree_digests of the source)."""
        result = self.run("restore", snapshot_id, "--target", str(where))
        assert result.returncode == 0, str(result)
        assert tree_digests(where / str(self.src).lstrip("/")) == expected

    def restored(self, target: os.PathLike | str, path: os.PathLike | str | None = None) -> Path:
        """Where `path` (default: the source dir) lands inside a restore target."""
        path = Path(path or self.src)
        return Path(target) / path.relative_to("/")

    # ---- repository objects ----

    def packs(self) -> list[Path]:
        return sorted(p for p in (self.repo / "data").glob("*/*") if p.is_file() and not p.name.startswith(".tmp-"))

    def index_files(self) -> list[Path]:
        folder = self.repo / "index"
        return sorted(p for p in folder.iterdir() if not p.name.startswith(".tmp-")) if folder.is_dir() else []

    def snapshot_files(self) -> list[Path]:
        folder = self.repo / "snapshots"
        return sorted(p for p in folder.iterdir() if not p.name.startswith(".tmp-")) if folder.is_dir() else []

    def repo_digest(self) -> dict[str, str]:
        """name -> SHA-256 of every object of the repository (to prove nothing changed)."""
        return {str(p.relative_to(self.repo)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(self.repo.rglob("*")) if p.is_file()}


def pack_label(pack: Path) -> str:
    """How the agent names a pack: data/<2 hex>/<64 hex>."""
    return f"data/{pack.parent.name}/{pack.name}"


# ---- error contract --------------------------------------------------------------------


def assert_error(result: Result, code: int, *needles: str, only_line: bool = True) -> str:
    """Exit `code`; one `backupctl: error:` line (the last one, and the only stderr line
    when `only_line`); no traceback; every needle in that line (case-insensitive).
    Returns the error line."""
    assert result.returncode == code, f"expected exit {code}\n{result}"
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, str(result)
    lines = result.stderr.splitlines()
    errors = [line for line in lines if line.startswith(ERROR_PREFIX)]
    assert len(errors) == 1, f"expected exactly one '{ERROR_PREFIX}' line\n{result}"
    assert lines and lines[-1] == errors[0], f"the error line must be the last line of stderr\n{result}"
    if only_line:
        assert len(lines) == 1, f"expected stderr to be that one line\n{result}"
    line = errors[0]
    for needle in needles:
        assert needle.lower() in line.lower(), f"{needle!r} is not in the error line {line!r}\n{result}"
    return line


# ---- building trees ----------------------------------------------------------------------


_CODE_ROW = re.compile(r'<td class="number">(\d+)</td><td>([A-Z2-7 ]+)</td><td class="check">([A-Z2-7]{2})</td>')


def typed_code(sheet: Path | str) -> str:
    """What a person types from the printed recovery sheet (a path, or the page's HTML):
    each line's groups and its check characters, one line per row of the sheet."""
    page = sheet.read_text(encoding="utf-8") if isinstance(sheet, Path) else sheet
    rows = _CODE_ROW.findall(page)
    assert rows, "no code lines on the sheet"
    return "\n".join(f"{groups}  {check}" for _number, groups, check in rows) + "\n"


def write(path: Path | bytes | str, data: bytes | str = b"", *, mode: int | None = None) -> Path | bytes:
    if isinstance(data, str):
        data = data.encode("utf-8")
    os.makedirs(os.path.dirname(os.fsencode(path)), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)
    if mode is not None:
        os.chmod(path, mode)
    return path


def random_file(path: Path, size: int, *, chunk: int = 4 << 20) -> Path:
    os.makedirs(path.parent, exist_ok=True)
    with open(path, "wb") as handle:
        left = size
        while left:
            step = min(chunk, left)
            handle.write(os.urandom(step))
            left -= step
    return path


def set_mtimes(root: Path | bytes, base_ns: int = 1_700_000_000_123_456_789) -> None:
    """Give every entry below root (and root) a distinct mtime with a nanosecond part,
    children before parents so the directories keep theirs."""
    root = os.fsencode(root)
    counter = 0
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in sorted(filenames) + sorted(dirnames):
            counter += 1
            path = os.path.join(dirpath, name)
            ns = base_ns + counter * 1_000_000_007
            os.utime(path, ns=(ns, ns), follow_symlinks=False)
        counter += 1
        ns = base_ns + counter * 1_000_000_007
        os.utime(dirpath, ns=(ns, ns))


# ---- comparing trees -----------------------------------------------------------------------


def file_sha256(path: bytes | str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def tree_digests(root: Path) -> dict[str, str]:
    """{relative path: SHA-256} of every regular file below root."""
    return {str(p.relative_to(root)): file_sha256(p) for p in sorted(root.rglob("*")) if p.is_file()}


def tree_state(root: Path | bytes | str, *, owners: bool = True) -> dict[bytes, tuple]:
    """Everything a restore must bring back, keyed by the path (bytes) relative to root.

    Hard links are described by the sorted list of names sharing the inode, so two
    trees compare equal only if the same names are linked together.
    """
    root = os.fsencode(root)
    state: dict[bytes, dict] = {}
    inodes: dict[tuple[int, int], list[bytes]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [b"", *dirnames, *filenames] if dirpath == root else [*dirnames, *filenames]:
            path = os.path.join(dirpath, name) if name else dirpath
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            entry: dict = {"mode": stat.S_IMODE(st.st_mode), "mtime_ns": st.st_mtime_ns}
            if owners:
                entry["owner"] = (st.st_uid, st.st_gid)
            if stat.S_ISLNK(st.st_mode):
                entry["type"] = "symlink"
                entry["target"] = os.readlink(path)
                entry.pop("mode")  # always 0777 on Linux
            elif stat.S_ISDIR(st.st_mode):
                entry["type"] = "dir"
            elif stat.S_ISREG(st.st_mode):
                entry["type"] = "file"
                entry["size"] = st.st_size
                entry["sha256"] = file_sha256(path)
                entry["nlink"] = st.st_nlink
                inodes.setdefault((st.st_dev, st.st_ino), []).append(rel)
            else:
                entry["type"] = f"special {stat.S_IFMT(st.st_mode):o}"
            state[rel] = entry
    for names in inodes.values():
        for rel in names:
            state[rel]["linked_with"] = tuple(sorted(names))
    return {k: tuple(sorted(v.items())) for k, v in state.items()}


def assert_same_tree(expected_root, actual_root, *, owners: bool = True) -> None:
    expected = tree_state(expected_root, owners=owners)
    actual = tree_state(actual_root, owners=owners)
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    different = [(k, expected[k], actual[k]) for k in sorted(set(expected) & set(actual)) if expected[k] != actual[k]]
    problems = []
    if missing:
        problems.append(f"missing after restore: {missing}")
    if extra:
        problems.append(f"not in the source: {extra}")
    for key, want, got in different[:20]:
        want_d, got_d = dict(want), dict(got)
        diff = {f: (want_d.get(f), got_d.get(f)) for f in set(want_d) | set(got_d) if want_d.get(f) != got_d.get(f)}
        problems.append(f"{key!r}: (expected, restored) {diff}")
    assert not problems, "trees differ:\n" + "\n".join(problems)


def count_files(root: Path | bytes | str) -> tuple[int, int]:
    """(regular file names, sum of their sizes) below root."""
    files = size = 0
    for dirpath, _dirnames, filenames in os.walk(os.fsencode(root)):
        for name in filenames:
            st = os.lstat(os.path.join(dirpath, name))
            if stat.S_ISREG(st.st_mode):
                files += 1
                size += st.st_size
    return files, size


def wait_for(predicate, *, timeout: float, interval: float = 0.002, what: str = "condition") -> None:
    """Poll `predicate` (a functional wait, not a timing assertion); loud at the deadline."""
    wait_until(predicate, timeout=timeout, interval=interval, what=what)

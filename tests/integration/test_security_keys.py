"""Security hardening of keys and secrets through the real CLI (issue 16, points 4, 7, 8;
docs/SECURITY.md sections 4, 7, 8): planted key files, files written in shared folders,
and secrets that never reach a message."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from agent.crypto import paper

from .support import NOBODY, Backupctl, as_user, assert_error, base_env, typed_code, write

HOSTILE = (4 * 1024 * 1024, 6)  # the planted key of the issue: 4 GiB, 6 passes
LARGEST_ACCEPTED = (65536, 3)  # what init writes


def _plant(repo: Path, repository_id: str, numbers: range, params: tuple[int, int]) -> None:
    """Key files written by someone who can add objects to the storage and nothing else:
    well formed, ids that sort before any real one, a wrapped key nothing opens."""
    for number in numbers:
        key_id = number.to_bytes(16, "big").hex()
        document = {
            "version": 1, "repository_id": repository_id, "key_id": key_id,
            "created": "2026-01-01T00:00:00+00:00", "host": "planted",
            "kdf": {"algorithm": "argon2id", "version": 19, "memory_kib": params[0], "iterations": params[1],
                    "parallelism": 1, "salt": base64.b64encode(os.urandom(16)).decode()},
            "wrapped_master_key": base64.b64encode(b"\x01\x01" + os.urandom(72)).decode(),
        }
        (repo / "keys" / key_id).write_text(json.dumps(document))


# ---- point 4: a planted key file cannot stall a command ---------------------------------


def test_planted_key_files_cost_a_machine_in_use_nothing_and_a_new_one_a_bounded_amount(bk: Backupctl):
    write(bk.src / "lettre.txt", "Madame, " * 100)
    repository_id = bk.init()["repository_id"]
    bk.backup()
    sheet = bk.base / "fiche.html"
    bk.ok("key", "export", "--paper", str(sheet))
    assert repository_id in json.loads((bk.state / "keys.json").read_text())  # init remembered its key
    _plant(bk.repo, repository_id, range(0, 1), HOSTILE)
    _plant(bk.repo, repository_id, range(1, 11), LARGEST_ACCEPTED)
    # This machine opened the repository before: its own key first, nothing else tried.
    assert len(bk.ok_json("snapshots")["snapshots"]) == 1
    # A machine without that memory: the 4 GiB file is refused for free, Argon2id runs on
    # 8 key files, then a clear error that says how many were not tried.
    (bk.state / "keys.json").unlink()
    assert_error(bk.run("snapshots"), 12, "none of the 8 key files tried", "3 more were not tried",
                 "recover --add-key")
    # The recovery sheet gives this machine a key, which it then tries first.
    new = write(bk.base / "new", "nouvelle phrase de passe du serveur\n", mode=0o600)
    env = {**base_env(passphrase=None), "BACKUPCTL_STATE_DIR": str(bk.state)}
    added = subprocess.run([sys.executable, "-m", "agent", "recover", "--url", f"file://{bk.repo}", "--add-key",
                            "--new-passphrase-file", str(new)], input=typed_code(sheet),
                           capture_output=True, text=True, env=env, cwd=bk.base, timeout=300)
    assert added.returncode == 0, added.stderr
    result = bk.run("snapshots", "--json", passphrase="nouvelle phrase de passe du serveur")
    assert result.returncode == 0, result


# ---- point 7: files written safely -------------------------------------------------------


def _shared_folder(open_dir: Path) -> Path:
    """A folder a local user (uid 65534) can write in, where the sheet is asked for."""
    shared = open_dir / "partage"
    shared.mkdir()
    shared.chmod(0o777)
    return shared


def _as_nobody(*argv: str) -> None:
    subprocess.run([*as_user(NOBODY), *argv], check=True)


def test_the_recovery_sheet_is_never_written_through_a_local_users_file(bk: Backupctl, open_dir: Path):
    write(bk.src / "lettre.txt", "Madame, " * 100)
    bk.init()
    shared = _shared_folder(open_dir)
    victim = open_dir / "victim"
    victim.write_text("root's own file\n")
    victim.chmod(0o644)
    # The local user prepares the names the old code used: a symbolic link to a file it
    # wants overwritten, and a file of its own that it keeps open to read the key.
    _as_nobody("ln", "-s", str(victim), str(shared / "fiche.html.tmp"))
    _as_nobody("sh", "-c", f"umask 0; : > {shared / 'autre.html.tmp'}")
    for name in ("fiche.html", "autre.html"):
        bk.ok("key", "export", "--paper", str(shared / name))
        sheet = shared / name
        st = os.lstat(sheet)
        assert stat.S_ISREG(st.st_mode) and st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o600
        assert "<td class=\"check\">" in sheet.read_text(encoding="utf-8")
    assert victim.read_text() == "root's own file\n"
    assert os.readlink(shared / "fiche.html.tmp") == str(victim)
    theirs = os.lstat(shared / "autre.html.tmp")
    assert theirs.st_uid == NOBODY and theirs.st_size == 0
    # Nothing else was left in the folder (no temporary file of ours).
    assert sorted(p.name for p in shared.iterdir()) == ["autre.html", "autre.html.tmp", "fiche.html",
                                                        "fiche.html.tmp"]


# ---- point 8: small leaks ----------------------------------------------------------------

# Secrets as they happen: a "%" (configparser's interpolation), quotes of both kinds, and
# a line break (a value continued on an indented next line, or pasted with its newline).
KEY_ID = "AKIA%TEST\"KEY'ID"
SECRET = "sEcR%(et)s\"q'%%z/+Kw"


def _no_secret_in(result, *secrets: str) -> None:
    output = result.stdout + result.stderr
    for secret in secrets:
        for part in [secret, *secret.split("\n")]:
            if len(part) >= 6:
                assert part not in output, (part, output)


def test_s3_credentials_with_percent_quotes_and_line_breaks_never_reach_a_message(tmp_path, s3):
    from .test_s3 import Cli, _assert_one_line_error

    def credentials(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_text(text)
        path.chmod(0o600)
        return path

    good = credentials("good", f"[default]\naws_access_key_id = {KEY_ID}\naws_secret_access_key = {SECRET}\n")
    cli = Cli(tmp_path, s3.url, s3, bucket=s3.plain_bucket, extra=f'credentials_file = "{good}"')
    for args in (("init",), ("backup",), ("snapshots",)):
        result = cli.run(*args)
        assert result.returncode == 0, result.stderr
        _no_secret_in(result, KEY_ID, SECRET)
    continued = credentials("continued", f"[default]\naws_access_key_id = {KEY_ID}\n"
                                         f"aws_secret_access_key = {SECRET}\n  SECONDLINE%\"'\n")
    broken = credentials("broken", f"[default]\naws_access_key_id = {KEY_ID}\n{SECRET} no equals sign\n")
    headless = credentials("headless", f"aws_secret_access_key = {SECRET}\n")
    for path, needle in ((continued, "line break"), (broken, "not in the AWS credentials format"),
                         (headless, "not in the AWS credentials format")):
        other = Cli(tmp_path, s3.url, s3, bucket=s3.plain_bucket, extra=f'credentials_file = "{path}"')
        result = other.run("snapshots")
        assert needle in _assert_one_line_error(result, 2)
        _no_secret_in(result, KEY_ID, SECRET, "SECONDLINE%\"'")
    password = "Pa55w0rd%25sEcReT"  # percent-encoded, as a URL carries it
    with_password = Cli(tmp_path, s3.url.replace("http://", f"http://user:{password}@"), s3,
                        bucket=s3.plain_bucket)
    result = with_password.run("snapshots")
    assert "user name or password" in _assert_one_line_error(result, 2)
    _no_secret_in(result, password, "Pa55w0rd%sEcReT")


def test_a_passphrase_with_percent_quotes_and_line_breaks_is_never_shown(bk: Backupctl):
    phrase = "phrase %s \"de\" 'passe'\nsur deux lignes %(x)s"
    write(bk.src / "lettre.txt", "Madame, " * 100)
    for args in (("init",), ("backup",)):
        result = bk.run(*args, passphrase=phrase)
        assert result.returncode == 0, result
        _no_secret_in(result, phrase)
    wrong = phrase.replace("deux", "trois")
    for args in (("snapshots",), ("check",), ("key", "list")):
        result = bk.run(*args, passphrase=wrong)
        assert_error(result, 12, "passphrase")
        _no_secret_in(result, wrong, phrase)


def test_init_refuses_a_short_passphrase_from_the_environment_or_a_file(bk: Backupctl):
    for short in ("court", "onze-chiffr", "e\u0301" * 11):  # 11 characters once NFC-normalised
        line = assert_error(bk.run("init", passphrase=short), 2, "shorter than 12 characters",
                            "head -c 32 /dev/urandom")
        assert short not in line
    assert not bk.repo.exists()
    phrase_file = write(bk.base / "phrase", "onze-chiffr\n", mode=0o600)
    bk.config.write_text(bk.config.read_text() + f'\n[key]\npassphrase_file = "{phrase_file}"\n')
    assert_error(bk.run("init", passphrase=None), 2, "shorter than 12 characters")
    assert not bk.repo.exists()
    phrase_file.write_text("douze-chiffr\n")
    bk.ok("init", passphrase=None)
    short_new = write(bk.base / "new", "trop-court\n", mode=0o600)
    assert_error(bk.run("key", "add", "--new-passphrase-file", str(short_new), passphrase=None), 2,
                 "shorter than 12 characters")
    assert len(list((bk.repo / "keys").iterdir())) == 1


def _on_a_terminal(argv: list[str], env: dict, cwd: Path, answers: list[str], *, prompt: bytes,
                   done: bytes) -> tuple[int, str]:
    """Run argv on a pseudo-terminal of its own session (as a person at the keyboard),
    typing each answer once a new `prompt` has appeared; returns (exit code, screen)."""
    import pty
    import select
    import time

    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(cwd)
        os.execve(argv[0], argv, env)
    output = b""
    deadline = time.monotonic() + 120

    def read_until(predicate) -> None:
        nonlocal output
        while not predicate() and time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:
                    return
                if not chunk:
                    return
                output += chunk

    try:
        for answer in answers:
            count = output.count(prompt)
            # The hidden prompt switches echo off before it writes its last space.
            read_until(lambda count=count: output.count(prompt) > count and output.endswith(b" "))
            os.write(fd, answer.encode() + b"\r")
        read_until(lambda: done in output and b"\n" in output.split(done)[-1])
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return os.waitstatus_to_exitcode(status), output.decode("utf-8", errors="replace")


def test_recover_does_not_echo_the_code_typed_on_the_terminal(bk: Backupctl):
    write(bk.src / "lettre.txt", "Madame, " * 100)
    bk.init()
    bk.backup()
    sheet = bk.base / "fiche.html"
    bk.ok("key", "export", "--paper", str(sheet))
    typed = typed_code(sheet).splitlines() + ["", ""]
    env = {**base_env(passphrase=None), "BACKUPCTL_STATE_DIR": str(bk.base / "b")}
    argv = [sys.executable, "-m", "agent", "recover", "--url", f"file://{bk.repo}", "--list"]
    code, screen = _on_a_terminal(argv, env, bk.base, typed, prompt=b">", done=b"snapshot(s)")
    assert code == 0, screen
    assert "opened with the recovery code: 1 snapshot(s)" in screen
    for line in typed:
        for group in line.split():
            assert group not in screen, (group, screen)


def test_init_refuses_a_short_passphrase_typed_at_the_prompt(bk: Backupctl):
    argv = [sys.executable, "-m", "agent", "--config", str(bk.config), "init"]
    code, screen = _on_a_terminal(argv, base_env(passphrase=None), bk.base, ["court%'\"", "court%'\""],
                                  prompt=b":", done=b"backupctl: error:")
    assert code == 2, screen
    assert "shorter than 12 characters" in screen and "court" not in screen
    assert not bk.repo.exists()


def test_a_non_standard_crypto_backend_writes_nothing(bk: Backupctl, tmp_path: Path):
    """A `cryptography` whose ChaCha20 takes its IV in another layout (as a backend
    change could): the known-answer self-test refuses before anything is written."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "from cryptography.hazmat.primitives.ciphers import algorithms\n"
        "_Real = algorithms.ChaCha20\n"
        "class ChaCha20(_Real):\n"
        "    def __init__(self, key, nonce):\n"
        "        super().__init__(key, nonce[8:] + nonce[:8])\n"
        "algorithms.ChaCha20 = ChaCha20\n")
    env = base_env()
    env["PYTHONPATH"] = f"{site}:{env['PYTHONPATH']}"
    result = subprocess.run(bk.command("init"), env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "non-standard results" in lines[0] and "nothing was written" in lines[0]
    assert "Traceback" not in result.stderr
    assert not bk.repo.exists() or not any(bk.repo.rglob("*"))


# ---- objects that are not what they claim (section 4, end) ------------------------------


def test_planted_fifos_links_and_junk_never_hang_nor_crash_a_command(bk: Backupctl):
    """The reviewer's reproductions on a file:// repository: a FIFO in index/ hung every
    backup (killed by `timeout`), one in snapshots/ hung `snapshots`, a link to /dev/zero
    in index/ made backup fail with "internal error: MemoryError"."""
    write(bk.src / "lettre.txt", "Madame, " * 100)
    bk.init()
    bk.backup()
    index, snapshot = bk.repo / "index" / ("0" * 32), bk.repo / "snapshots" / ("0" * 32)
    os.mkfifo(index)
    os.mkfifo(snapshot)
    try:
        listed = bk.run("snapshots", "--json", timeout=60)
        # Exit 13 (a damaged object, named), as for any unreadable snapshot; the others listed.
        assert listed.returncode == 13 and len(json.loads(listed.stdout)["snapshots"]) == 1, listed
        assert f"object snapshots/{'0' * 32}" in listed.stderr and "is a FIFO" in listed.stderr
        write(bk.src / "deuxieme.txt", "Monsieur, " * 100)
        backed_up = bk.run("backup", timeout=60)
        # The source is whole: the backup succeeds, and says which index it could not read
        assert backed_up.returncode == 0, backed_up
        assert "not read): this snapshot is whole" in backed_up.stderr, backed_up.stderr
        assert "internal error" not in backed_up.stderr
        os.unlink(index)
        os.symlink("/dev/zero", index)
        backed_up = bk.run("backup", timeout=60)
        # The source is whole: the backup succeeds, and says which index it could not read
        assert backed_up.returncode == 0, backed_up
        assert "not read): this snapshot is whole" in backed_up.stderr, backed_up.stderr
        assert "internal error" not in backed_up.stderr and "MemoryError" not in backed_up.stderr
        listed = bk.run("snapshots", "--json", timeout=60)
        assert listed.returncode == 13 and len(json.loads(listed.stdout)["snapshots"]) == 3, listed
    finally:
        for planted in (index, snapshot):
            if planted.is_fifo():
                try:
                    os.close(os.open(planted, os.O_WRONLY | os.O_NONBLOCK))
                except OSError:
                    pass


def test_a_new_machine_opens_despite_junk_and_one_byte_salt_key_files(bk: Backupctl):
    """Eight key files with a 1-byte salt (named after their key_id, valid parameters) made
    `snapshots` exit 12 in 0.16 s on a machine without keys.json; a key file of 1 MiB was
    read whole. Both are refused for free now: the real key opens."""
    write(bk.src / "lettre.txt", "Madame, " * 100)
    repository_id = bk.init()["repository_id"]
    bk.backup()
    _plant(bk.repo, repository_id, range(0, 8), LARGEST_ACCEPTED)
    for path in sorted((bk.repo / "keys").iterdir())[:8]:
        document = json.loads(path.read_text())
        document["kdf"]["salt"] = "eA=="
        path.write_text(json.dumps(document))
    (bk.repo / "keys" / (8).to_bytes(16, "big").hex()).write_bytes(b" " * (1 << 20))
    (bk.state / "keys.json").unlink()
    assert len(bk.ok_json("snapshots")["snapshots"]) == 1


def _code_needles(sheet: Path) -> dict[str, str]:
    """Every form in which the recovery code of a sheet could reach a message or a file:
    the whole code as typed and without separators, each line (its groups; without spaces;
    with its check characters), the QR code's text, and the secret it holds in hex, base32
    and base64. The first line holds the version and part of the repository id, the last
    ones the key: each is looked for on its own."""
    typed = typed_code(sheet)
    code = paper.parse(typed)
    needles = {"the whole code as typed": typed.strip(), "the whole code without separators": "".join(typed.split()),
               "the QR code's text": paper.qr_text(code), "the secret in hex": code.secret.hex(),
               "the secret in base32": base64.b32encode(code.secret).decode().rstrip("="),
               "the secret in base64": base64.b64encode(code.secret).decode()}
    for number, line in enumerate(typed.splitlines(), start=1):
        groups, check = line.rsplit(None, 1)
        needles[f"line {number}"] = groups
        needles[f"line {number} without separators"] = "".join(groups.split())
        needles[f"line {number} with its check characters"] = "".join(groups.split()) + check
    assert len(typed.splitlines()) >= 5  # 79 characters (a share: 82), 16 a line
    # A share's last line holds 2 characters (10 bits): found by chance in any file, and
    # nothing alone; every other line and form is 15 characters or more.
    return {name: needle for name, needle in needles.items() if len(needle) >= 15}


def test_the_recovery_code_reaches_no_output_log_or_file_but_the_sheet(bk: Backupctl):
    """Export the sheet (plain, --json, in shares), recover with it on a new machine (list,
    restore, a new key, from standard input and from --code-file, once mistyped), and use
    the first machine as usual: the code, whole or any line of it, is in no standard output
    or error, not in the audit trails, records or any other file of either machine."""
    write(bk.src / "lettre.txt", "Madame, " * 100)
    bk.init()
    bk.backup()
    sheet = bk.base / "sheets" / "fiche.html"
    sheet.parent.mkdir()
    outputs = [bk.ok("key", "export", "--paper", str(sheet)),
               bk.ok("key", "export", "--paper", str(bk.base / "sheets" / "fiche2.html"), "--json"),
               bk.ok("key", "export", "--paper", str(bk.base / "sheets" / "part.html"), "--shares", "2/3")]
    needles = _code_needles(sheet)
    assert needles["line 1"] in sheet.read_text() and needles["line 5"] in sheet.read_text()  # the forms looked for
    for number in (1, 2, 3):
        needles.update({f"share {number}, {what}": text for what, text in
                        _code_needles(bk.base / "sheets" / f"part-{number}-of-3.html").items()})
    typed = typed_code(sheet)
    code_file = bk.base / "sheets" / "code.txt"
    code_file.write_text(typed)
    code_file.chmod(0o600)
    passphrase = bk.base / "passphrase-b"
    passphrase.write_text("une phrase de passe pour la machine B, assez longue\n")
    passphrase.chmod(0o600)
    machine_b = bk.base / "machine-b"
    machine_b.mkdir()
    env = {**base_env(passphrase=None), "BACKUPCTL_STATE_DIR": str(machine_b / "state")}

    def recover(*args: str, code: str = typed) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "agent", "recover", "--url", f"file://{bk.repo}", *args],
                              input=code, capture_output=True, text=True, env=env, cwd=machine_b, timeout=600)

    lines = typed.splitlines()
    mistyped = "\n".join([*lines[:2], lines[2][:5] + ("A" if lines[2][5] != "A" else "B") + lines[2][6:],
                          *lines[3:]]) + "\n"
    recovered = [recover("--list", "--json"), recover("--list", "--code-file", str(code_file)),
                 recover("--restore", "latest", "--target", str(machine_b / "restauration"), "--json"),
                 recover("--add-key", "--new-passphrase-file", str(passphrase)),
                 recover("--list", code=mistyped)]
    assert [r.returncode for r in recovered[:4]] == [0, 0, 0, 0], recovered
    assert recovered[4].returncode != 0 and "line 3" in recovered[4].stderr, recovered[4]
    outputs += [bk.ok("key", "list"), bk.run("status"), bk.ok("audit", "verify"), bk.ok("backup")]  # status: at risk

    said = [(f"`{' '.join(r.args[3:6])}`", r.stdout + r.stderr) for r in outputs]
    said += [(f"`recover {' '.join(r.args[6:9])}`", r.stdout + r.stderr) for r in recovered]
    sheets = {sheet.parent}
    files = [path for path in bk.base.rglob("*") if path.is_file() and path.parent not in sheets]
    assert (bk.state / "audit.jsonl") in files and (machine_b / "state" / "audit.jsonl") in files
    for what, text in said:
        for name, needle in needles.items():
            assert needle not in text, f"{name} is in the output of {what}:\n{text}"
    for path in files:
        content = path.read_bytes()
        for name, needle in needles.items():
            assert needle.encode() not in content, f"{name} is in {path}"

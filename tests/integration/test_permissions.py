"""Commands by hand on an installed server, and permission errors (exit 22).

The service user of a real install is played by uid 65534 ("nobody"): it owns the
state directory and the repository, as `backupctl` does on a server. The suite runs as
root, which is the administrator typing commands by hand.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

from agent import run_as
from tests.support.trees import listing

from .support import NOBODY, PASSPHRASE, Backupctl, as_user, assert_error, base_env, write
from .test_partial import chown_tree

OWNED_BY_ROOT = "owned by root:root, mode 0600"


def _installed(base: Path) -> Backupctl:
    """A repository and state directory owned by the service user, with one backup."""
    bk = Backupctl(base / "cabinet")
    write(bk.src / "lettre.txt", "Madame, suite à la consultation\n")
    chown_tree(bk.base, NOBODY)
    bk.ok("init", user=NOBODY)
    bk.ok("backup", user=NOBODY)
    return bk


def _world(bk: Backupctl) -> dict[str, dict[str, tuple]]:
    return {"repo": listing(bk.repo), "state": listing(bk.state)}


def test_root_backup_on_an_installed_server_is_refused_with_the_command_to_use(open_dir: Path) -> None:
    # The host of the suite has no service wrapper: the refusal, not the switch, is seen
    # here (the switch is proven in-process: tests/unit/test_run_as.py).
    assert not run_as.is_service_wrapper(run_as.SERVICE_WRAPPER)
    bk = _installed(open_dir)
    write(bk.src / "nouveau.txt", "écrit après la première sauvegarde\n")
    os.chown(bk.src / "nouveau.txt", NOBODY, NOBODY)
    before = _world(bk)

    result = bk.run("backup", "--tag", "à la main")
    line = assert_error(result, 22, "owned by nobody", "could not read back")
    assert _world(bk) == before, "the refused command wrote in the repository or the state directory"

    command = line.split("run it as nobody: ", 1)[1]
    import sys
    expected = ["sudo", "-u", "nobody", sys.executable, "-m", "agent", "--config", str(bk.config),
                "backup", "--tag", "à la main"]
    assert shlex.split(command) == expected
    # The command works as printed (setpriv standing in for sudo, absent from this machine).
    again = subprocess.run([*as_user(NOBODY), *shlex.split(command)[3:]], cwd=bk.base, env=base_env(),
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=300)
    assert again.returncode == 0, again.stderr.decode()
    assert len(bk.snapshots(user=NOBODY)) == 2
    leftovers = [p for p in [*bk.repo.rglob("*"), *bk.state.rglob("*")] if p.lstat().st_uid != NOBODY]
    assert leftovers == []


def test_config_from_the_environment_is_written_out_in_the_command(open_dir: Path) -> None:
    bk = _installed(open_dir)
    env = {**base_env(), "BACKUPCTL_CONFIG": str(bk.config)}
    import sys
    result = subprocess.run([sys.executable, "-m", "agent", "snapshots"], cwd=bk.base, env=env,
                            stdin=subprocess.DEVNULL, capture_output=True, timeout=300)
    line = result.stderr.decode().strip()
    assert result.returncode == 22, line
    assert line.endswith(f"-m agent --config {bk.config} snapshots"), line


def test_commands_that_only_read_run_as_root_and_write_nothing(open_dir: Path) -> None:
    bk = _installed(open_dir)
    before = _world(bk)
    status = bk.run("status")  # 4: at risk, no restore test yet (and no check)
    assert status.returncode == 4 and "AT RISK: no restore test has been made" in status.stdout, str(status)
    assert "intact" in bk.ok("audit", "verify").stdout
    assert "Usage:" in bk.ok("backup", "--help").stdout
    assert "Usage:" in bk.ok("restore", "-h").stdout
    assert_error(bk.run("daemon", "--reload", "4194304"), 2, "no process 4194304")  # checked, then signalled
    assert _world(bk) == before
    # An option value that looks like help is not help: refused like any restore.
    assert_error(bk.run("restore", "latest", "--target", "-h"), 22, "sudo -u nobody")
    assert_error(bk.run("daemon", timeout=60), 22, "sudo -u nobody")  # the daemon itself writes
    # recover has no configuration: its --state-dir is the one protected.
    recover = bk.run("recover", "--url", f"file://{bk.repo}", "--list", "--state-dir", str(bk.state))
    assert_error(recover, 22, f"would write into {bk.state} (owned by nobody)", "recover --url")
    assert _world(bk) == before


def test_a_root_owned_pack_is_a_permission_error_never_damage(open_dir: Path) -> None:
    bk = _installed(open_dir)
    pack = bk.packs()[0]
    os.chown(pack, 0, 0)
    os.chmod(pack, 0o600)
    before = _world(bk)

    check = bk.run("check", "--read-data", user=NOBODY)
    line = assert_error(check, 22, f"{pack}: {OWNED_BY_ROOT}", "runs as nobody", f"chown -R nobody: {bk.repo}")
    assert "damaged" not in check.stdout + check.stderr
    # repair took such a pack for damaged and deleted it; now it stops before touching anything.
    assert_error(bk.run("repair", user=NOBODY), 22, OWNED_BY_ROOT)
    assert_error(bk.run("restore", "latest", "--target", str(bk.base / "t"), user=NOBODY), 22, OWNED_BY_ROOT)
    assert _world(bk) == before
    assert "lettre" not in line


def test_a_folder_of_the_repository_the_user_may_not_list_is_a_permission_error(open_dir: Path) -> None:
    # Listing skipped it silently: its packs looked missing, the index pointing at them damaged.
    bk = _installed(open_dir)
    folder = bk.packs()[0].parent
    os.chown(folder, 0, 0)
    os.chmod(folder, 0o700)
    result = bk.run("check", user=NOBODY)
    assert_error(result, 22, f"cannot list {folder}: owned by root:root, mode 0700", "runs as nobody")


def test_a_root_owned_state_file_is_a_permission_error(open_dir: Path) -> None:
    bk = _installed(open_dir)
    ledger = next((bk.state / "ledger").glob("*.json"))
    os.chown(ledger, 0, 0)
    os.chmod(ledger, 0o600)
    # Read as empty, the ledger would have forgotten every snapshot it guards.
    assert_error(bk.run("check", user=NOBODY), 22, f"{ledger}: {OWNED_BY_ROOT}", f"chown -R nobody: {bk.state}")
    os.chown(ledger, NOBODY, NOBODY)
    (cache,) = bk.state.glob("cache/*/files.sqlite")
    os.chown(cache, 0, 0)
    os.chmod(cache, 0o600)
    # SQLite says only "unable to open database file"; the line says whose it is.
    assert_error(bk.run("backup", user=NOBODY), 22, f"cannot write {cache}: {OWNED_BY_ROOT}")


def test_an_unreadable_passphrase_file_names_its_owner_and_mode(open_dir: Path) -> None:
    bk = _installed(open_dir)
    secret = write(bk.base / "passphrase", PASSPHRASE + "\n", mode=0o600)
    bk.write_config(agent_lines="")
    with open(bk.config, "a", encoding="utf-8") as handle:
        handle.write(f'\n[key]\npassphrase_file = "{secret}"\n')
    result = bk.run("snapshots", passphrase=None, user=NOBODY)
    assert_error(result, 22, f"{secret}: {OWNED_BY_ROOT}", "runs as nobody", "chown nobody:")
    os.chown(secret, NOBODY, NOBODY)
    assert bk.run("snapshots", passphrase=None, user=NOBODY).returncode == 0


def _s3_world(base: Path, s3, credentials: Path) -> Backupctl:
    bk = Backupctl(base / "cabinet")
    write(bk.src / "a.txt", "a\n")
    bk.write_config(repo_url=f"s3://{s3.plain_bucket}/perm-{os.urandom(4).hex()}",
                    extra_repo_lines=f'endpoint = "{s3.url}"\nregion = "{s3.region}"\naddressing = "path"\n'
                                     f'credentials_file = "{credentials}"')
    chown_tree(bk.base, NOBODY)
    return bk


def test_an_unreadable_s3_credentials_file_is_a_permission_error(open_dir: Path, s3) -> None:
    credentials = write(open_dir / "s3-credentials",
                        f"[default]\naws_access_key_id = {s3.access_key}\n"
                        f"aws_secret_access_key = {s3.secret_key}\n", mode=0o600)
    bk = _s3_world(open_dir, s3, Path(credentials))
    result = bk.run("init", user=NOBODY)
    line = assert_error(result, 22, f"the S3 credentials_file {credentials}: {OWNED_BY_ROOT}", "runs as nobody")
    assert "aws_access_key_id" not in line and s3.secret_key not in line
    os.chown(credentials, NOBODY, NOBODY)  # the same file, readable: the repository is made
    bk.ok("init", user=NOBODY)


def test_an_unreadable_shared_credentials_file_of_the_environment_is_a_permission_error(open_dir: Path,
                                                                                         s3) -> None:
    credentials = write(open_dir / "aws-credentials",
                        f"[default]\naws_access_key_id = {s3.access_key}\n"
                        f"aws_secret_access_key = {s3.secret_key}\n", mode=0o600)
    bk = Backupctl(open_dir / "cabinet")
    bk.write_config(repo_url=f"s3://{s3.plain_bucket}/perm-{os.urandom(4).hex()}",
                    extra_repo_lines=f'endpoint = "{s3.url}"\nregion = "{s3.region}"\naddressing = "path"')
    chown_tree(bk.base, NOBODY)
    env = base_env()
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        env.pop(name, None)
    env["AWS_SHARED_CREDENTIALS_FILE"] = str(credentials)
    result = subprocess.run(bk.command("init", user=NOBODY), cwd=bk.base, env=env, stdin=subprocess.DEVNULL,
                            capture_output=True, timeout=300)
    line = result.stderr.decode().strip()
    assert result.returncode == 22, line
    assert f"AWS_SHARED_CREDENTIALS_FILE {credentials}: {OWNED_BY_ROOT}" in line

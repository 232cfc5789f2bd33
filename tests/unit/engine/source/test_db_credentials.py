"""agent/engine/source/db_credentials.py: database clients' password files in a private folder of the state dir."""

from __future__ import annotations

import os
import stat
import subprocess

import pytest

from agent.engine.source import db_credentials


def _mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_a_private_folder_under_the_state_dir_removed_on_exit(tmp_path):
    state = tmp_path / "state"
    with db_credentials.private_folder(str(state)) as folder:
        assert os.path.dirname(folder) == str(state / "credentials")
        assert _mode(state / "credentials") == 0o700 and _mode(folder) == 0o700
        path = db_credentials.private_file(folder, "pgpass", "*:*:*:*:secret\n")
        assert _mode(path) == 0o600
    assert not os.path.exists(folder) and os.listdir(state / "credentials") == []


def test_removed_even_when_the_client_fails(tmp_path):
    with pytest.raises(RuntimeError):
        with db_credentials.private_folder(str(tmp_path)) as folder:
            db_credentials.private_file(folder, "client.cnf", "[client]\npassword=x\n")
            raise RuntimeError("the dump failed")
    assert os.listdir(tmp_path / "credentials") == []


def test_a_file_is_never_written_through_a_planted_symlink_or_over_a_file(tmp_path):
    with db_credentials.private_folder(str(tmp_path)) as folder:
        target = tmp_path / "elsewhere"
        os.symlink(target, os.path.join(folder, "pgpass"))
        with pytest.raises(FileExistsError):
            db_credentials.private_file(folder, "pgpass", "secret")
        assert not target.exists()


def test_leftovers_of_dead_runs_are_removed_live_ones_kept(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    base = tmp_path / "credentials"
    base.mkdir(mode=0o755)  # a loose mode is tightened too
    (base / f"{dead.pid}-aaaa").mkdir()
    (base / f"{dead.pid}-aaaa" / "pgpass").write_text("secret")
    (base / f"{os.getppid()}-bbbb").mkdir()  # the process that started the tests: alive
    assert db_credentials.clean_stale(str(tmp_path)) == [f"{dead.pid}-aaaa"]
    assert os.listdir(base) == [f"{os.getppid()}-bbbb"] and _mode(base) == 0o700


def test_a_credentials_path_that_is_not_our_folder_is_refused(tmp_path):
    os.symlink("/tmp", tmp_path / "credentials")
    with pytest.raises(db_credentials.StateDirError, match="not a folder of this user"):
        db_credentials.clean_stale(str(tmp_path))


def test_made_by_root_it_belongs_to_the_state_dirs_owner(tmp_path):
    """A restore test or backup by hand as root must leave the service user a folder it can use."""
    if os.geteuid() != 0:
        pytest.fail("this test runs as root (the suite does)")
    os.chown(tmp_path, 65534, 65534)
    with db_credentials.private_folder(str(tmp_path)) as folder:
        db_credentials.private_file(folder, "pgpass", "secret")
    found = os.stat(tmp_path / "credentials")
    assert (found.st_uid, found.st_gid, stat.S_IMODE(found.st_mode)) == (65534, 65534, 0o700)
    db_credentials.clean_stale(str(tmp_path))  # and root still accepts it


def test_a_credentials_folder_another_user_owns_is_refused(tmp_path):
    """A folder planted at state_dir/credentials by someone else (who could read the
    pgpass files written in it, or swap their folders) is refused, not used."""
    if os.geteuid() != 0:
        pytest.fail("this test runs as root (the suite does)")
    (tmp_path / "credentials").mkdir(mode=0o700)
    os.chown(tmp_path / "credentials", 65534, 65534)
    with pytest.raises(db_credentials.StateDirError, match="not a folder of this user"):
        with db_credentials.private_folder(str(tmp_path)):
            pass
    assert os.listdir(tmp_path / "credentials") == []

"""Errors: the right exit code, one line on stderr, no traceback, nothing stored lost."""

from __future__ import annotations

import os

import pytest

from .support import PASSPHRASE, Backupctl, assert_error, assert_same_tree, set_mtimes, write


@pytest.fixture
def saved(bk: Backupctl) -> Backupctl:
    write(bk.src / "ordonnance.txt", "paracétamol 1 g\n")
    write(bk.src / "patients" / "Élodie Müller.txt", "dossier\n")
    set_mtimes(bk.src)
    bk.init()
    bk.backup()
    return bk


def assert_still_restores(bk: Backupctl, name: str) -> None:
    target = bk.base / name
    report = bk.restore(target)
    assert report["failures"] == [] and report["sha256_verified"] == 2
    assert_same_tree(bk.src, bk.restored(target))


@pytest.mark.parametrize("command", [["snapshots"], ["backup"], ["check"], ["restore", "latest", "--target", "T"]])
def test_wrong_passphrase_exits_12(saved: Backupctl, command: list[str]) -> None:
    bk = saved
    before = bk.repo_digest()
    result = bk.run(*command, passphrase="pas la bonne phrase")
    assert_error(result, 12, "passphrase")
    assert bk.repo_digest() == before
    assert not (bk.base / "T").exists()
    assert_still_restores(bk, "restored")


def test_no_passphrase_and_no_terminal_is_a_config_error(saved: Backupctl) -> None:
    result = saved.run("snapshots", passphrase=None)
    assert_error(result, 2, str(saved.config), "passphrase")


def test_passphrase_file_must_be_private(saved: Backupctl) -> None:
    bk = saved
    secret = bk.base / "passphrase"
    secret.write_text(PASSPHRASE + "\n", encoding="utf-8")
    os.chmod(secret, 0o644)
    with open(bk.config, "a", encoding="utf-8") as handle:
        handle.write(f'\n[key]\npassphrase_file = "{secret}"\n')
    assert_error(bk.run("snapshots", passphrase=None), 2, str(secret), "chmod 600")
    os.chmod(secret, 0o600)
    result = bk.ok("snapshots", "--json", passphrase=None)
    assert len(result.json()["snapshots"]) == 1


@pytest.mark.parametrize("command", [["snapshots"], ["backup"], ["check"], ["restore", "latest", "--target", "T"]])
def test_missing_repository_exits_10(bk: Backupctl, command: list[str]) -> None:
    write(bk.src / "a.txt", "a\n")
    empty = bk.base / "empty"
    empty.mkdir()
    bk.write_config(repo_url=f"file://{empty}")
    result = bk.run(*command)
    assert_error(result, 10, str(empty), "init")
    assert list(empty.iterdir()) == [], "nothing may be written where there is no repository"
    assert not (bk.base / "T").exists()

    nowhere = bk.base / "nowhere"
    bk.write_config(repo_url=f"file://{nowhere}")
    assert_error(bk.run(*command), 10, str(nowhere))
    assert not nowhere.exists()


def test_init_twice_exits_11_and_changes_nothing(saved: Backupctl) -> None:
    bk = saved
    before = bk.repo_digest()
    assert_error(bk.run("init"), 11, str(bk.repo))
    assert_error(bk.run("init", passphrase="une autre phrase"), 11)
    assert_error(bk.run("init", "--json"), 11)
    assert bk.repo_digest() == before
    assert len(bk.snapshots()) == 1
    assert_still_restores(bk, "restored")
    # And the other passphrase did not get a key.
    assert_error(bk.run("snapshots", passphrase="une autre phrase"), 12)


def test_typo_in_a_config_key_exits_2_naming_file_and_key(saved: Backupctl) -> None:
    bk = saved
    bad = bk.base / "typo.toml"
    bad.write_text(bk.config.read_text().replace("exclude =", "exlude ="), encoding="utf-8")
    for command in (["snapshots"], ["backup"], ["init"]):
        result = bk.run(*command, config=bad)
        assert_error(result, 2, str(bad), "exlude")
    assert len(bk.snapshots()) == 1, "a refused config must not have backed anything up"


def test_missing_config_file_exits_2_naming_it(bk: Backupctl) -> None:
    missing = bk.base / "absent.toml"
    assert_error(bk.run("snapshots", config=missing), 2, str(missing))
    assert_error(bk.run("init", config=missing), 2, str(missing))
    assert not bk.repo.exists()


def test_invalid_toml_exits_2_naming_the_file(bk: Backupctl) -> None:
    bad = bk.base / "broken.toml"
    bad.write_text('[agent]\nstate_dir = "/tmp/x\n[source\n', encoding="utf-8")
    assert_error(bk.run("snapshots", config=bad), 2, str(bad), "TOML")
    assert_error(bk.run("init", config=bad), 2, str(bad))
    assert not bk.repo.exists()


@pytest.mark.parametrize("mutation, key", [
    (lambda text: text.replace('url = "file://', 'url = "ftp://'), "url"),
    (lambda text: text + 'cipher = "rot13"\n', "cipher"),
    (lambda text: text + "compression_level = 42\n", "compression_level"),
    (lambda text: text.replace("[source]\npaths = [", '[source]\npaths = ["relative/path", '), "relative/path"),
    (lambda text: text.replace("[agent]", "[agnet]"), "agnet"),
    (lambda text: text.replace("[source]", "[sources]"), "sources"),
])
def test_invalid_config_values_exit_2_naming_the_key(bk: Backupctl, mutation, key: str) -> None:
    bad = bk.base / "bad.toml"
    bad.write_text(mutation(bk.config.read_text()), encoding="utf-8")
    assert_error(bk.run("init", config=bad), 2, str(bad), key)
    assert not bk.repo.exists()


def test_unknown_repository_name_and_snapshot_are_usage_errors(saved: Backupctl) -> None:
    bk = saved
    assert_error(bk.run("snapshots", "--repo", "nas"), 2, "nas", str(bk.config))
    assert_error(bk.run("restore", "0123456789abcdef", "--target", str(bk.base / "T")), 2, "0123456789abcdef")
    assert not (bk.base / "T").exists()


def test_restore_from_an_empty_repository_is_a_usage_error(bk: Backupctl) -> None:
    bk.init()
    assert_error(bk.run("restore", "latest", "--target", str(bk.base / "T")), 2, "no snapshot")
    assert not (bk.base / "T").exists()


def test_missing_repository_config_object_is_an_integrity_error(saved: Backupctl) -> None:
    bk = saved
    (bk.repo / "config").unlink()
    assert_error(bk.run("snapshots"), 13, "config")


def test_tampered_snapshot_is_an_integrity_error_not_a_crash(saved: Backupctl) -> None:
    bk = saved
    (snapshot,) = bk.snapshot_files()
    data = bytearray(snapshot.read_bytes())
    data[len(data) // 2] ^= 1
    snapshot.write_bytes(bytes(data))
    assert_error(bk.run("snapshots"), 13, snapshot.name)
    assert_error(bk.run("restore", "latest", "--target", str(bk.base / "T")), 13)
    result = bk.run("check")
    assert_error(result, 13, only_line=False)
    assert snapshot.name in result.stdout + result.stderr

"""Restore as root into a target that an unprivileged user (uid 65534) prepared.

The user owns the target and plants, at the top, in the middle or at the leaf of the
restored tree, a symbolic link to a root-owned folder (standing in for /etc/cron.d), a
symbolic link to a root-owned file, a hard link to a root-owned file, or a FIFO. Without
--overwrite the restore refuses in one line (exit 15) and writes nothing; with
--overwrite or --resume it replaces the planted entry by name. Either way nothing outside
the target changes: a before/after listing (type, owner, mode, content) proves it.
Also: two snapshots made with a stolen key (a link, then a folder of the same name)
restored one after the other, special bits, and export/recover/restore-test the same; a
link the user plants at (or on the way to) the --target path itself, for restore, recover,
export --target and export --tar; and the modes of what restore and export create.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.support.trees import listing

from .support import NOBODY, Backupctl, assert_error, base_env, tree_digests, typed_code, write

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the attack needs root restoring (CI runs as root)")

NOTE = "ordonnance : amoxicilline 1 g\n"



@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Backupctl:
    """One backup of src/a/b/c/note.txt (plus a file at each level), restored many times."""
    bk = Backupctl(tmp_path_factory.mktemp("attacks"))
    write(bk.src / "top.txt", "lettre\n")
    write(bk.src / "a" / "mid.txt", "compte rendu\n")
    write(bk.src / "a" / "b" / "c" / "note.txt", NOTE)
    bk.init()
    bk.backup()
    return bk


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """Root's things outside the target: a folder (for /etc/cron.d) and a file whose content
    is exactly the restored note's, so --resume would take a hard link to it as restored."""
    base = tmp_path / "outside"
    (base / "cron.d").mkdir(parents=True)
    os.chmod(base / "cron.d", 0o755)
    write(base / "cron.d" / "existing", "0 3 * * * root /usr/sbin/logrotate\n")
    write(base / "secret", NOTE)
    os.chmod(base / "secret", 0o600)
    return base


def _relative(world: Backupctl, *parts: str) -> Path:
    return world.src.relative_to("/").joinpath(*parts)


POSITIONS = {
    "top": lambda w: Path(_relative(w).parts[0]),  # the first folder below the target
    "middle": lambda w: _relative(w, "a"),
    "leaf-folder": lambda w: _relative(w, "a", "b", "c"),
    "leaf-file": lambda w: _relative(w, "a", "b", "c", "note.txt"),
}


def _plant(target: Path, where: Path, kind: str, outside: Path) -> None:
    """As the unprivileged user would: its folders, its entry, owned by uid 65534."""
    path = target / where
    for parent in reversed(path.relative_to(target).parents[:-1]):
        (target / parent).mkdir(exist_ok=True)
        os.chown(target / parent, NOBODY, NOBODY)
    if kind == "link-to-folder":
        path.symlink_to(outside / "cron.d")
    elif kind == "link-to-file":
        path.symlink_to(outside / "secret")
    elif kind == "hard-link":
        os.link(outside / "secret", path)  # root made it: protected_hardlinks stops the user
    else:
        os.mkfifo(path)
    if kind != "hard-link":
        os.lchown(path, NOBODY, NOBODY)


def _target(tmp_path: Path) -> Path:
    target = tmp_path / "target"
    target.mkdir()
    os.chown(target, NOBODY, NOBODY)
    os.chmod(target, 0o755)
    return target


@pytest.mark.parametrize("kind", ["link-to-folder", "link-to-file", "hard-link", "fifo"])
@pytest.mark.parametrize("position", list(POSITIONS))
def test_a_planted_entry_is_refused_in_one_line_and_nothing_is_written(world, tmp_path, outside, kind, position):
    target = _target(tmp_path)
    where = POSITIONS[position](world)
    _plant(target, where, kind, outside)
    before, target_before = listing(outside), listing(target)
    result = world.run("restore", "latest", "--target", str(target), timeout=120)
    if position == "leaf-file":
        assert_error(result, 15, "already exist", "note.txt", "--overwrite")
    else:
        what = {"link-to-folder": "a symbolic link", "link-to-file": "a symbolic link", "hard-link": "a file",
                "fifo": "a named pipe"}[kind]
        assert_error(result, 15, f"{where} is {what} in the restore target where the snapshot has a folder",
                     "--overwrite")
    assert listing(outside) == before
    assert listing(target) == target_before


@pytest.mark.parametrize("flag", ["--overwrite", "--resume"])
@pytest.mark.parametrize("kind", ["link-to-folder", "link-to-file", "hard-link", "fifo"])
@pytest.mark.parametrize("position", list(POSITIONS))
def test_overwrite_and_resume_replace_a_planted_entry_and_never_follow_it(world, tmp_path, outside, kind,
                                                                           position, flag):
    target = _target(tmp_path)
    where = POSITIONS[position](world)
    _plant(target, where, kind, outside)
    before = listing(outside)
    result = world.run("restore", "latest", "--target", str(target), flag, "--json", timeout=120)
    assert result.returncode == 0, str(result)
    report = result.json()
    assert report["failures"] == [] and report["sha256_verified"] == 3 and report["already_restored"] == 0
    assert listing(outside) == before
    assert tree_digests(world.restored(target)) == tree_digests(world.src)
    planted = target / where
    assert not planted.is_symlink()
    assert planted.is_dir() if position != "leaf-file" else planted.is_file()
    if position == "leaf-file":
        assert os.stat(planted).st_nlink == 1 and planted.read_text() == NOTE


def test_two_snapshots_made_with_a_stolen_key_a_link_then_a_folder_of_the_same_name(tmp_path, outside):
    """Snapshot 1 holds x -> cron.d, snapshot 2 a folder x/ with a cron job. Restored one
    after the other into one target, the second must not write through the first's link."""
    bk = Backupctl(tmp_path / "stolen")
    os.symlink(outside / "cron.d", bk.src / "x")
    bk.init()
    first = bk.backup()["snapshot_id"]
    os.unlink(bk.src / "x")
    write(bk.src / "x" / "backdoor", "* * * * * root /tmp/pwn\n")
    second = bk.backup()["snapshot_id"]
    target = tmp_path / "target"
    before = listing(outside)

    bk.ok("restore", first, "--target", str(target))
    link = bk.restored(target, bk.src / "x")
    assert os.readlink(link) == str(outside / "cron.d")
    result = bk.run("restore", second, "--target", str(target))
    assert_error(result, 15, f"{link.relative_to(target)} is a symbolic link in the restore target where the "
                             f"snapshot has a folder")
    assert listing(outside) == before

    report = bk.ok_json("restore", second, "--target", str(target), "--overwrite")
    assert report["failures"] == [] and report["sha256_verified"] == 1
    assert not link.is_symlink() and (link / "backdoor").read_text() == "* * * * * root /tmp/pwn\n"
    assert listing(outside) == before, "the second snapshot wrote through the first one's link"


def test_export_into_a_folder_and_restore_test_follow_no_link_either(tmp_path, outside):
    """export --target walks the same way; its tar output file is created O_EXCL, so a link
    planted at that name is never followed either."""
    bk = Backupctl(tmp_path / "export")
    write(bk.src / "a" / "lettre.txt", NOTE)
    bk.init()
    bk.backup()
    before = listing(outside)
    tar = tmp_path / "export.tar"
    tar.symlink_to(outside / "cron.d" / "new")  # dangling: would be created through the link
    assert_error(bk.run("export", "--tar", str(tar)), 2, "already exists", "never written through")
    assert not (outside / "cron.d" / "new").exists()
    # export --target refuses a non-empty folder; the walk itself is restore's (tested above).
    target = tmp_path / "out"
    report = bk.ok_json("export", "--target", str(target))
    assert report["failures"] == [] and report["sha256_verified"] == 1
    assert listing(outside) == before


SPECIAL = {"tools/setuid-tool": 0o4755, "tools/setgid-tool": 0o2755, "tools": 0o755, "shared": 0o3777}


@pytest.fixture(scope="module")
def special(tmp_path_factory) -> Backupctl:
    bk = Backupctl(tmp_path_factory.mktemp("special"))
    write(bk.src / "tools" / "setuid-tool", "#!/bin/sh\n")
    write(bk.src / "tools" / "setgid-tool", "#!/bin/sh\n")
    write(bk.src / "shared" / "lettre.txt", NOTE)
    for name, mode in SPECIAL.items():
        os.chmod(bk.src / name, mode)
    bk.init()
    bk.backup()
    return bk


def _modes(root: Path) -> dict[str, int]:
    return {name: stat.S_IMODE(os.lstat(root / name).st_mode) for name in SPECIAL}


STRIPPED = {name: mode & 0o777 for name, mode in SPECIAL.items()}


@pytest.mark.parametrize("command", ["restore", "export"])
def test_special_bits_are_dropped_by_default_and_kept_on_request(special, tmp_path, command):
    args = [command, "latest"] if command == "restore" else [command]
    special.ok(*args, "--target", str(tmp_path / "plain"))
    assert _modes(special.restored(tmp_path / "plain")) == STRIPPED
    special.ok(*args, "--target", str(tmp_path / "system"), "--keep-special-bits")
    assert _modes(special.restored(tmp_path / "system")) == SPECIAL


def test_special_bits_in_a_tar_export_only_on_request(special, tmp_path):
    prefix = str(special.src).lstrip("/")
    for name, flags, expected in (("plain.tar", [], STRIPPED), ("system.tar", ["--keep-special-bits"], SPECIAL)):
        special.ok("export", "--tar", str(tmp_path / name), *flags)
        with tarfile.open(tmp_path / name) as archive:
            modes = {member.name[len(prefix) + 1:]: member.mode for member in archive.getmembers()
                     if member.name.startswith(prefix + "/")}
        assert {key: modes[key] for key in SPECIAL} == expected


def _recover(bk: Backupctl, tmp_path: Path, target: Path, *flags: str) -> subprocess.CompletedProcess:
    """`recover --restore latest --target TARGET` with the recovery code read off the paper sheet."""
    sheet = tmp_path / "fiche.html"
    if not sheet.exists():
        bk.ok("key", "export", "--paper", str(sheet))
    code = typed_code(sheet)
    env = {**base_env(passphrase=None), "BACKUPCTL_STATE_DIR": str(tmp_path / "state-b")}
    return subprocess.run([sys.executable, "-m", "agent", "recover", "--url", f"file://{bk.repo}",
                           "--restore", "latest", "--target", str(target), *flags],
                          input=code, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)


def test_special_bits_with_recover_restore(special, tmp_path):
    for folder, flags, expected in (("plain", [], STRIPPED), ("system", ["--keep-special-bits"], SPECIAL)):
        result = _recover(special, tmp_path, tmp_path / folder, *flags)
        assert result.returncode == 0, result.stderr
        assert _modes(special.restored(tmp_path / folder)) == expected
    shutil.rmtree(tmp_path / "plain")


def test_resume_never_adopts_a_file_the_local_user_planted_with_the_right_content(world, tmp_path, outside):
    """--resume keeps a file only if root or the snapshot's owner owns it: a user who plants
    a file of the right content (and keeps it open for writing) must not see root adopt it,
    chown it to the snapshot's owner and leave them a descriptor on a restored file."""
    target = _target(tmp_path)
    where = target / POSITIONS["leaf-file"](world)
    for parent in reversed(where.relative_to(target).parents[:-1]):
        (target / parent).mkdir(exist_ok=True)
        os.chown(target / parent, NOBODY, NOBODY)
    where.write_text(NOTE)
    os.chown(where, NOBODY, NOBODY)
    os.chmod(where, 0o666)
    held = os.open(where, os.O_RDWR)  # the user's descriptor, kept open (it also keeps the inode number taken)
    try:
        result = world.run("restore", "latest", "--target", str(target), "--resume", "--json", timeout=120)
        assert result.returncode == 0, str(result)
        report = result.json()
        assert report["failures"] == [] and report["already_restored"] == 0 and report["sha256_verified"] == 3
        planted, st = os.fstat(held), os.lstat(where)
        assert planted.st_nlink == 0 and planted.st_uid == NOBODY  # replaced, not adopted nor chowned
        assert st.st_ino != planted.st_ino and st.st_uid == 0 and stat.S_IMODE(st.st_mode) == stat.S_IMODE(
            os.stat(world.src / "a" / "b" / "c" / "note.txt").st_mode)
        os.pwrite(held, b"falsifie", 0)
        assert where.read_text() == NOTE
    finally:
        os.close(held)


# ---- the --target path itself ------------------------------------------------------------


@pytest.fixture
def shared(tmp_path: Path) -> Path:
    """A folder the unprivileged user owns (a practice's shared folder), and root's own
    folder `victimroot` (standing in for / or /etc) next to it."""
    (tmp_path / "victimroot").mkdir(mode=0o755)
    write(tmp_path / "victimroot" / "existing", "root's own file\n")
    folder = tmp_path / "shared"
    folder.mkdir(mode=0o755)
    os.chown(folder, NOBODY, NOBODY)
    return folder


def _plant_as_user(link: Path, to: Path) -> None:
    """As uid 65534 would with `ln -s` (pytest's folders are root's 0700, out of its reach)."""
    link.symlink_to(to)
    os.lchown(link, NOBODY, NOBODY)


def _run_at(bk: Backupctl, tmp_path: Path, command: str, where: Path, *flags: str):
    if command == "recover":
        return _recover(bk, tmp_path, where, *flags)
    args = {"restore": ["restore", "latest", "--target"], "export": ["export", "--target"],
            "export-tar": ["export", "--tar"]}[command]
    return bk.run(*args, str(where), *flags, timeout=300)


@pytest.mark.parametrize("last", [True, False], ids=["last-component", "intermediate-component"])
@pytest.mark.parametrize("command, flags", [("restore", []), ("restore", ["--overwrite"]), ("recover", []),
                                            ("export", []), ("export-tar", [])])
def test_a_target_link_planted_by_another_user_is_refused(world, tmp_path, shared, command, flags, last):
    """uid 65534 plants shared/restauration -> victimroot (root's); root restores (recovers,
    exports) to shared/restauration (or to a path below it): refused in one line naming the
    link and its owner, exit 15, and nothing written in victimroot."""
    victimroot = tmp_path / "victimroot"
    _plant_as_user(shared / "restauration", victimroot)
    where = shared / "restauration"
    if not last:
        where = where / "2026" / ("cabinet.tar" if command == "export-tar" else "dossier")
    elif command == "export-tar":
        where = where / "cabinet.tar"
    before = listing(victimroot)
    result = _run_at(world, tmp_path, command, where, *flags)
    if command == "recover":  # recover prints its progress before the restore: the error is the last line
        assert_error(result, 15, f"{shared / 'restauration'} is a symbolic link owned by uid {NOBODY}",
                     "not followed", "without a link another user controls", only_line=False)
    else:
        assert_error(result, 15, f"{shared / 'restauration'} is a symbolic link owned by uid {NOBODY}",
                     "not followed", "give a --target path without a link another user controls")
    assert listing(victimroot) == before


@pytest.mark.parametrize("folder_mode", [0o777, 0o775])
def test_our_own_link_in_a_folder_others_can_write_is_refused(world, tmp_path, folder_mode):
    """A root-owned link in a folder others may write to (not sticky) could be swapped
    between the look and the follow: refused too."""
    (tmp_path / "victimroot").mkdir()
    folder = tmp_path / "open"
    folder.mkdir()
    os.chmod(folder, folder_mode)
    (folder / "restauration").symlink_to(tmp_path / "victimroot")
    result = world.run("restore", "latest", "--target", str(folder / "restauration"))
    assert_error(result, 15, f"{folder / 'restauration'} is a symbolic link in a folder other users can write to",
                 f"{folder_mode:04o}")
    assert list((tmp_path / "victimroot").iterdir()) == []


def test_a_target_under_a_root_link_or_the_operators_own_link_is_restored(world, tmp_path):
    """What must keep working: /var/run -> /run (root's link in root's folder), a link of
    the operator's in a folder of theirs, and root's link in a sticky folder (like /tmp)."""
    run_target = Path("/var/run") / f"backupctl-test-{os.getpid()}" / "restauration"
    assert Path("/var/run").is_symlink() and Path("/var/run").lstat().st_uid == 0
    try:
        world.ok("restore", "latest", "--target", str(run_target))
        assert tree_digests(world.restored(Path("/run") / run_target.relative_to("/var/run"))) == \
            tree_digests(world.src)
    finally:
        shutil.rmtree(run_target.parent, ignore_errors=True)
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "mine").symlink_to("real")  # relative, in the operator's own 0755 folder
    world.ok("restore", "latest", "--target", str(tmp_path / "mine" / "sub"))
    assert tree_digests(world.restored(real / "sub")) == tree_digests(world.src)
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    os.chmod(sticky, 0o1777)
    (sticky / "to-real").symlink_to(real)
    world.ok("restore", "latest", "--target", str(sticky / "to-real" / "other"))
    assert tree_digests(world.restored(real / "other")) == tree_digests(world.src)


def test_another_users_link_in_a_sticky_folder_is_refused(world, tmp_path):
    """In a sticky world-writable folder like /tmp, uid 65534's link is theirs, not ours
    (the kernel's protected_symlinks would refuse it to root as well)."""
    (tmp_path / "victimroot").mkdir()
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    os.chmod(sticky, 0o1777)
    _plant_as_user(sticky / "restauration", tmp_path / "victimroot")
    result = world.run("restore", "latest", "--target", str(sticky / "restauration"))
    assert_error(result, 15, f"owned by uid {NOBODY}", "not followed")
    assert list((tmp_path / "victimroot").iterdir()) == []


def test_a_target_folder_made_by_restore_is_private(world, tmp_path):
    """The folders restore makes for --target (and on the way to it) are 0700, whatever the
    umask, and stay so: the snapshot's modes apply below them, and until then (and after)
    no other user lists the restored patient files."""
    target = tmp_path / "new" / "restauration"
    world.ok("restore", "latest", "--target", str(target))
    for folder in (tmp_path / "new", target):
        st = folder.lstat()
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o700), folder
    assert tree_digests(world.restored(target)) == tree_digests(world.src)


def test_a_tar_export_is_readable_by_its_owner_only(world, tmp_path):
    """An export of every patient file must not be 0644 under the usual umask 022."""
    tar = tmp_path / "cabinet.tar"
    world.ok("export", "--tar", str(tar))
    st = tar.lstat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o600)
    with tarfile.open(tar) as archive:
        assert any(member.name.endswith("note.txt") for member in archive.getmembers())

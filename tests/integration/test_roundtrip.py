"""Round trip of an odd tree, with both ciphers: what is restored is what was saved."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from .support import Backupctl, assert_same_tree, base_env, count_files, random_file, set_mtimes, tree_state, write

SPARSE_SIZE = 64 * 1024 * 1024
MARKER = "Compte-rendu confidentiel de Mme Élodie Müller, née le 12/03/1961"
NON_UTF8 = b"caf\xe9.txt"


def make_odd_tree(src: Path) -> None:
    """Everything a practice's folder may hold that a naive backup gets wrong."""
    write(src / "Élodie Müller.txt", (MARKER + "\n") * 200)
    write(src / "dossier patients" / "compte rendu 2026.txt", "consultation du 2 novembre\n")
    write(os.path.join(os.fsencode(src), NON_UTF8), b"caf\xe9 cr\xe8me, latin-1 name and content\n")
    os.symlink("nulle part/absent.txt", src / "lien cassé")
    os.symlink("Élodie Müller.txt", src / "lien vers fichier")
    os.symlink("dossier patients", src / "lien vers dossier")
    write(src / "liens" / "original.txt", "one inode, two names\n" * 50)
    os.makedirs(src / "autre", exist_ok=True)
    os.link(src / "liens" / "original.txt", src / "autre" / "second nom.txt")
    write(src / "vide.txt", b"")
    os.makedirs(src / "dossier vide")
    with open(src / "disque.img", "wb") as handle:  # sparse: a header, then holes
        handle.write(b"IMG\x00" + os.urandom(4092))
        handle.truncate(SPARSE_SIZE)
    write(src / "privé.txt", "mode 0640\n", mode=0o640)
    write(src / "script.sh", "#!/bin/sh\necho bonjour\n", mode=0o755)
    write(src / "lecture seule.txt", "mode 0400\n", mode=0o400)
    write(src / "a" / "b" / "c" / "d" / "profond.txt", "nested four levels down\n")
    random_file(src / "scans" / "radio.dcm", 3 * 1024 * 1024 + 12345)  # several chunks
    write(src / "autre propriétaire.txt", "owned by 4321:4322\n")
    os.chown(src / "autre propriétaire.txt", 4321, 4322)
    os.lchown(src / "lien vers fichier", 4321, 4322)
    os.chmod(src / "a" / "b", 0o750)
    write(src / "outils" / "setuid-prog", "#!/bin/sh\n", mode=0o4755)
    os.makedirs(src / "partagé")
    os.chmod(src / "partagé", 0o2770)
    os.makedirs(src / "échange")
    os.chmod(src / "échange", 0o1777)
    set_mtimes(src)


@pytest.mark.parametrize("cipher", ["xchacha20-poly1305", "aes-256-gcm"])
def test_odd_tree_round_trip(make_bk, cipher: str) -> None:
    bk: Backupctl = make_bk(cipher, cipher=cipher)
    make_odd_tree(bk.src)
    assert os.stat(bk.src / "disque.img").st_blocks * 512 < 1024 * 1024, "the source itself must be sparse"
    before = tree_state(bk.src)
    files, size = count_files(bk.src)

    facts = bk.init()
    assert facts["cipher"] == cipher
    report = bk.backup()
    assert report["partial"] is False and report["warnings"] == []
    # Envelope byte 1 is the cipher id (1 XChaCha20-Poly1305, 2 AES-256-GCM): the
    # configured cipher is the one really used for snapshots and index files. Packs of
    # format version 4 name no cipher (docs/FORMAT.md section 7.2): their parts open only
    # with the config's cipher, which the restore below proves.
    cipher_id = {"xchacha20-poly1305": 1, "aes-256-gcm": 2}[cipher]
    assert {p.read_bytes()[1] for p in bk.snapshot_files() + bk.index_files()} == {cipher_id}
    assert facts["format_version"] == 5
    assert report["files_new"] == files
    assert report["bytes_total"] == size

    target = bk.base / "restored"
    restored = bk.restore(target, "--keep-special-bits")  # every bit back, setuid and sticky included
    assert restored["failures"] == []
    assert restored["files"] == files
    assert restored["sha256_verified"] == files
    assert restored["hardlinks"] == 1
    assert restored["symlinks"] == 3

    copy = bk.restored(target)
    assert_same_tree(bk.src, copy)
    assert tree_state(bk.src) == before, "the backup must not change the source"

    sparse = os.stat(copy / "disque.img")
    assert sparse.st_size == SPARSE_SIZE
    # Holes are kept for all-zero chunks; the chunk holding the 4 KiB header may be
    # written whole (up to the 8 MiB maximum chunk size).
    assert sparse.st_blocks * 512 <= SPARSE_SIZE // 4, (
        f"restored sparse file uses {sparse.st_blocks * 512} bytes on disk for {SPARSE_SIZE}")
    linked = os.stat(copy / "liens" / "original.txt")
    assert linked.st_nlink == 2
    assert linked.st_ino == os.stat(copy / "autre" / "second nom.txt").st_ino
    assert os.path.exists(os.path.join(os.fsencode(copy), NON_UTF8))
    assert os.readlink(copy / "lien cassé") == "nulle part/absent.txt"

    listed = bk.snapshots()
    assert len(listed) == 1
    assert listed[0]["id"] == report["snapshot_id"]
    assert listed[0]["files"] == files
    assert listed[0]["bytes"] == size
    assert listed[0]["paths"] == [str(bk.src)]

    # Encrypted at rest: the patient's name and the text never appear in clear.
    for path in bk.repo.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for needle in ("Élodie Müller".encode(), b"Elodie", b"confidentiel", b"compte rendu 2026"):
                assert needle not in data, f"{needle!r} stored in clear in {path}"


def test_round_trip_of_single_file_source_and_two_sources(bk: Backupctl) -> None:
    """A source may be one file; several sources land side by side under their paths."""
    other = bk.base / "second source"
    write(other / "ordonnance.txt", "amoxicilline 1 g\n")
    single = write(bk.base / "agenda.ics", "BEGIN:VCALENDAR\n")
    write(bk.src / "lettre.txt", "cher confrère\n")
    set_mtimes(bk.src)
    set_mtimes(other)
    bk.write_config(paths=[bk.src, other, single])
    bk.init()
    bk.backup()
    target = bk.base / "restored"
    result = bk.restore(target)
    assert result["sha256_verified"] == 3
    assert_same_tree(bk.src, bk.restored(target, bk.src))
    assert_same_tree(other, bk.restored(target, other))
    assert bk.restored(target, single).read_bytes() == single.read_bytes()
    # A file:// repository keeps no copy of its metadata in the state directory (an S3 one does).
    assert not list(bk.state.glob("cache/*/repository"))


def test_every_new_repository_can_back_up(make_bk) -> None:
    """Each repository has its own random keys (and chunker seed): eight fresh
    repositories must all take a backup that restores (regression: half of all seeds
    once crashed the chunker with an OverflowError)."""
    worlds = [make_bk(f"repo-{i:02d}") for i in range(8)]
    for i, bk in enumerate(worlds):
        random_file(bk.src / "données.bin", 600_000 + i)

    def all_run(*args: str) -> list[tuple[Backupctl, subprocess.CompletedProcess]]:
        procs = [(bk, subprocess.Popen(bk.command(*args), cwd=bk.base, env=base_env(), stdin=subprocess.DEVNULL,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)) for bk in worlds]
        return [(bk, p, *p.communicate()) for bk, p in procs]

    for args in (["init"], ["backup"], ["restore", "latest", "--target", "restored"]):
        for bk, proc, _out, err in all_run(*args):
            assert proc.returncode == 0, f"{bk.base.name}: `{' '.join(args)}` exit {proc.returncode}: {err.decode()}"
    for bk in worlds:
        assert (bk.restored(bk.base / "restored") / "données.bin").read_bytes() == (bk.src / "données.bin").read_bytes()

"""`copy --to` a repository with another key stores again the files that repository already
holds from its own backups (the chunk boundaries come from each key's seed): the command says
how much was stored anew and why, instead of leaving the growth unexplained (issue 18, point 5)."""

from __future__ import annotations

from .support import Backupctl, random_file


def test_copy_into_a_repository_with_another_key_says_what_was_stored_anew_and_why(bk: Backupctl):
    random_file(bk.src / "scans" / "radio.pdf", 3 * 1024 * 1024)
    bk.write_config(extra_repo_lines=f'[repositories.nas]\nurl = "file://{bk.base / "nas"}"')
    bk.init()
    bk.ok("init", "--repo", "nas")
    bk.backup()
    own = bk.ok_json("backup", "--repo", "nas")  # the NAS already holds the same files
    assert own["bytes_added"] > 3 * 1024 * 1024

    result = bk.ok("copy", "--to", "nas")
    added = [line for line in result.stdout.splitlines() if "stored anew in nas" in line]
    assert len(added) == 1, result.stdout
    assert "its key differs from the source's" in added[0] and "do not deduplicate with nas's own backups" in added[0]
    # It is true: the same 3 MiB were stored a second time.
    again = bk.ok_json("copy", "latest", "--to", "nas", "--from", "main")
    assert again["already_there"] is True
    snapshots = bk.ok_json("snapshots", "--repo", "nas")["snapshots"]
    assert len(snapshots) == 2


def test_copy_json_says_whether_the_chunking_is_shared(bk: Backupctl):
    random_file(bk.src / "scans" / "radio.pdf", 1024 * 1024)
    bk.write_config(extra_repo_lines=f'[repositories.nas]\nurl = "file://{bk.base / "nas"}"')
    bk.init()
    bk.ok("init", "--repo", "nas")
    bk.backup()
    report = bk.ok_json("copy", "--to", "nas")
    assert report["same_chunking"] is False and report["bytes_added"] > 1024 * 1024

"""A source of "/" (the whole server, with excludes), run in a throw-away root.

The agent runs chrooted, in its own mount namespace, into a directory that holds only
read-only bind mounts of what Python needs (all excluded by full-path patterns) and a
small practice folder, so backing up "/" is fast and touches nothing of the machine.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

from .support import ROOT, Backupctl, assert_same_tree, base_env, set_mtimes, write


def system_dirs() -> list[str]:
    """What the interpreter and the agent need, as absolute real paths."""
    wanted = {"/usr", "/etc", "/lib", "/lib64", "/bin", "/sbin", os.path.realpath(sys.base_prefix),
              os.path.realpath(sys.prefix), str(ROOT)}
    return sorted(p for p in wanted if os.path.lexists(p))


def test_backup_of_the_root_directory(tmp_path: Path) -> None:
    jail = tmp_path / "jail"
    cabinet = jail / "cabinet"
    write(cabinet / "courriers" / "lettre à Mme Müller.txt", "Chère Madame,\n")
    write(cabinet / "base" / "cabinet.db", os.urandom(50_000))
    set_mtimes(cabinet)

    script = ["set -e", "mount --make-rprivate /"]
    for path in system_dirs():
        inside = jail / path.lstrip("/")
        if os.path.islink(path) and os.path.dirname(path) == "/":
            inside.parent.mkdir(parents=True, exist_ok=True)
            if not os.path.lexists(inside):
                os.symlink(os.readlink(path), inside)
            continue
        inside.mkdir(parents=True, exist_ok=True)
        script.append(f"mount --rbind {shlex.quote(path)} {shlex.quote(str(inside))}")
        script.append(f"mount -o remount,bind,ro {shlex.quote(str(inside))}")

    host = Backupctl(tmp_path / "host")  # sees the same repository from outside the jail
    host.write_config(repo_url=f"file://{jail}/repo")
    host.init()

    top_level = sorted({name for name in os.listdir(jail) if name != "cabinet"} | {"repo", "state", "config.toml"})
    (jail / "config.toml").write_text(
        "[agent]\nstate_dir = \"/state\"\n\n[source]\npaths = [\"/\"]\n"
        f"exclude = {json.dumps(['/' + name for name in top_level])}\n\n"
        "[repositories.main]\nurl = \"file:///repo\"\n", encoding="utf-8")
    agent = [sys.executable, "-m", "agent", "--config", "/config.toml", "backup", "--json"]
    script.append(f"exec chroot {shlex.quote(str(jail))} " + " ".join(shlex.quote(a) for a in agent))
    proc = subprocess.run(["unshare", "--mount", "--", "sh", "-c", "\n".join(script)], env=base_env(),
                          stdin=subprocess.DEVNULL, capture_output=True, cwd=tmp_path)
    stderr = proc.stderr.decode("utf-8", errors="replace")
    assert proc.returncode == 0, f"backup of / exited {proc.returncode}: {stderr}"
    report = json.loads(proc.stdout)
    assert report["files_new"] == 2 and report["partial"] is False, report

    (listed,) = host.snapshots()
    assert listed["paths"] == ["/"]
    target = tmp_path / "restored"
    restored = host.restore(target)
    assert restored["sha256_verified"] == 2
    assert sorted(os.listdir(target)) == ["cabinet"]
    assert_same_tree(cabinet, target / "cabinet")

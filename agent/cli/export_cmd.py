"""`backupctl export`: the practice's data handed back as a plain folder or a tar archive (rule K3).

At the end of a contract, or to move to another tool, the data leaves in a form that
needs nothing of backupctl: files in a folder, or one standard tar archive (to a file or
to standard output, e.g. piped to the next system). Every file is checked against its
SHA-256 on the way out.
"""

from __future__ import annotations

import os
import sys

import click

from agent import timefmt
from agent.cli.common import audit, find_snapshot, human_bytes, id_hex, json_option, print_json, repo_option
from agent.cli.opening import Opened, opened
from agent.cli.progress import for_terminal
from agent.engine.export import write_tar
from agent.engine.restore import RestoreEngine
from agent.engine.target import create_private_file
from agent.errors import IntegrityError, Interrupted, RestoreTargetError, UsageError


@click.command("export")
@click.argument("snapshot", default="latest", metavar="[SNAPSHOT|latest]")
@click.option("--target", metavar="DIR", help="An empty folder to write the plain tree into.")
@click.option("--tar", "tar_path", metavar="FILE", help="A tar archive to write (- for standard output).")
@click.option("--keep-special-bits", is_flag=True,
              help="Keep setuid, setgid and sticky bits (for a system's files; a practice's documents never have "
                   "them). Default: dropped.")
@repo_option
@json_option
@click.pass_context
def command(ctx: click.Context, snapshot: str, target: str | None, tar_path: str | None, keep_special_bits: bool,
            repo_name: str | None, as_json: bool) -> None:
    """Write a snapshot out as a plain folder (--target DIR) or a tar archive (--tar FILE
    or -), every file checked against its SHA-256: the data, without backupctl."""
    if bool(target) == bool(tar_path):
        raise UsageError("give either --target DIR or --tar FILE (or --tar - for standard output)")
    if tar_path == "-" and as_json:
        raise UsageError("--json and --tar - would both write to standard output")
    # A tar is written under a shared lock; a folder by the restore engine, which takes its
    # own (its round trips overlap the first reads: agent/repo/lock.py).
    with opened(ctx, repo_name, lock=None if target else "shared", operation="export") as repository:
        _export(repository, snapshot, target, tar_path, keep_special_bits, as_json)


def _export(opened: Opened, snapshot: str, target: str | None, tar_path: str | None, keep_special_bits: bool,
            as_json: bool) -> None:
    config, repo = opened.config, opened.repo
    snap = find_snapshot(repo, snapshot)
    destination = target or tar_path  # command() lets through exactly one of them
    assert destination is not None
    try:
        if target:
            # Emptiness is checked on the folder opened (never through a link another user controls).
            document = RestoreEngine(repo, snap, target, keep_special_bits=keep_special_bits, require_empty=True,
                                     progress=for_terminal(as_json, storage=repo.storage)).run().as_dict()
            where = os.path.abspath(target)
        elif tar_path == "-":
            document = write_tar(repo, snap, sys.stdout.buffer, keep_special_bits=keep_special_bits).as_dict()
            where = "standard output"
        else:
            try:
                # Mode 0600 (the practice's data, readable by no other local user), O_EXCL | O_NOFOLLOW
                # relative to its folder, itself reached without following a link another user controls.
                fd = create_private_file(os.fsencode(destination))
            except FileExistsError:
                raise UsageError(f"--tar {tar_path} already exists",
                                 hint="give a new file name (what is there, a link included, is never written through)"
                                 ) from None
            try:
                with os.fdopen(fd, "wb") as handle:
                    document = write_tar(repo, snap, handle, keep_special_bits=keep_special_bits).as_dict()
            except OSError as exc:
                raise RestoreTargetError(f"--tar {tar_path}: cannot be written ({exc.strerror})") from None
            where = os.path.abspath(destination)
    except KeyboardInterrupt:
        # The restore's workers have stopped (agent/engine/restore_files.py). An export has no
        # --resume (its folder must start empty): what it wrote is to be removed.
        written = "standard output" if tar_path == "-" else os.path.abspath(destination)
        raise Interrupted(f"export interrupted (Ctrl-C); {written} holds an incomplete copy",
                          hint="delete it and run the export again") from None
    audit(config, "export", repository=opened.settings.name, snapshot=id_hex(snap), to=where,
          files=document["files"], sha256_verified=document["sha256_verified"],
          failures=len(document["failures"]))
    if as_json:
        print_json({"snapshot_id": id_hex(snap), "to": where, **document})
    elif tar_path != "-":
        click.echo(f"Exported snapshot {snap.short_id} ({timefmt.shown(snap.time, config.retention.zone)}) to {where}: "
                   f"{document['files']} file(s), {human_bytes(document['bytes'])}; SHA-256 verified for "
                   f"{document['sha256_verified']}")
    if document["failures"]:
        for failure in document["failures"]:
            click.echo(f"  FAILED /{failure['path']}: {failure['problem']}", err=True)
        raise IntegrityError(f"{len(document['failures'])} file(s) did not export intact (listed above)")

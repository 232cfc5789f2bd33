"""`backupctl ls`, `backupctl find`, `backupctl dump`: look into snapshots at the incident desk."""

from __future__ import annotations

import datetime as _dt
import stat
import sys
from typing import Any

import click

from agent import timefmt
from agent.cli.common import (display_path, find_snapshot, human_bytes, id_hex, json_option, print_json,
                              repo_option)
from agent.cli.opening import Opened, with_repository
from agent.engine import browse
from agent.engine.patterns import closest_names, has_glob, is_path_pattern, quoted
from agent.errors import IntegrityError, UsageError
from agent.repo.repository import Repository
from agent.repo.snapshot import Snapshot
from agent.repo.tree import DIR, FILE, SYMLINK, Node

_TYPE_BITS = {FILE: stat.S_IFREG, DIR: stat.S_IFDIR, SYMLINK: stat.S_IFLNK}


def _entry(path: bytes, node: Node) -> dict[str, Any]:
    out = {"path": "/" + path.decode("utf-8", "surrogateescape"), "type": node.type, "mode": f"{node.mode:04o}",
           "size": node.size if node.type == FILE else None,
           "mtime": _dt.datetime.fromtimestamp(node.mtime_ns / 1e9, _dt.timezone.utc).astimezone().isoformat(),
           "user": node.user, "group": node.group}
    if node.type == FILE:
        out["sha256"] = node.sha256
    if node.type == SYMLINK:
        out["target"] = (node.target or b"").decode("utf-8", "surrogateescape")
    return out


def _line(entry: dict[str, Any], zone: timefmt.Zone) -> str:
    mode = stat.filemode(int(entry["mode"], 8) | _TYPE_BITS.get(entry["type"], 0))
    size = human_bytes(entry["size"]) if entry["size"] is not None else ""
    target = f" -> {entry['target']}" if entry.get("target") else ""
    return (f"{mode}  {entry['user'] or '-':8} {size:>10}  {timefmt.shown(entry['mtime'], zone)}  "
            f"{display_path(entry['path'])}{target}")


@click.command("ls")
@click.argument("snapshot", default="latest", metavar="[SNAPSHOT|latest]")
@click.argument("path", default="/", metavar="[PATH]")
@click.option("--recursive", "-r", is_flag=True, help="Everything below PATH, not only its entries.")
@repo_option
@json_option
@click.pass_context
@with_repository(lock="shared")  # no prune deletes the packs being read
def ls(ctx: click.Context, snapshot: str, path: str, recursive: bool, repo_name: str | None, as_json: bool, *,
       opened: Opened) -> None:
    """List what a snapshot holds at PATH (default: its top): type, mode, owner, size, date."""
    config, repo = opened.config, opened.repo
    snap = find_snapshot(repo, snapshot)
    repo.load_index()
    entries = [_entry(p, n) for p, n in browse.list_dir(repo, snap, path, recursive=recursive)]
    if as_json:
        print_json({"snapshot_id": id_hex(snap), "time": snap.time.isoformat(), "entries": entries})
        return
    for entry in entries:
        click.echo(_line(entry, config.retention.zone))


@click.command("find")
@click.argument("pattern")
@click.option("-i", "--ignore-case", is_flag=True, help="Upper and lower case alike ('martin' finds 'Martin').")
@repo_option
@json_option
@click.pass_context
@with_repository(lock="shared")  # no prune deletes the packs being read
def find(ctx: click.Context, pattern: str, ignore_case: bool, repo_name: str | None, as_json: bool, *,
         opened: Opened) -> None:
    """In which snapshots a file exists, with its size and SHA-256 fingerprint. PATTERN
    without "/" matches names ("lettre-dupont*"), as restore's --include does; with "/",
    whole paths. Nothing found: exit 2, with what to try."""
    config, repo = opened.config, opened.repo
    repo.load_index()
    snapshots = repo.snapshots()
    found = browse.find(repo, snapshots, pattern, ignore_case=ignore_case)
    rows = [{"snapshot_id": id_hex(s), "time": s.time.isoformat(), **_entry(p, n)} for s, p, n in found]
    if as_json:
        print_json({"pattern": pattern, "ignore_case": ignore_case, "matches": rows})
    if not rows:
        raise _nothing_matches(repo, snapshots, pattern, ignore_case)
    if as_json:
        return
    previous = None
    for row in sorted(rows, key=lambda r: (r["path"], r["time"])):
        if row["path"] != previous:
            click.echo(display_path(row["path"]))
            previous = row["path"]
        what = (f"{human_bytes(row['size']):>10}  sha256 {row['sha256'][:16]}" if row["type"] == FILE
                else f"{row['type']:>10}")
        click.echo(f"  {row['snapshot_id'][:8]}  {timefmt.shown(row['time'], config.retention.zone)}  {what}")
    click.echo("(Where the fingerprint changes between two snapshots, the file changed; the last snapshot "
               "before a change has the version to restore.)")


def _nothing_matches(repo: Repository, snapshots: list[Snapshot], pattern: str, ignore_case: bool) -> UsageError:
    """What to try when nothing matches: the '*NAME*' form of a bare name, the name alone
    for a path (a name matches anywhere), -i, and the closest names of the snapshots
    (shown on the terminal only; never logged)."""
    tries = []
    name = pattern.rstrip("/").rsplit("/", 1)[-1]
    if not is_path_pattern(pattern) and not has_glob(pattern):
        tries.append(f"*{pattern}*")
    elif is_path_pattern(pattern) and name:
        tries.append(name)
    shown = [quoted(t) for t in tries]
    if not ignore_case:
        shown.append(f"-i {quoted(tries[0] if tries else pattern)}")
    hint = f"try {' or '.join(shown)}" if shown else "try a shorter part of the name between two *"
    close = closest_names(pattern, browse.names_in(repo, snapshots)) if snapshots else []
    if close:
        hint += f"; closest names: {', '.join(quoted(n) for n in close)}"
    where = f"any of the {len(snapshots)} snapshot(s)" if snapshots else "the repository (it has no snapshot yet)"
    return UsageError(f"nothing matches {quoted(pattern)} in {where}", hint=hint)


@click.command("dump")
@click.argument("snapshot", metavar="SNAPSHOT|latest")
@click.argument("path")
@repo_option
@click.pass_context
@with_repository(lock="shared")  # no prune deletes the packs being read
def dump(ctx: click.Context, snapshot: str, path: str, repo_name: str | None, *, opened: Opened) -> None:
    """Write one file of a snapshot to standard output (e.g. `> lettre.odt`), checked
    against its SHA-256 (exit 13, with a message, if it does not match)."""
    repo = opened.repo
    snap = find_snapshot(repo, snapshot)
    repo.load_index()
    node = browse.find_node(repo, snap, path)
    if node is None or node.type != FILE:
        raise UsageError(f"{path} is not a file in snapshot {snap.short_id}", hint="`backupctl ls` shows what is there")
    out = sys.stdout.buffer
    try:
        for data in browse.file_bytes(repo, node, path):
            out.write(data)
        out.flush()
    except IntegrityError as exc:
        raise IntegrityError(f"{exc}; the output is not the original file, discard it") from None

"""`backupctl diff SNAPSHOT_A SNAPSHOT_B`: what changed from one snapshot to another.

A report, like `restic diff`: exit 0 whether or not anything differs. Folders whose
listing is the same in both snapshots are not read (agent/engine/diff.py)."""

from __future__ import annotations

import datetime as _dt
from typing import Any

import click

from agent import timefmt
from agent.cli.common import display_path, find_snapshot, human_bytes, id_hex, json_option, print_json, repo_option
from agent.cli.opening import Opened, with_repository
from agent.engine.diff import ADDED, CHANGED, KINDS, METADATA, REMOVED, Difference, DiffSummary, SnapshotDiff
from agent.repo.snapshot import Snapshot
from agent.repo.tree import DIR, FILE, SYMLINK, Node

_SIGN = {ADDED: "+", REMOVED: "-", CHANGED: "M", METADATA: "m"}
_TYPE_NAMES = {FILE: "file", DIR: "folder", SYMLINK: "symlink"}


def _path(difference: Difference) -> str:
    return "/" + difference.path.decode("utf-8", "surrogateescape")  # as ls and find print it


def _mtime(node: Node) -> str:
    return _dt.datetime.fromtimestamp(node.mtime_ns / 1e9, _dt.timezone.utc).astimezone().isoformat()


def _value(node: Node, name: str) -> Any:
    if name == "mode":
        return f"{node.mode:04o}"
    if name == "mtime":
        return _mtime(node)
    return getattr(node, name)  # uid, gid


def _entry(difference: Difference) -> dict[str, Any]:
    out: dict[str, Any] = {"path": _path(difference), "type": difference.type}
    before, after = difference.before, difference.after
    if difference.kind == ADDED:
        out["size"] = difference.size_after
    elif difference.kind == REMOVED:
        out["size"] = difference.size_before
    else:
        assert before is not None and after is not None
        if before.type != after.type:
            out["type_before"] = before.type
        if difference.kind == CHANGED:
            out.update(size_before=difference.size_before, size_after=difference.size_after)
            if before.type == FILE and after.type == FILE:
                out.update(sha256_before=before.sha256, sha256_after=after.sha256)
            if before.type == SYMLINK and after.type == SYMLINK:
                out.update(target_before=(before.target or b"").decode("utf-8", "surrogateescape"),
                           target_after=(after.target or b"").decode("utf-8", "surrogateescape"))
        out["metadata"] = {name: {"before": _value(before, name), "after": _value(after, name)}
                           for name in difference.fields}
    return out


def _size(size: int | None) -> str:
    return human_bytes(size) if size is not None else ""


def _line(difference: Difference, zone: timefmt.Zone) -> str:
    before, after = difference.before, difference.after
    path = display_path(_path(difference)) + ("/" if difference.type == DIR else "")
    if difference.kind in (ADDED, REMOVED):
        what = _size(difference.size_after if difference.kind == ADDED else difference.size_before)
    elif before is not None and after is not None and before.type != after.type:
        what = f"{_TYPE_NAMES[before.type]} -> {_TYPE_NAMES[after.type]}"
    elif difference.kind == CHANGED and difference.type == FILE:
        what = f"{_size(difference.size_before)} -> {_size(difference.size_after)}"
    elif difference.kind == CHANGED and before is not None and after is not None:  # a symbolic link
        what = f"target {_target(before)} -> {_target(after)}"
    else:
        assert before is not None and after is not None
        what = ", ".join(_field_shown(before, after, name, zone) for name in difference.fields)
    return f"{_SIGN[difference.kind]} {path}  {what}".rstrip()


def _target(node: Node) -> str:
    return (node.target or b"").decode("utf-8", "replace")


def _field_shown(before: Node, after: Node, name: str, zone: timefmt.Zone) -> str:
    if name == "mtime":
        old, new = timefmt.shown(_mtime(before), zone, seconds=True), timefmt.shown(_mtime(after), zone, seconds=True)
        if old == new:  # within one second: the difference itself
            return f"mtime {new} ({(after.mtime_ns - before.mtime_ns) / 1e9:+.9f} s)"
        return f"mtime {old} -> {new}"
    return f"{name} {_value(before, name)} -> {_value(after, name)}"


def _summary(summary: DiffSummary, listings: int) -> dict[str, Any]:
    return {**summary.counts, "files_added": summary.files[ADDED], "files_removed": summary.files[REMOVED],
            "files_changed": summary.files[CHANGED], "bytes_added": summary.bytes_added,
            "bytes_removed": summary.bytes_removed, "bytes_changed_before": summary.bytes_changed_before,
            "bytes_changed_after": summary.bytes_changed_after, "listings_read": listings}


def _summary_line(before: Snapshot, after: Snapshot, summary: DiffSummary, listings: int,
                  zone: timefmt.Zone) -> str:
    counts, files = summary.counts, summary.files
    return (f"{before.short_id} ({timefmt.shown(before.time, zone)}) -> {after.short_id} "
            f"({timefmt.shown(after.time, zone)}): "
            f"{counts[ADDED]} added ({files[ADDED]} file(s), {human_bytes(summary.bytes_added)}), "
            f"{counts[REMOVED]} removed ({files[REMOVED]} file(s), {human_bytes(summary.bytes_removed)}), "
            f"{counts[CHANGED]} changed ({human_bytes(summary.bytes_changed_before)} -> "
            f"{human_bytes(summary.bytes_changed_after)}), {counts[METADATA]} with only their metadata changed; "
            f"{listings} folder listing(s) read")


@click.command("diff")
@click.argument("snapshot_a", metavar="SNAPSHOT_A")
@click.argument("snapshot_b", metavar="SNAPSHOT_B")
@repo_option
@json_option
@click.pass_context
@with_repository(lock="shared")  # no prune deletes the listings being read
def command(ctx: click.Context, snapshot_a: str, snapshot_b: str, repo_name: str | None, as_json: bool, *,
            opened: Opened) -> None:
    """What changed from SNAPSHOT_A to SNAPSHOT_B (an id prefix, or latest): files added
    (+), removed (-), changed in content (M, by SHA-256) or in metadata only (m: mode,
    owner, mtime), with their sizes. Folders the two snapshots share are not read.
    Exit 0 whether or not anything differs."""
    config, repo = opened.config_and_repo()
    zone = config.retention.zone
    before = find_snapshot(repo, snapshot_a)
    after = find_snapshot(repo, snapshot_b)
    repo.load_index()
    engine = SnapshotDiff(repo, before, after)
    if as_json:
        # One document, by kind: the entries are gathered first (the human output streams).
        lists: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
        for difference in engine.run():
            lists[difference.kind].append(_entry(difference))
        print_json({"snapshot_a": id_hex(before), "snapshot_b": id_hex(after), "time_a": before.time.isoformat(),
                    "time_b": after.time.isoformat(), **lists,
                    "summary": _summary(engine.summary, engine.listings_loaded)})
        return
    for difference in engine.run():
        click.echo(_line(difference, zone))
    click.echo(_summary_line(before, after, engine.summary, engine.listings_loaded, zone))

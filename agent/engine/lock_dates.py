"""Object-lock dates that follow the retention tiers (rule S8).

Every object is written with a short lock (`lock_days`, default 30: enough for a backup
of this week until the next prune settles it). After each prune, the packs and the
snapshot object of every kept snapshot are locked until the snapshot's `settled_until`
(agent.engine.retention: the date until which the policy keeps it whatever later
backups do) plus LOCK_MARGIN. So a pack used only by weekly snapshots is locked for
weeks, one used by a monthly keeper for twelve months, one used by a yearly keeper for
years; and when a weekly snapshot becomes its month's keeper (the month ends), the
next prune extends the locks of its packs. A lock is never moved earlier.

Each extension costs a HEAD and a PUT per object, so the dates already set are kept in
a small cache in the state directory; an object whose cached date already covers what
is needed is not asked again. The cache is only an optimisation: lost, it is rebuilt
from the storage by the next prune.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any

from agent.engine.retention import Decision
from agent.engine.walk import load_tree
from agent.repo import layout
from agent.repo.repository import Repository
from agent.repo.layout import SnapshotId
from agent.repo.snapshot import Snapshot
from agent.repo.tree import DIR, FILE
from agent.state.files import load_json, save_json

# A snapshot is forgotten by the first prune after its settled date. Prune runs weekly
# after the backup: the lock must outlive that prune even if one weekly run is missed
# (server off over a holiday) and the storage's clock is ahead of ours.
LOCK_MARGIN = _dt.timedelta(days=14)


@dataclass
class LockReport:
    objects_checked: int = 0
    locks_extended: int = 0
    latest: dict[str, str] = field(default_factory=dict)  # snapshot id -> lock date of its objects

    def as_dict(self) -> dict[str, Any]:  # a JSON document (--json), read back by the commands
        return {"objects_checked": self.objects_checked, "locks_extended": self.locks_extended,
                "snapshot_lock_dates": self.latest}


class LockDateCache:
    """{object name: retain-until} as last set by this machine (JSON in the state dir)."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.dates: dict[str, _dt.datetime] = {}
        if path:
            try:
                self.dates = {k: _dt.datetime.fromisoformat(v) for k, v in load_json(path).items()}
            except (ValueError, TypeError):
                self.dates = {}  # an optimisation only: start again from the storage

    def covers(self, name: str, until: _dt.datetime) -> bool:
        known = self.dates.get(name)
        return known is not None and known >= until

    def record(self, name: str, until: _dt.datetime) -> None:
        self.dates[name] = until

    def save(self) -> None:
        if self.path:
            save_json(self.path, {k: v.isoformat() for k, v in self.dates.items()})


def lock_targets(repo: Repository, decisions: list[Decision],
                 snapshots: list[Snapshot]) -> dict[str, _dt.datetime]:
    """The lock date each object needs: for every kept snapshot with a settled date,
    its snapshot object and every pack holding one of its trees or chunks."""
    by_id = {s.id: s for s in snapshots}
    wanted: dict[str, _dt.datetime] = {}
    visited: set[bytes] = set()
    # Latest date first: a tree already walked for a later date needs nothing more.
    settled = sorted(((d.settled_until, SnapshotId(d.snapshot_id)) for d in decisions
                      if d.keep and d.settled_until is not None and d.snapshot_id is not None
                      and d.snapshot_id in by_id),
                     key=lambda pair: pair[0], reverse=True)
    for settled_until, snapshot_id in settled:
        until = settled_until + LOCK_MARGIN
        wanted[layout.snapshot_name(snapshot_id)] = until

        def need(chunk_id: bytes, until: _dt.datetime = until) -> None:  # this snapshot's date, bound now
            location = repo.locate(chunk_id)
            if location is not None:
                name = layout.pack_name(location.pack_id)
                if name not in wanted or wanted[name] < until:
                    wanted[name] = until

        stack = [by_id[snapshot_id].tree]
        while stack:
            tree_id = stack.pop()
            if tree_id in visited:
                continue
            visited.add(tree_id)
            need(tree_id)
            for node in load_tree(repo, tree_id):
                if node.type == DIR and node.subtree is not None:
                    stack.append(node.subtree)
                elif node.type == FILE:
                    for chunk_id in node.chunks:
                        need(chunk_id)
    return wanted


def extend_locks(repo: Repository, decisions: list[Decision], snapshots: list[Snapshot], *,
                 cache: LockDateCache) -> LockReport:
    report = LockReport()
    wanted = lock_targets(repo, decisions, snapshots)
    for decision in decisions:
        if decision.keep and decision.settled_until is not None and decision.snapshot_id is not None:
            report.latest[decision.snapshot_id.hex()] = (decision.settled_until + LOCK_MARGIN).isoformat()
    for name, until in sorted(wanted.items()):
        report.objects_checked += 1
        if cache.covers(name, until):
            continue
        repo.extend_lock(name, until)
        cache.record(name, until)
        report.locks_extended += 1
    cache.save()
    return report


def hold_last_good(repo: Repository, snapshot: Snapshot, until: _dt.datetime, *,
                   cache: LockDateCache) -> LockReport:
    """While a ransomware alarm is open (agent.engine.alarm): lock the last good snapshot's
    object and every pack it uses until at least `until`. A lock is only ever moved later,
    so nothing newer is shortened either."""
    assert snapshot.id is not None  # read from the repository
    decision = Decision(snapshot.id, snapshot.time, True, ("last good snapshot before a ransomware alarm",),
                        settled_until=until - LOCK_MARGIN)
    return extend_locks(repo, [decision], [snapshot], cache=cache)

"""`backupctl acknowledge SNAPSHOT`: a person has looked at a suspect snapshot (issue 22).

The ransomware alarm marked SNAPSHOT suspect (tag `suspect`, `summary.alarm`). Until a
person acknowledges it, prune forgets nothing from the last good snapshot on and the last
good snapshot's object lock is extended. Acknowledging records who and when in the audit
trail and in the state records (agent/state/alarm_state.py); prune and the lock dates then
behave as usual. The snapshot itself keeps its tag: the repository's history says it was
suspect, whoever reads it."""

from __future__ import annotations

from typing import Any

import click

from agent import clock
from agent.cli.common import audit, find_snapshot, id_hex, json_option, print_json, repo_option
from agent.cli.opening import Opened, with_repository
from agent.engine.alarm import SUSPECT_TAG, open_alarm
from agent.errors import UsageError
from agent.state.alarm_state import acknowledged, note_alarm
from agent.state.records import Records


@click.command("acknowledge")
@click.argument("snapshot", metavar="SNAPSHOT")
@repo_option
@json_option
@click.pass_context
@with_repository(lock="shared")
def command(ctx: click.Context, snapshot: str, repo_name: str | None, as_json: bool, *, opened: Opened) -> None:
    """Acknowledge the ransomware alarm of a suspect SNAPSHOT (an id or its first characters):
    prune and object-lock dates behave as usual again. Recorded in the audit trail."""
    config, repo = opened.config, opened.repo
    snap = find_snapshot(repo, snapshot)
    hex_id = id_hex(snap)
    if SUSPECT_TAG not in snap.tags:
        raise UsageError(f"snapshot {hex_id[:8]} is not marked suspect: there is no alarm to acknowledge",
                         hint="`backupctl status` names the suspect snapshot of an open alarm")
    repository = config.repository(repo_name).name
    records = Records(config.agent.state_dir, repository)
    already = hex_id in acknowledged(records)
    if not already:
        found = snap.summary.get("alarm")
        alarm: dict[str, Any] = found if isinstance(found, dict) else {}
        remaining = open_alarm(repo.snapshots(), acknowledged(records) | {hex_id})
        note_alarm(records, clock.now(), open=remaining is not None,
                   snapshot=remaining.suspects[-1] if remaining else hex_id,
                   last_good=remaining.last_good if remaining else alarm.get("last_good"),
                   counts=alarm, acknowledge=hex_id)
        audit(config, "acknowledge", repository=repository, snapshot=hex_id, last_good=alarm.get("last_good"))
    still_open = open_alarm(repo.snapshots(), acknowledged(records))
    if as_json:
        print_json({"snapshot_id": hex_id, "acknowledged": True, "already": already,
                    "alarm_open": still_open is not None})
        return
    click.echo(f"Snapshot {hex_id[:8]} was already acknowledged." if already
               else f"Ransomware alarm of snapshot {hex_id[:8]} acknowledged (recorded in the audit trail).")
    if still_open is not None:
        click.echo(f"The alarm is still open: suspect snapshot(s) {', '.join(s[:8] for s in still_open.suspects)} "
                   f"not acknowledged.")
    else:
        click.echo("Prune and object-lock dates behave as usual again.")

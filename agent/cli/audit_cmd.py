"""`backupctl audit verify`: is the audit trail intact? (rules T1-T3)"""

from __future__ import annotations

import click

from agent import timefmt
from agent.state.audit import AuditTrail
from agent.cli.common import json_option, load_config, print_json


@click.group("audit")
def command() -> None:
    """The audit trail of backups, restores, prunes and key changes."""


@command.command("verify")
@json_option
@click.pass_context
def verify(ctx: click.Context, as_json: bool) -> None:
    """Check that no record of the audit trail was edited, inserted or deleted (exit 13 if one was)."""
    config = load_config(ctx)
    trail = AuditTrail(config.agent.state_dir)
    result = trail.verify()  # IntegrityError (exit 13) names the first broken line
    if as_json:
        print_json({"path": trail.path, "intact": True, **result})
    else:
        click.echo(f"The audit trail {trail.path} is intact: {result['records']} record(s)"
                   + (f", from {timefmt.shown(result['first'], config.retention.zone)} to "
                      f"{timefmt.shown(result['last'], config.retention.zone)}" if result["records"] else ""))

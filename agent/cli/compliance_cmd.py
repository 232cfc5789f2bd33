"""`backupctl compliance`: the rules of docs/COMPLIANCE.md the agent can assess, with evidence."""

from __future__ import annotations

import click

from agent.cli.common import json_option, load_config, print_json
from agent.cli.opening import open_repository
from agent.engine.compliance import FAIL
from agent.errors import OBLIGATIONS_AT_RISK_EXIT_CODE
from agent.reports.facts import gather
from agent.reports.i18n import row_dict


@click.command("compliance")
@json_option
@click.pass_context
def command(ctx: click.Context, as_json: bool) -> None:
    """OK / WARN / FAIL for each assessable rule (S1-S8, C1-C5, K1, T2) with its evidence;
    exit code 4 when a rule FAILs. Opens every repository (the passphrase is needed)."""
    config = load_config(ctx)
    gathered = gather(config, lambda name: open_repository(ctx, name).repo)  # reads snapshots and records: no lock
    rows = [row_dict(row) for row in gathered.rows(config)]
    failed = any(row["status"] == FAIL for row in rows)
    if as_json:
        print_json({"time": gathered.now.isoformat(), "ok": not failed, "rules": rows})
    else:
        for row in rows:
            click.echo(f"{row['status']:<4}  {row['rule']:<6} {row['title']}")
            for line in row["evidence"]:
                click.echo(f"              {line}")
    if failed:
        ctx.exit(OBLIGATIONS_AT_RISK_EXIT_CODE)

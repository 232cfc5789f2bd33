"""`backupctl metrics`: this server's metrics in Prometheus's text format, for the IT
provider's monitoring of a fleet (docs/INSTALL.md, "Monitoring a fleet").

Reads only the state directory, as `status` does (no passphrase, no network). Prints the
exposition on standard output; `--write` writes [metrics] textfile_dir's file instead
(atomically), for node_exporter's textfile collector, e.g. from a timer when no daemon runs.
"""

from __future__ import annotations

import click

from agent import clock
from agent.cli.common import load_config
from agent.errors import UsageError


@click.command("metrics")
@click.option("--write", "write", is_flag=True,
              help="Write [metrics] textfile_dir/backupctl.prom (atomically) instead of printing.")
@click.pass_context
def command(ctx: click.Context, write: bool) -> None:
    """Print the metrics (Prometheus text format): last backup, check and restore test of
    each repository, sizes, snapshots per tier, compliance rules, the daemon's state."""
    from agent.daemon.metrics import families, read_facts
    from agent.daemon.metrics_export import exposition, write_textfile

    config = load_config(ctx)
    found = families(read_facts(config, clock.now()))
    if not write:
        click.echo(exposition(found).decode("utf-8"), nl=False)
        return
    if config.metrics.textfile_dir is None:
        raise UsageError(f"{config.path}: --write needs [metrics] textfile_dir",
                         hint='add [metrics] textfile_dir = "/var/lib/backupctl-metrics" '
                              "(docs/INSTALL.md, \"Monitoring a fleet\"), or print with `backupctl metrics`")
    click.echo(f"metrics written to {write_textfile(config.metrics.textfile_dir, found)}")

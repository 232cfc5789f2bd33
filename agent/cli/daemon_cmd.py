"""`backupctl daemon`: run the schedule of [schedule] until stopped (systemd service)."""

from __future__ import annotations

import logging
import sys

import click

from agent import config as config_module


@click.command("daemon")
@click.pass_context
def command(ctx: click.Context) -> None:
    """Run the weekly backups, prunes, checks and catch-ups of [schedule] until stopped
    (SIGTERM stops cleanly, SIGHUP reloads the configuration)."""
    from agent.daemon.service import Daemon  # APScheduler is loaded only for the daemon

    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(message)s")
    path = config_module.config_path(ctx.obj.get("config_file"))
    ctx.exit(Daemon(path).run())

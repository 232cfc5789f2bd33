"""`backupctl daemon`: run the schedule of [schedule] until stopped (systemd service).

`backupctl daemon --reload [PID]` is the unit's ExecReload=: it checks the configuration
first and signals the daemon only if the daemon would take it, so `systemctl reload`
fails (exit 2, the one-line reason) on a configuration the daemon would refuse, and
needs no /bin/kill (procps).
"""

from __future__ import annotations

import logging

import click

from agent import config as config_module


@click.command("daemon")
@click.option("--reload", "reload", is_flag=True,
              help="Check the configuration, then make the running daemon read it again (SIGHUP). "
                   "Exit 2 and the daemon keeps its schedule when the configuration is refused.")
@click.argument("pid", required=False, type=click.IntRange(min=2), metavar="[PID]")
@click.pass_context
def command(ctx: click.Context, reload: bool, pid: int | None) -> None:
    """Run the weekly backups, prunes, checks and catch-ups of [schedule] until stopped
    (SIGTERM stops cleanly, SIGHUP or `daemon --reload` reloads the configuration).

    With --reload, PID is the daemon's process ($MAINPID under systemd); without it, the
    daemon that runs for the configured state_dir."""
    path = config_module.config_path(ctx.obj.get("config_file"))
    if reload:
        from agent.daemon.service import reload_daemon

        reloaded = reload_daemon(path, pid)
        click.echo(f"backupctl: configuration checked; daemon (pid {reloaded}) asked to reload it", err=True)
        return
    if pid is not None:
        raise click.UsageError("PID is only for --reload")
    from agent.daemon import journal
    from agent.daemon.service import Daemon  # APScheduler is loaded only for the daemon

    journal.setup(logging.INFO)
    # Returns once stopped (SIGTERM, SIGINT): a stop that was asked for exits 0, so systemd
    # counts it a clean stop and restarts only a daemon that failed.
    Daemon(path).run()

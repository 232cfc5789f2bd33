"""`backupctl install-service`: the service on this server (agent/service_install/).

scripts/install.sh runs it from the rescue kit after creating the venv; running it again
after a change of the configuration brings the unit's drop-ins, the wrapper and the polkit
rule in step, and changes nothing when nothing changed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from agent.errors import UsageError


class _Terminal:
    def show(self, text: str) -> None:
        click.echo(text)

    def ask(self, prompt: str) -> str:
        return str(click.prompt(prompt, prompt_suffix="", default="", show_default=False))


@click.command("install-service")
@click.option("--config", "config_file", metavar="FILE",
              help="Install this configuration as /etc/backupctl/config.toml (the previous one is kept "
                   "as config.toml.previous). Default: the installed one, else the example.")
@click.option("--passphrase-file", metavar="FILE",
              help="The repositories' passphrase, when no terminal can show a generated one (destroy the file after).")
@click.option("--s3-credentials-file", metavar="FILE",
              help="S3 keys in the AWS shared-credentials format, stored as the credential s3-credentials.")
@click.option("--smtp-password-file", metavar="FILE", help="The SMTP password, stored as the credential smtp-password.")
@click.option("--uninstall", is_flag=True,
              help="Stop and remove the service, its wrapper and polkit rule; keeps configuration, state, "
                   "credentials and every repository.")
@click.pass_context
def command(ctx: click.Context, config_file: str | None, passphrase_file: str | None,
            s3_credentials_file: str | None, smtp_password_file: str | None, uninstall: bool) -> None:
    """Install (or bring up to date) the backupctl service on this Debian server: user, folders,
    unit, credentials, the /usr/local/bin/backupctl wrapper, the repositories; then start it."""
    from agent.service_install.installer import HostSystem, Installer, Options

    if os.geteuid() != 0:
        raise UsageError("install-service must run as root", hint="sudo sh install.sh")
    if not os.path.isdir("/run/systemd/system"):
        raise UsageError("systemd is not running as PID 1 here", hint="install-service needs a systemd system")
    # The unit tests give the installer a temporary root and a recording System instead.
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    installer = Installer(Path("/"), HostSystem(), click.echo, _Terminal() if interactive else None)
    if uninstall:
        installer.uninstall()
        return
    installer.install(Options(config_file=config_file or ctx.obj.get("config_file"),
                              passphrase_file=passphrase_file, s3_credentials_file=s3_credentials_file,
                              smtp_password_file=smtp_password_file))

"""`backupctl`: the entry point. Maps the exception tree to exit codes, once (the codes
themselves live in agent/errors.py)."""

from __future__ import annotations

import ctypes
import importlib
import logging
import os
import signal
import sys
import traceback
from types import FrameType
from typing import Any

import click

from agent import __version__, run_as
from agent import config as config_module
from agent.errors import INTERRUPTED_EXIT_CODE, BackupctlError, ConfigError, Terminated


# Each command's module is imported when that command runs, not at every start: a
# `snapshots` then skips the report renderer, the mail client and the daemon (importing
# every command took 0.24 s of a 0.55 s `snapshots`; measured with python -X importtime).
_COMMANDS = {
    "init": "init_cmd:command", "backup": "backup_cmd:command", "snapshots": "snapshots_cmd:command",
    "restore": "restore_cmd:command", "restore-test": "restore_test_cmd:command", "check": "check_cmd:command",
    "prune": "prune_cmd:command", "repair": "repair_cmd:command", "copy": "copy_cmd:command",
    "media": "media_cmd:command", "daemon": "daemon_cmd:command", "status": "status_cmd:command",
    "compliance": "compliance_cmd:command", "reports": "reports_cmd:command", "key": "key_cmd:command",
    "recover": "recover_cmd:command", "export": "export_cmd:command", "audit": "audit_cmd:command",
    "cleanup-versions": "cleanup_cmd:command", "ls": "browse_cmd:ls", "find": "browse_cmd:find",
    "dump": "browse_cmd:dump", "diff": "diff_cmd:command", "install-service": "install_cmd:command",
    "pre-installation": "preinstall_cmd:command",
    "metrics": "metrics_cmd:command",
}
_COMMANDS["acknowledge"] = "acknowledge_cmd:command"  # the ransomware alarm (issue 22)


# What root may run on an installed server (the state directory belongs to the service
# user, agent/run_as.py): commands that only read (`status` reads records; `audit verify`
# reads the trail; `daemon --reload` checks the configuration and signals the daemon) or
# must be root (`install-service`); help writes nothing. Every other command may write in
# the state directory (keys, ledger, records, audit trail, caches), a file:// repository or
# a disk, and runs as the service user instead. docs/INSTALL.md, "Commands by hand on the server".
ROOT_MAY_RUN = {("status",), ("audit", "verify"), ("install-service",)}
# Commands that write where the user says (a restore target): as the service user, what
# they write belongs to it.
_WRITES_ELSEWHERE = {("restore",), ("recover",), ("export",), ("reports", "get"), ("key", "export")}


class _Group(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in _COMMANDS:
            return None
        module, attribute = _COMMANDS[name].split(":")
        command: click.Command = getattr(importlib.import_module(f"agent.cli.{module}"), attribute)
        return command

    def resolve_command(self, ctx: click.Context, args: list[str]
                        ) -> tuple[str | None, click.Command | None, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        if command is not None and not ctx.resilient_parsing and os.geteuid() == 0:
            _not_as_root(ctx, name, command, rest)
        return name, command, rest

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BackupctlError as exc:
            _say_error(exc.one_line())
            _maybe_traceback(ctx)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            _say_error("interrupted; nothing already stored was lost, the next run resumes")
            ctx.exit(INTERRUPTED_EXIT_CODE)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as exc:  # a bug: still one line, the details on request
            _say_error(f"internal error: {type(exc).__name__}: {exc} "
                       f"(run with --debug or BACKUPCTL_DEBUG=1 for details)")
            _maybe_traceback(ctx)
            ctx.exit(BackupctlError.exit_code)  # the generic code: "something went wrong"


def _not_as_root(ctx: click.Context, name: str | None, command: click.Command, rest: list[str]) -> None:
    """Run as root: go on, or switch to the service user, or refuse (agent/run_as.py).
    Decided before the command runs, from click's own parse of its arguments."""
    words = [name or command.name or ""]
    leaf, leaf_args = command, list(rest)
    if isinstance(command, click.Group):
        if not rest or rest[0].startswith("-"):
            return  # the group's help or usage: nothing runs
        sub = command.get_command(ctx, rest[0])
        if sub is None:
            return  # click says it is unknown
        words.append(rest[0])
        leaf, leaf_args = sub, rest[1:]
    if tuple(words) in ROOT_MAY_RUN:
        return
    parsed = leaf.make_context(" ".join(words), leaf_args, parent=ctx, resilient_parsing=True)
    help_option = leaf.get_help_option(parsed)
    if help_option is not None and help_option.name is not None \
            and parsed.get_parameter_source(help_option.name) is click.core.ParameterSource.COMMANDLINE:
        return  # --help: click prints it and stops
    if words == ["daemon"] and parsed.params.get("reload"):
        return
    if words == ["recover"]:
        state_dir = parsed.params.get("state_dir")  # no configuration: its own option
    else:
        try:
            state_dir = config_module.load(config_module.config_path(ctx.params.get("config_file"))).agent.state_dir
        except ConfigError:
            return  # the command itself reports it
    if not state_dir:
        return
    note = " (what it writes outside the state directory then belongs to {user}: choose a folder it may write)" \
        if tuple(words) in _WRITES_ELSEWHERE else ""
    run_as.switch_or_refuse(sys.argv, state_dir=state_dir, config_given=ctx.params.get("config_file") is not None,
                            note=note)


def _say_error(text: str) -> None:
    from agent.cli.progress import clear_bar

    clear_bar()  # a bar still drawn is erased first: the error starts on a line of its own
    click.echo(f"backupctl: error: {text}", err=True)


def _maybe_traceback(ctx: click.Context) -> None:
    if (ctx.obj or {}).get("debug") or os.environ.get("BACKUPCTL_DEBUG"):
        traceback.print_exc(file=sys.stderr)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="backupctl")
@click.option("--config", "config_file", metavar="FILE", envvar=None,
              help="Configuration file (default: $BACKUPCTL_CONFIG, else /etc/backupctl/config.toml).")
@click.option("--debug", is_flag=True, help="Show a traceback on errors.")
@click.pass_context
def cli(ctx: click.Context, config_file: str | None, debug: bool) -> None:
    """Encrypted, deduplicated backups for a medical practice."""
    ctx.ensure_object(dict)
    ctx.obj["config_file"] = config_file
    ctx.obj["debug"] = debug




def _on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise Terminated("stopped by SIGTERM")


def _limit_malloc_arenas() -> None:
    """glibc gives each thread its own malloc arena, each keeping freed chunk buffers;
    two arenas measured 291 -> 241 MiB peak RSS on the bench's initial backup."""
    try:
        ctypes.CDLL("libc.so.6").mallopt(-8, 2)  # M_ARENA_MAX = -8
    except (OSError, AttributeError):
        pass  # not glibc: nothing to tune


def _hook_output_to_stderr() -> None:
    """The [[hooks]] commands' output (agent.engine.source.hooks logs it) goes to standard error,
    line by line, where a person or the daemon's journal sees it."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("backupctl: %(message)s"))
    hooks = logging.getLogger("backupctl.hooks")
    hooks.addHandler(handler)
    hooks.setLevel(logging.INFO)
    hooks.propagate = False


def main() -> None:
    _limit_malloc_arenas()
    _hook_output_to_stderr()
    signal.signal(signal.SIGTERM, _on_sigterm)
    cli(prog_name="backupctl")

"""`backupctl media init|status`: the set of rotated backup disks (rules S2, S6)."""

from __future__ import annotations

import datetime as _dt
import os
from typing import Any

import click

from agent import clock, timefmt
from agent import config as config_module
from agent.cli.common import (medium_storage, audit, json_option, load_config, passphrase, print_json, repo_option,
                               require_long_passphrase)
from agent.cli.rescue import store_kit
from agent.crypto.kdf import KdfParams
from agent.state import media
from agent.errors import MediumError, UsageError
from agent.repo.repository import Repository


def _media_settings(config: config_module.Config, repo_name: str | None) -> config_module.RepositorySettings:
    if repo_name is None:
        sets = [r for r in config.repositories if r.media]
        if not sets:
            raise UsageError("no repository of the configuration is a set of disks",
                             hint='add media = ["DISQUE-A", "DISQUE-B", ...] to a file:// repository')
        return sets[0]
    settings = config.repository(repo_name)
    if not settings.media:
        raise UsageError(f"repository {settings.name} is not a set of disks (it has no media = [...])")
    return settings


@click.group("media")
def command() -> None:
    """Rotated backup disks: prepare one, see which is due."""


@command.command("init")
@click.argument("label")
@repo_option
@json_option
@click.pass_context
def init(ctx: click.Context, label: str, repo_name: str | None, as_json: bool) -> None:
    """Label the disk mounted at the set's URL as LABEL and create its repository."""
    config = load_config(ctx)
    settings = _media_settings(config, repo_name)
    if label not in settings.media:
        raise UsageError(f"{label!r} is not one of the disks of {settings.name}: {', '.join(settings.media)}")
    secret = passphrase(config, confirm=True)
    state = media.MediaState(config.agent.state_dir, settings.name)
    if not os.path.exists(state.key_path):  # the set's first disk: a new master key
        require_long_passphrase(secret, what="the passphrase for the new disk set")
    params = KdfParams()
    master = state.master_key(secret, kdf_params=params, create=True)  # checks the passphrase first
    medium = media.write_label(settings.mount, label, settings.name)
    repo = Repository.init(medium_storage(settings.mount), secret, cipher=settings.cipher,
                           compression_level=settings.zstd_level, kdf_params=params, master=master)
    audit(config, "disk_prepared", repository=settings.name, label=medium.label,
          repository_id=repo.config.repository_id.hex())
    document: dict[str, Any] = {"repository": settings.name, "label": medium.label, "medium_id": medium.medium_id,
                "mount": settings.mount, "repository_id": repo.config.repository_id.hex()}
    if as_json:
        document["rescue_kit"] = store_kit(config, repo, settings.name, as_json=True)
        print_json(document)
    else:
        click.echo(f"Disk {medium.label} of {settings.name} is ready at {settings.mount} "
                   f"(repository {repo.config.repository_id.hex()[:8]}).")
        click.echo("Write its label on the disk itself; it is due every "
                   f"{len(settings.media)} weeks (backupctl media status).")
        store_kit(config, repo, settings.name, as_json=False)


@command.command("status")
@repo_option
@json_option
@click.pass_context
def status(ctx: click.Context, repo_name: str | None, as_json: bool) -> None:
    """For each disk: last backup, last verification, next week it is due; which is mounted."""
    config = load_config(ctx)
    settings = _media_settings(config, repo_name)
    today = clock.today(config.retention.zone)
    record = media.MediaState(config.agent.state_dir, settings.name).record()
    seen = record.get("media", {})
    try:
        mounted = media.read_label(settings.mount)
    except MediumError:
        mounted = None
    due = media.due_medium(settings.media, today)
    disks = []
    for label in settings.media:
        entry = seen.get(label, {})
        disks.append({
            "label": label,
            "due_this_week": label == due,
            "next_due_week_of": media.next_due(settings.media, label, today).isoformat(),
            "last_backup": entry.get("last_backup"),
            "last_snapshot": entry.get("snapshot"),
            "last_check": entry.get("last_check"),
            "last_check_ok": entry.get("check_ok"),
            "mounted": mounted is not None and mounted.label == label,
        })
    warnings = []
    if mounted is None or mounted.label != due:
        warnings.append(f"this week's disk, {due}, is not plugged in at {settings.mount}")
    week_ago = clock.now() - _dt.timedelta(days=8)
    last = max((d["last_backup"] for d in disks if d["last_backup"]), default=None)
    if last is None or _dt.datetime.fromisoformat(last) < week_ago:
        warnings.append("no disk received a backup in the last 8 days (rule S1)")
    document = {"repository": settings.name, "mount": settings.mount, "due_this_week": due,
                "mounted": mounted.label if mounted else None, "disks": disks, "warnings": warnings}
    if as_json:
        print_json(document)
        return
    click.echo(f"Disks of {settings.name} (mounted at {settings.mount}); this week: {due}"
               f"{'' if not mounted else f', plugged in: {mounted.label}'}")
    for disk in disks:
        click.echo(f"  {disk['label']:<12} last backup {timefmt.shown(disk['last_backup'], config.retention.zone)}, "
                   f"last check {timefmt.shown(disk['last_check'], config.retention.zone)}"
                   f"{'' if disk['last_check_ok'] in (None, True) else ' (FAILED)'}, "
                   f"next due week of {disk['next_due_week_of']}")
    for warning in warnings:
        click.echo(f"  warning: {warning}")



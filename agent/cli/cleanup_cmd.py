"""`backupctl cleanup-versions`: what S3 lifecycle rules would do, done explicitly.

HDS offers may forbid lifecycle rules; without them a versioned bucket keeps every
overwritten or deleted object's old versions forever. This deletes those whose object
lock has expired and aborts incomplete multipart uploads older than a day. It never
touches a version still under lock, and it never runs by itself.
"""

from __future__ import annotations

import click

from agent.cli.common import json_option, load_config, print_json, repo_option
from agent.errors import UsageError
from agent.storage import open_storage
from agent.storage.base import VersionCleanup


@click.command("cleanup-versions")
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
@repo_option
@json_option
@click.pass_context
def command(ctx: click.Context, dry_run: bool, repo_name: str | None, as_json: bool) -> None:
    """Delete expired old versions and stale uploads in an S3 repository's bucket."""
    config = load_config(ctx)
    settings = config.repository(repo_name)
    storage = None if settings.media else open_storage(settings.url, s3=settings.s3)
    if not isinstance(storage, VersionCleanup):
        raise UsageError(f"repository {settings.name!r} is not on S3; there are no object versions to clean")
    report = storage.cleanup(dry_run=dry_run)
    if as_json:
        print_json(report)
        return
    verb = "would delete" if dry_run else "deleted"
    click.echo(f"{verb} {report['deleted_versions']} old version(s) whose lock expired; "
               f"{report['still_locked']} still locked (kept); "
               f"{'would abort' if dry_run else 'aborted'} {report['aborted_uploads']} stale upload(s)")

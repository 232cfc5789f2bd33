"""`backupctl reports list|get`: the restore-test reports kept in the repository.

Each restore test leaves its report (JSON facts and HTML page) encrypted in the
repository, so that an auditor can be shown any quarter's proof even after the server
that produced it is gone: `get` writes it back out as files.
"""

from __future__ import annotations

import json
import os

import click

from agent import timefmt
from agent.cli.common import json_option, print_json, repo_option
from agent.cli.opening import Opened, with_repository
from agent.reports import store
from agent.state.files import save_bytes


@click.group("reports")
def command() -> None:
    """Restore-test reports kept (encrypted) in the repository."""


@command.command("list")
@repo_option
@json_option
@click.pass_context
@with_repository(lock=None)  # it reads the stored reports only, no pack
def list_reports(ctx: click.Context, repo_name: str | None, as_json: bool, *, opened: Opened) -> None:
    """The stored reports, oldest first: id, date, result, files verified."""
    config, repo = opened.config, opened.repo
    tests, problems = store.past_tests(repo)
    if as_json:
        print_json({"reports": tests, "unreadable": problems})
        return
    if not tests:
        click.echo("No report is stored in this repository yet (run `backupctl restore-test`).")
    for test in tests:
        click.echo(f"{test['report_id'][:8]}  {timefmt.shown(test['time'], config.retention.zone)}  "
                   f"{'passed' if test['ok'] else 'FAILED'}  {test['sha256_verified']}/{test['files']} file(s) "
                   f"verified")
    for problem in problems:
        click.echo(f"  unreadable: {problem}", err=True)


@command.command("get")
@click.argument("report_id")
@repo_option
@click.option("--output-dir", required=True, metavar="DIR", help="Where to write the report's .html and .json.")
@click.pass_context
@with_repository(lock=None)  # it reads one stored report only, no pack
def get_report(ctx: click.Context, report_id: str, repo_name: str | None, output_dir: str, *, opened: Opened) -> None:
    """Write a stored report (by id or id prefix) back out as HTML and JSON files."""
    repo = opened.repo
    document, page = store.load(repo, report_id)
    stem = os.path.join(output_dir, store.base_name(document))
    save_bytes(stem + ".json", json.dumps(document, indent=1, ensure_ascii=False).encode("utf-8"))
    save_bytes(stem + ".html", page.encode("utf-8"))
    click.echo(f"Written: {stem}.html and {stem}.json")

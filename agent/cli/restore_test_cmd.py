"""`backupctl restore-test`: restore, prove every file by SHA-256, wipe (rules S7, C3, C5)."""

from __future__ import annotations

import os

import click

from agent import clock, timefmt
from agent.cli.common import (audit, find_snapshot, human_bytes, id_hex, json_option, print_json, repo_option,
                              upload_verification_mode)
from agent.cli.opening import Opened, open_repository, with_repository
from agent.state.records import Records
from agent.config import Config
from agent.engine.restore_testing import RestoreTestEngine, RestoreTestReport
from agent.errors import IntegrityError
from agent.repo.repository import Repository
from agent.reports import store
from agent.reports.document import build
from agent.reports.facts import gather
from agent.reports.html import render
from agent.reports.store import WrittenReport
from agent.state.layout import StateLayout


@click.command("restore-test")
@repo_option
@click.option("--snapshot", "snapshot_id", default="latest", metavar="ID", help="Snapshot to test (default: latest).")
@click.option("--full", "mode", flag_value="full", default=True, help="Restore every file (default).")
@click.option("--sample", type=click.IntRange(1, 1_000_000), metavar="N", help="Restore N files drawn at random.")
@click.option("--scratch-dir", metavar="DIR",
              help="Where to restore (a fresh folder inside it is wiped afterwards); default state_dir/restore-test.")
@click.option("--report-dir", metavar="DIR",
              help="Where to write the report (HTML, JSON, PDF); default [agent] report_dir or state_dir/reports.")
@json_option
@click.pass_context
@with_repository(lock=None)  # the restore engine takes its shared lock itself (agent/engine/restore.py)
def command(ctx: click.Context, repo_name: str | None, snapshot_id: str, mode: str, sample: int | None,
            scratch_dir: str | None, report_dir: str | None, as_json: bool, *, opened: Opened) -> None:
    """Restore a snapshot (and a sample of the oldest one) into a scratch folder, compare
    every file's SHA-256 with the one recorded at backup, measure the time, then wipe it.
    Writes a report (HTML in the configured language, JSON, and PDF when Chromium is
    installed) and keeps an encrypted copy of it in the repository."""
    config, repo = opened.config, opened.repo
    snapshot = find_snapshot(repo, snapshot_id)
    snapshots = repo.snapshots()
    oldest = snapshots[0] if snapshots else None
    scratch = scratch_dir or StateLayout(config.agent.state_dir).restore_test_scratch()
    engine = RestoreTestEngine(repo, snapshot, scratch, sources=list(config.source.paths), sample=sample,
                               oldest=oldest, databases=config.databases, state_dir=config.agent.state_dir)
    name = config.repository(repo_name).name
    try:
        report = engine.run()
    except IntegrityError as exc:
        # A test that could not even start (a tree refused as crafted, a listing missing)
        # is a failed test: status and the audit trail must say so, not keep the last pass.
        Records(config.agent.state_dir, name).note("restore_test", clock.now(), ok=False, snapshot=id_hex(snapshot),
                                                   files=0, sha256_verified=0, error=str(exc))
        audit(config, "restore_test", repository=name, snapshot=id_hex(snapshot), ok=False, files=0,
              scratch=os.path.abspath(scratch), error=str(exc))
        raise
    document = {"repository": name, **report.as_dict()}
    report_id = os.urandom(16)
    Records(config.agent.state_dir, name).note("restore_test", clock.now(), ok=report.ok, snapshot=id_hex(snapshot),
                                               files=document["files"], sha256_verified=document["sha256_verified"],
                                               report=report_id.hex())
    audit(config, "restore_test", repository=name, snapshot=id_hex(snapshot), ok=report.ok,
          files=document["files"], scratch=os.path.abspath(scratch), wiped=report.scratch_wiped,
          report=report_id.hex())
    written, problems = _report(ctx, config, name, repo, report, report_id, report_dir, opened.medium)
    document["report"] = {**written.as_dict(), "unreadable_past_reports": problems}
    for check in report.databases:
        if check.loaded_into == "production":
            click.echo(f"WARNING: database {check.name}: {check.note}", err=True)
    if as_json:
        print_json(document)
    else:
        for test in report.tests:
            when = timefmt.shown(test.snapshot_time, config.retention.zone)
            click.echo(f"Snapshot {test.snapshot_id[:8]} ({when}, {test.mode}): "
                       f"{test.files} file(s), {human_bytes(test.bytes)} restored in {test.duration_s:.1f} s "
                       f"({test.throughput_mib_s:.0f} MiB/s); SHA-256 verified for {test.sha256_verified}")
        for check in report.databases:
            click.echo(f"Database {check.name} ({check.type}): " + (
                f"FAILED: {check.problem}" if not check.ok else
                f"the dump {check.note}" if not check.loaded_into else
                f"the dump restored into a {check.loaded_into} scratch database: {check.tables} table(s), "
                f"{sum((check.rows or {}).values())} row(s)"))
        click.echo("Restored data wiped." if report.scratch_wiped else "WARNING: the scratch copy could not be wiped")
        click.echo(f"Report: {written.html}" + (f" and {written.pdf}" if written.pdf else ""))
        for problem in ([written.pdf_problem] if written.pdf_problem else []) + problems:
            click.echo(f"  note: {problem}")
        if written.store_problem:
            click.echo(f"WARNING: the report was not kept in the repository: {written.store_problem}", err=True)
    if not report.ok:
        if not as_json:
            for failure in document["failures"]:
                click.echo(f"  FAILED /{failure['path']}: {failure['problem']}", err=True)
        databases = [d for d in report.databases if not d.ok]
        if document["failures"]:
            raise IntegrityError(f"restore test failed: {len(document['failures'])} file(s) did not restore intact"
                                 + (f", {len(databases)} database dump(s) did not load" if databases else ""),
                                 hint="run `backupctl check --read-data` to see what is damaged")
        raise IntegrityError(f"restore test failed: {len(databases)} database dump(s) did not load into a scratch "
                             f"database ({databases[0].name}: {databases[0].problem})")


def _report(ctx: click.Context, config: Config, name: str, repo: Repository, result: RestoreTestReport,
            report_id: bytes, report_dir: str | None, medium: str | None) -> tuple[WrittenReport, list[str]]:
    """Write the report files and keep a copy in the repository; returns what was written
    and the stored reports that could not be read."""
    gathered = gather(config, lambda other: open_repository(ctx, other).repo, opened={name: repo})
    past, problems = store.past_tests(repo)
    document = build(config, config.repository(name), repo, result, gathered, report_id=report_id,
                     past_tests=past, medium=medium,
                     upload_verification=upload_verification_mode(repo))
    page = render(document)
    written = store.write(report_dir or config.agent.reports, document, page)
    store.store(repo, written, document, page)
    return written, problems

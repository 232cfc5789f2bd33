"""`backupctl compliance`: the rules of RULES.md the agent can assess, with evidence."""

from __future__ import annotations

import datetime as _dt
import os

import click

from agent import clock
from agent.audit import AuditTrail
from agent.cli.common import json_option, load_config, open_repository, print_json
from agent.engine import media
from agent.engine.compliance import FAIL, RepositoryFacts, assess
from agent.engine.records import Records
from agent.errors import OBLIGATIONS_AT_RISK_EXIT_CODE, BackupctlError, IntegrityError


@click.command("compliance")
@json_option
@click.pass_context
def command(ctx: click.Context, as_json) -> None:
    """OK / WARN / FAIL for each assessable rule (S1-S8, C1-C5, K1, T2) with its evidence;
    exit code 4 when a rule FAILs. Opens every repository (the passphrase is needed)."""
    config = load_config(ctx)
    now = clock.now()
    facts = []
    for settings in config.repositories:
        fact = RepositoryFacts(settings.name, "s3" if settings.s3 else "disks" if settings.media else "local",
                               object_lock=settings.s3.object_lock if settings.s3 else "none")
        try:
            _config, repo = open_repository(ctx, settings.name)
            fact.cipher = repo.config.cipher
            fact.created = clock.parse_iso(repo.config.created) if repo.config.created else None
            fact.snapshots = [(s.id.hex(), s.time) for s in repo.snapshots()]
        except BackupctlError as exc:
            fact.unavailable = exc.one_line()
        test = Records(config.agent.state_dir, settings.name).last("restore_test")
        if test is not None:
            fact.last_restore_test = (test.time, bool(test.detail.get("ok")))
        if settings.media:
            seen = media.MediaState(config.agent.state_dir, settings.name).record().get("media", {})
            recent = now - _dt.timedelta(days=28)
            fact.disks_used_last_4_weeks = sum(
                1 for entry in seen.values()
                if entry.get("last_backup") and _dt.datetime.fromisoformat(entry["last_backup"]) >= recent)
        facts.append(fact)
    trail = AuditTrail(config.agent.state_dir)
    audit = None
    if os.path.exists(trail.path):
        try:
            audit = {"intact": True, **trail.verify()}
        except IntegrityError as exc:
            audit = {"intact": False, "records": "?", "first": None, "problem": str(exc)}
    sheets = [Records(config.agent.state_dir, r.name).last("recovery_sheet") for r in config.repositories]
    sheet = max((s.time for s in sheets if s is not None), default=None)
    rows = assess(facts, now=now, zone=config.retention.zone, yearly=config.retention.yearly, audit=audit,
                  recovery_sheet=sheet)
    failed = any(row.status == FAIL for row in rows)
    if as_json:
        print_json({"time": now.isoformat(), "ok": not failed, "rules": [row.as_dict() for row in rows]})
    else:
        for row in rows:
            click.echo(f"{row.status:<4}  {row.rule:<6} {row.title}")
            for line in row.evidence:
                click.echo(f"              {line}")
    if failed:
        ctx.exit(OBLIGATIONS_AT_RISK_EXIT_CODE)

"""`backupctl key export|add|list|remove|passwd`: the recovery sheet and the passphrases.

One master secret encrypts a repository. Each passphrase is a key file wrapping it
(Argon2id): adding, changing or removing a passphrase writes or deletes one small key
file and never re-encrypts data. The recovery sheet carries the master secret itself,
for the day no passphrase and no server is left (rules K1, K2).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

import click

from agent import clock, timefmt
from agent.cli.common import (audit, json_option, new_passphrase, new_passphrase_option, print_json,
                              repo_option)
from agent.crypto import paper, shares
from agent.state.known_keys import KnownKeys
from agent.cli.opening import open_repository
from agent.cli.rescue import store_kit
from agent.state.records import Records
from agent.errors import IntegrityError, ReportError, UsageError
from agent.repo import rescue_kit
from agent.reports import browser, qr
from agent.reports.html import render_sheet
from agent.reports.sheet import build
from agent.state.files import save_bytes


@click.group("key")
def command() -> None:
    """The recovery sheet and the repository's passphrases."""


@command.command("export")
@click.option("--paper", "paper_file", required=True, metavar="FILE",
              help="The sheet to print: FILE.html, or FILE.pdf (needs Chromium).")
@click.option("--shares", "split", metavar="K/N",
              help="Make N sheets, any K of which recover the key (e.g. 2/3 for three partners).")
@repo_option
@json_option
@click.pass_context
def export(ctx: click.Context, paper_file: str, split: str | None, repo_name: str | None, as_json: bool) -> None:
    """Write the recovery sheet: repository, endpoint and bucket, the master key as typed
    lines with check characters and as a QR code, and the steps to recover."""
    stem, extension = os.path.splitext(paper_file)
    if extension.lower() not in (".html", ".pdf"):
        raise UsageError(f"--paper {paper_file}: the sheet is written as .html or .pdf",
                         hint="give a file name ending in .html or .pdf")
    threshold, count = _shares(split)
    # No lock: keys/ is never pruned, and a key written or removed meanwhile is no reader's concern.
    config, repo = open_repository(ctx, repo_name).config_and_repo()
    settings = config.repository(repo_name)
    if extension.lower() == ".pdf" and browser.find_chromium() is None:
        raise ReportError("a PDF sheet needs Chromium, which is not installed",
                          hint="install it (apt install chromium) or write the sheet as .html and print it")
    if count:
        parts = shares.split(repo.master.secret, threshold, count)
        codes = [paper.RecoveryCode(repo.config.repository_id, share, threshold=threshold, share_number=number)
                 for number, share in parts]
        files = [f"{stem}-{number}-of-{count}{extension}" for number, _share in parts]
    else:
        codes = [paper.RecoveryCode(repo.config.repository_id, repo.master.secret)]
        files = [paper_file]
    # The sheet prints the SHA-256 of the kit the repository holds: store it first if missing.
    kit_outcome = store_kit(config, repo, settings.name, as_json=as_json)
    try:
        kit = rescue_kit.stored_record(repo)
    except IntegrityError as exc:  # no SHA-256 on the sheet rather than one nobody can vouch for
        click.echo(f"backupctl: warning: the rescue kit's record does not open ({exc}): the sheet names no "
                   f"kit; run `backupctl check`", err=True)
        kit = None
    for code, path in zip(codes, files, strict=True):
        sheet = build(config, settings, repo, code, share_count=count, kit=kit)
        _write_sheet(render_sheet(sheet, qr.svg(sheet["qr_text"])), path)
    Records(config.agent.state_dir, settings.name).note("recovery_sheet", clock.now(), shares=split, sheets=len(files))
    audit(config, "key_export", repository=settings.name, sheets=[os.path.abspath(f) for f in files], shares=split)
    if as_json:
        print_json({"repository": settings.name, "sheets": [os.path.abspath(f) for f in files], "shares": split,
                    "rescue_kit": {**kit_outcome, "sha256": kit.sha256 if kit else None}})
        return
    for path in files:
        click.echo(f"Recovery sheet written: {path}")
    click.echo("It holds the key in clear: print it, put it in the safe, then delete the file "
               f"(shred -u {' '.join(files)}).")


def _shares(split: str | None) -> tuple[int, int]:
    if split is None:
        return 0, 0
    k, _, n = split.partition("/")
    if not (k.isdigit() and n.isdigit() and 2 <= int(k) <= int(n) <= shares.MAX_SHARES):
        raise UsageError(f"--shares {split!r}: expected K/N with 2 <= K <= N <= {shares.MAX_SHARES}, such as 2/3")
    return int(k), int(n)


def _write_sheet(page: str, path: str) -> None:
    if path.lower().endswith(".html"):
        save_bytes(path, page.encode("utf-8"))
        return
    # The page exists only in a private temporary folder while Chromium prints it.
    private = tempfile.mkdtemp(prefix="backupctl-sheet-")
    try:
        html = os.path.join(private, "sheet.html")
        save_bytes(html, page.encode("utf-8"))
        browser.print_pdf(html, os.path.join(private, "sheet.pdf"), executable=browser.find_chromium() or "chromium")
        with open(os.path.join(private, "sheet.pdf"), "rb") as handle:
            save_bytes(path, handle.read())
    finally:
        shutil.rmtree(private, ignore_errors=True)


@command.command("add")
@new_passphrase_option
@repo_option
@json_option
@click.pass_context
def add(ctx: click.Context, new_passphrase_file: str | None, repo_name: str | None, as_json: bool) -> None:
    """Add a passphrase (a new key file); the existing ones keep working."""
    config, repo = open_repository(ctx, repo_name).config_and_repo()
    key_id = repo.add_key(new_passphrase(new_passphrase_file))
    audit(config, "key_add", repository=config.repository(repo_name).name, key_id=key_id.hex())
    if as_json:
        print_json({"key_id": key_id.hex()})
    else:
        click.echo(f"Passphrase added (key {key_id.hex()[:8]}).")


@command.command("list")
@repo_option
@json_option
@click.pass_context
def list_keys(ctx: click.Context, repo_name: str | None, as_json: bool) -> None:
    """The passphrases (key files) of the repository; * marks the one used now."""
    config, repo = open_repository(ctx, repo_name).config_and_repo()
    keys: list[dict[str, Any]] = [
        {"key_id": k.key_id.hex(), "created": k.created, "host": k.host, "current": k.key_id == repo.key_id,
         "kdf": {"memory_kib": k.params.memory_kib, "iterations": k.params.iterations,
                 "parallelism": k.params.parallelism}} for k in repo.list_keys()]
    if as_json:
        print_json({"keys": keys})
        return
    for key in keys:
        created = timefmt.shown(key['created'], config.retention.zone, never='-')
        click.echo(f"{'*' if key['current'] else ' '} {key['key_id'][:8]}  {created}  "
                   f"{key['host']}  Argon2id m={key['kdf']['memory_kib'] // 1024} MiB t={key['kdf']['iterations']}")


@command.command("remove")
@click.argument("key_id")
@repo_option
@click.pass_context
def remove(ctx: click.Context, key_id: str, repo_name: str | None) -> None:
    """Remove a passphrase (by key id prefix). The one used now, and the last one, stay."""
    config, repo = open_repository(ctx, repo_name).config_and_repo()
    keys = repo.list_keys()
    matches = [k for k in keys if k.key_id.hex().startswith(key_id.lower())]
    if len(matches) != 1:
        raise UsageError(f"{'no' if not matches else len(matches)} key(s) match {key_id!r}",
                         hint="list them with `backupctl key list`")
    chosen = matches[0]
    if chosen.key_id == repo.key_id:
        raise UsageError("this is the passphrase in use now; it cannot remove itself",
                         hint="open with another passphrase to remove this one, or use `backupctl key passwd`")
    repo.remove_key(chosen.key_id)
    audit(config, "key_remove", repository=config.repository(repo_name).name, key_id=chosen.key_id.hex())
    click.echo(f"Passphrase {chosen.key_id.hex()[:8]} removed.")


@command.command("passwd")
@new_passphrase_option
@repo_option
@click.pass_context
def passwd(ctx: click.Context, new_passphrase_file: str | None, repo_name: str | None) -> None:
    """Change the passphrase in use: the new key file is written before the old one is removed."""
    config, repo = open_repository(ctx, repo_name).config_and_repo()
    old = repo.key_id
    new = repo.add_key(new_passphrase(new_passphrase_file))
    if old is not None:
        repo.remove_key(old)
    KnownKeys(config.agent.state_dir).remember(repo.config.repository_id, new)
    audit(config, "key_passwd", repository=config.repository(repo_name).name, key_id=new.hex(),
          removed=old.hex() if old else None)
    click.echo(f"Passphrase changed (key {new.hex()[:8]}); update [key] passphrase_file or the systemd credential.")

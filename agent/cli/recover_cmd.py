"""`backupctl recover`: a new machine, the recovery sheet, the bucket's access key (rule K2).

Needs no configuration file and no state: the repository's address on the command line,
S3 credentials from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) or a file,
and the recovery code typed, pasted or scanned from the sheet (one code, or K shares).
It lists the snapshots, restores one (every file proven by SHA-256), or gives the
repository a new passphrase so the new machine can back up again.
"""

from __future__ import annotations

import os
import sys
from urllib.parse import urlparse

import click

from agent import clock, timefmt
from agent.cli.common import (audit_in, display_path, find_snapshot, human_bytes, id_hex, json_option, new_passphrase,
                              new_passphrase_option, print_json, resume_command)
from agent.cli.progress import for_terminal
from agent.crypto import paper
from agent.crypto.keys import MasterKey
from agent.state.known_keys import KnownKeys
from agent.engine.restore import RestoreEngine
from agent.errors import IntegrityError, Interrupted, UsageError
from agent.repo.repository import Repository
from agent.storage import open_storage
from agent.storage.options import ADDRESSING_CHOICES, S3Options

DEFAULT_STATE_DIR = "/var/lib/backupctl"


@click.command("recover")
@click.option("--url", required=True, metavar="URL", help="s3://bucket/prefix or file:///path, as on the sheet.")
@click.option("--endpoint", metavar="URL", help="S3 endpoint of the hosting provider, as on the sheet.")
@click.option("--region", metavar="NAME", help="S3 region, as on the sheet.")
@click.option("--addressing", type=click.Choice(ADDRESSING_CHOICES), default="auto", show_default=True)
@click.option("--credentials-file", metavar="FILE", help="S3 credentials file (default: the environment).")
@click.option("--ca-bundle", metavar="FILE", help="CA certificates of a private S3 endpoint.")
@click.option("--code-file", metavar="FILE",
              help="The recovery code (typed lines or QR text; several shares separated by an empty line). "
                   "Default: asked on the terminal, or read from standard input.")
@click.option("--list", "listing", is_flag=True, help="List the snapshots.")
@click.option("--restore", "snapshot", metavar="SNAPSHOT", help="Restore this snapshot (id prefix, or latest).")
@click.option("--target", metavar="DIR", help="Folder to restore into (with --restore).")
@click.option("--include", "includes", multiple=True, metavar="GLOB", help="Restore only matching paths.")
@click.option("--keep-special-bits", is_flag=True,
              help="Restore setuid, setgid and sticky bits (a system restore wants them). Default: dropped.")
@click.option("--resume", is_flag=True,
              help="Finish an interrupted --restore: files already there with the recorded SHA-256 are kept.")
@click.option("--add-key", is_flag=True, help="Add a new passphrase to the repository (for backups from here).")
@new_passphrase_option
@click.option("--state-dir", metavar="DIR", envvar="BACKUPCTL_STATE_DIR", default=DEFAULT_STATE_DIR,
              show_default=True, help="Where the audit trail of this machine is kept.")
@json_option
def command(url: str, endpoint: str | None, region: str | None, addressing: str, credentials_file: str | None,
            ca_bundle: str | None, code_file: str | None, listing: bool, snapshot: str | None, target: str | None,
            includes: tuple[str, ...], keep_special_bits: bool, resume: bool, add_key: bool,
            new_passphrase_file: str | None, state_dir: str, as_json: bool) -> None:
    """Reconnect to a repository from the recovery sheet alone; list, restore, or add a passphrase."""
    if sum(bool(x) for x in (listing, snapshot, add_key)) != 1:
        raise UsageError("say what to do: --list, --restore SNAPSHOT --target DIR, or --add-key")
    if snapshot and not target:
        raise UsageError("--restore needs --target DIR (an empty folder)")
    storage = open_storage(url, s3=_s3_options(url, endpoint, region, addressing, credentials_file, ca_bundle))
    repository_id, secret = paper.master_secret(paper.parse_all(_read_code(code_file)))
    repo = Repository.open_with_master(storage, MasterKey(secret), repository_id)
    if listing:
        snapshots = repo.snapshots()
        if as_json:
            print_json({"repository_id": repo.config.repository_id.hex(), "snapshots": [
                {"snapshot_id": id_hex(s), "time": s.time.isoformat(), "host": s.host, "paths": s.paths,
                 "bytes_total": s.summary.get("bytes_total")} for s in snapshots]})
            return
        zone = timefmt.machine_zone()  # no configuration here: this machine's zone, said once
        click.echo(f"Repository {repo.config.repository_id.hex()[:8]} opened with the recovery code: "
                   f"{len(snapshots)} snapshot(s); times in this machine's time zone "
                   f"({timefmt.zone_label(clock.now().astimezone(zone))})")
        for s in snapshots:
            click.echo(f"{s.short_id}  {timefmt.shown(s.time, zone)}  {s.host}  "
                       f"{human_bytes(s.summary.get('bytes_total', 0))}  {', '.join(s.paths)}")
        return
    if add_key:
        key_id = repo.add_key(new_passphrase(new_passphrase_file))
        KnownKeys(state_dir).remember(repo.config.repository_id, key_id)  # this machine's key: tried first
        audit_in(state_dir, "key_add", url=url, key_id=key_id.hex(), by="recover")
        click.echo(f"Passphrase added (key {key_id.hex()[:8]}). Put it in [key] passphrase_file of the new "
                   f"configuration; the repository's address is {url}.")
        return
    assert snapshot and target  # neither --list nor --add-key: --restore, its --target required above
    snap = find_snapshot(repo, snapshot)
    engine = RestoreEngine(repo, snap, target, includes=list(includes), keep_special_bits=keep_special_bits,
                           resume=resume, progress=for_terminal(as_json, storage=storage))
    try:
        report = engine.run()
    except KeyboardInterrupt:
        audit_in(state_dir, "restore", url=url, snapshot=id_hex(snap), target=os.path.abspath(target),
                 includes=list(includes), by="recover", interrupted=True)
        raise Interrupted("recovery interrupted (Ctrl-C); the files finished are verified and kept, those being "
                          "written are incomplete",
                          hint=f"to finish it, run (the code is asked again): {resume_command()}") from None
    audit_in(state_dir, "restore", url=url, snapshot=id_hex(snap), target=os.path.abspath(target),
           includes=list(includes), files=report.files, sha256_verified=report.verified,
           failures=len(report.failures), by="recover")
    if as_json:
        print_json({"snapshot_id": id_hex(snap), "snapshot_time": snap.time.isoformat(), "target": target,
                    **report.as_dict()})
    else:
        when = timefmt.shown(snap.time, timefmt.machine_zone())
        click.echo(f"Restored snapshot {snap.short_id} ({when}, this machine's time zone) into {target}: "
                   f"{report.files} file(s), {human_bytes(report.bytes)}; SHA-256 verified for {report.verified}")
    if report.failures:
        for path, problem in report.failures:
            click.echo(f"  FAILED {display_path(path)}: {problem}", err=True)
        raise IntegrityError(f"{len(report.failures)} file(s) could not be restored intact (listed above)")


def _s3_options(url: str, endpoint: str | None, region: str | None, addressing: str, credentials_file: str | None,
                ca_bundle: str | None) -> S3Options | None:
    parsed = urlparse(url)
    if parsed.scheme != "s3":
        if endpoint or credentials_file:
            raise UsageError("--endpoint and --credentials-file are for s3:// addresses")
        return None
    if not parsed.netloc:
        raise UsageError(f"--url {url!r}: expected s3://bucket/prefix")
    return S3Options(bucket=parsed.netloc, prefix=parsed.path.strip("/"), endpoint=endpoint, region=region,
                     addressing=addressing, credentials_file=credentials_file, ca_bundle=ca_bundle)


def _read_code(code_file: str | None) -> str:
    if code_file:
        try:
            with open(code_file, encoding="utf-8") as handle:
                return handle.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--code-file {code_file}: cannot be read ({exc})") from None
    if not sys.stdin.isatty():
        return sys.stdin.read()
    click.echo("Type the recovery code, one line of the sheet at a time (or paste the QR code's text);\n"
               "for shares, an empty line between two sheets; end with two empty lines.\n"
               "What you type is not shown: the code is the master key, and a terminal's scrollback or a\n"
               "screen share must not keep it. Each line's two check characters name a mistyped line.", err=True)
    lines, empty = [], 0
    while empty < 2:
        line = click.prompt("", default="", show_default=False, prompt_suffix="> ", err=True, hide_input=True)
        empty = empty + 1 if not line.strip() else 0
        lines.append(line)
    return "\n".join(lines)


"""`backupctl init`: create a repository (never over an existing one)."""

from __future__ import annotations

from typing import Any

import click

from agent import clock
from agent.cli.common import (audit, describe_verification, json_option, load_config, passphrase,
                               print_json, repo_option, require_long_passphrase)
from agent.cli.rescue import store_kit
from agent.crypto import aead
from agent.crypto.kdf import KdfParams
from agent.state.known_keys import KnownKeys
from agent.state.records import PROBE_RECORD, Records
from agent.errors import UsageError
from agent.repo.repository import Repository
from agent.storage import open_storage
from agent.storage.base import Probing
from agent.storage.options import S3Options
from agent.storage.verification import Verification


@click.command("init")
@repo_option
@json_option
@click.pass_context
def command(ctx: click.Context, repo_name: str | None, as_json: bool) -> None:
    """Create an empty encrypted repository at the configured URL."""
    aead.self_test()  # before the storage is even probed: a non-standard backend writes nothing
    config = load_config(ctx)
    settings = config.repository(repo_name)
    if settings.media:
        raise UsageError(f"repository {settings.name} is a set of disks: prepare each disk with "
                         f"`backupctl media init LABEL --repo {settings.name}`")
    storage = open_storage(settings.url, s3=settings.s3)
    probing = storage if isinstance(storage, Probing) else None  # an S3 endpoint
    endpoint_facts = None
    if probing is not None:
        # Probe before asking for anything: a wrong bucket or key fails here, cleanly.
        endpoint_facts = probing.probe()
        probing.require_object_lock(endpoint_facts)
        # Recorded: later commands choose the upload verification from it (verify_uploads = "auto").
        Records(config.agent.state_dir, settings.name).note(PROBE_RECORD, clock.now(), **endpoint_facts)
    secret = require_long_passphrase(passphrase(config, confirm=True), what="the passphrase for the new repository")
    params = KdfParams()
    repo = Repository.init(storage, secret, cipher=settings.cipher,
                           compression_level=settings.zstd_level, kdf_params=params)
    facts: dict[str, Any] = {
        "repository": settings.name,
        "url": settings.url,
        "repository_id": repo.config.repository_id.hex(),
        "format_version": repo.config.format_version,
        "cipher": settings.cipher,
        "kdf": f"argon2id m={params.memory_kib} KiB t={params.iterations} p={params.parallelism}",
        "chunk_id": "keyed BLAKE3-256",
        "file_fingerprint": "SHA-256",
        "compression": f"zstd level {settings.zstd_level}" if settings.zstd_level else "none",
    }
    if probing is not None and endpoint_facts is not None:
        facts["endpoint"] = endpoint_facts
        facts["object_lock_mode"] = settings.s3.object_lock if settings.s3 is not None else "none"
        facts["verify_uploads"] = probing.verification().as_dict()
    KnownKeys(config.agent.state_dir).remember(repo.config.repository_id, repo.key_id)
    # A new repository means a new master key, wrapped by the passphrase (a key change, rule T1).
    audit(config, "repository_created", repository=settings.name, repository_id=repo.config.repository_id.hex())
    if as_json:
        facts["rescue_kit"] = store_kit(config, repo, settings.name, as_json=True)
        print_json(facts)
        return
    click.echo(f"Created repository {settings.name!r} ({facts['repository_id'][:8]}) at {settings.url}")
    click.echo(f"  encryption {facts['cipher']}, key wrapping {facts['kdf']},")
    click.echo(f"  chunk ids {facts['chunk_id']}, file fingerprints {facts['file_fingerprint']}, "
               f"compression {facts['compression']}")
    if probing is not None and endpoint_facts is not None and settings.s3 is not None:  # an S3 endpoint's
        _say_endpoint(endpoint_facts, settings.s3, probing.verification())
    click.echo("Keep the passphrase safe: without it the backups cannot be read by anyone.")
    store_kit(config, repo, settings.name, as_json=False)


def _say_endpoint(facts: dict[str, Any], s3: S3Options, verification: Verification) -> None:
    yes_no = {True: "yes", False: "no"}
    click.echo(f"  endpoint {facts['endpoint']}, bucket {facts['bucket']}: versioning {facts['versioning']}, "
               f"object lock {facts['object_lock']} (agent writes with: {s3.object_lock}"
               + (f", {s3.lock_days} days" if s3.object_lock != "none" else "") + ")")
    click.echo(f"  provider checks upload checksums: {yes_no[facts['rejects_bad_checksum']]}; "
               f"returns SHA-256 checksums: {yes_no[facts['returns_sha256_checksum']]}; "
               f"conditional writes: {yes_no[facts['conditional_writes']]}")
    click.echo(f"  uploads verified by: {describe_verification(verification)}")
    if not facts["rejects_bad_checksum"] and verification.mode != "read-back":
        click.echo("  warning: this provider accepts uploads with a wrong checksum; "
                   'set verify_uploads = "read-back"', err=True)

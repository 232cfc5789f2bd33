"""`backupctl init`: create a repository (never over an existing one)."""

from __future__ import annotations

import click

from agent.cli.common import json_option, load_config, passphrase, print_json, repo_option
from agent.crypto.kdf import KdfParams
from agent.repo.repository import Repository
from agent.storage import open_storage


@click.command("init")
@repo_option
@json_option
@click.pass_context
def command(ctx: click.Context, repo_name: str | None, as_json: bool) -> None:
    """Create an empty encrypted repository at the configured URL."""
    config = load_config(ctx)
    settings = config.repository(repo_name)
    secret = passphrase(config, confirm=True)
    params = KdfParams()
    repo = Repository.init(open_storage(settings.url), secret, cipher=settings.cipher,
                           compression_level=settings.zstd_level, kdf_params=params)
    facts = {
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
    if as_json:
        print_json(facts)
        return
    click.echo(f"Created repository {settings.name!r} ({facts['repository_id'][:8]}) at {settings.url}")
    click.echo(f"  encryption {facts['cipher']}, key wrapping {facts['kdf']},")
    click.echo(f"  chunk ids {facts['chunk_id']}, file fingerprints {facts['file_fingerprint']}, "
               f"compression {facts['compression']}")
    click.echo("Keep the passphrase safe: without it the backups cannot be read by anyone.")

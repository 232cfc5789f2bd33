"""What every command needs: the config, the passphrase, an open repository."""

from __future__ import annotations

import json
import os
import shlex
import sys
from typing import Any

import click

from agent import clock
from agent import config as config_module
from agent.state.audit import AuditTrail
from agent.crypto.kdf import normalize_passphrase
from agent.state import media
from agent.engine.progress import human_bytes as human_bytes  # re-exported: the commands import it from here
from agent.errors import ConfigError, IntegrityError, PermissionDenied, StateDirError, UsageError
from agent.repo.repository import Repository
from agent.repo.snapshot import Snapshot
from agent.state.ledger import Ledger
from agent.state.records import PROBE_RECORD, Records
from agent.state.files import read_private_file
from agent.storage.base import Probing, Storage
from agent.storage.local import LocalStorage
from agent.clock_skew import CLOCK_SKEW_HINT, CLOCK_SKEW_LIMIT, describe_skew
from agent.storage.verification import Verification, facts_for

repo_option = click.option("--repo", "repo_name", metavar="NAME",
                           help="Repository name from the configuration (default: the first).")
json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
new_passphrase_option = click.option("--new-passphrase-file", metavar="FILE",
                                     help="File holding the new passphrase (one line, mode 0600).")
MIN_PASSPHRASE = 12  # characters asked of every new passphrase (init, key add/passwd, recover --add-key)


def load_config(ctx: click.Context) -> config_module.Config:
    return config_module.load(config_module.config_path(ctx.obj.get("config_file")))


def passphrase(config: config_module.Config, *, confirm: bool = False) -> bytes:
    return passphrase_and_source(config, confirm=confirm)[0]


def passphrase_and_source(config: config_module.Config, *, confirm: bool = False) -> tuple[bytes, str]:
    """The passphrase, and where it came from (see config.read_passphrase_and_source)."""
    found = config_module.read_passphrase_and_source(config)
    if found is not None:
        return found
    if not sys.stdin.isatty():
        raise ConfigError(f"{config.path}: no passphrase: set [key] passphrase_file or BACKUPCTL_PASSPHRASE")
    text = click.prompt("Repository passphrase", hide_input=True, confirmation_prompt=confirm)
    return text.encode("utf-8"), "the passphrase typed at the prompt"


def medium_storage(mount: str) -> LocalStorage:
    """The repository on the rotated disk mounted at `mount` (agent/state/media.py)."""
    return LocalStorage(os.path.join(mount, media.REPOSITORY_DIR))


def recorded_probe(config: config_module.Config, settings: config_module.RepositorySettings) -> dict[str, Any] | None:
    """The facts of the last probe of this repository's S3 endpoint and bucket, if any."""
    if settings.s3 is None:
        return None
    entry = Records(config.agent.state_dir, settings.name).last(PROBE_RECORD)
    return facts_for(entry.detail if entry else None, settings.s3.endpoint, settings.s3.bucket)


def attach_probe_record(config: config_module.Config, settings: config_module.RepositorySettings,
                        storage: Storage) -> None:
    """An S3 storage learns what `init`'s probe recorded (its upload verification follows
    from it), and records the probe it makes itself before a first upload without one."""
    if settings.s3 is None or not isinstance(storage, Probing):
        return
    records = Records(config.agent.state_dir, settings.name)
    storage.use_probe_facts(recorded_probe(config, settings))
    storage.record_probes_with(lambda facts: records.note(PROBE_RECORD, clock.now(), **facts))


def upload_verification_mode(repo: Repository) -> str | None:
    """How the repository's uploads are verified ("head", "read-back"), for an S3 endpoint
    whose probe chose it; None for a disk."""
    return repo.storage.verification().mode if isinstance(repo.storage, Probing) else None


def describe_verification(verification: Verification) -> str:
    """One line for `init` and `status`: the mode in force, and why."""
    what = {"head": "HEAD (size and the SHA-256 the server checked; no second transfer)",
            "read-back": "read-back (each object downloaded again and its SHA-256 compared)"}[verification.mode]
    return f"{what}; verify_uploads = \"{verification.setting}\": {verification.reason}"


def warn_changed_parameters(settings: config_module.RepositorySettings, repo: Repository) -> None:
    """`cipher` and `compression_level` are fixed when the repository is created (its config
    object holds them): a configuration changed since is not applied, and says so."""
    def level(value: int | None) -> str:
        return "compression none" if value is None else f"compression_level {value}"

    differences = []
    if settings.cipher != repo.config.cipher:
        differences.append(f"cipher {settings.cipher} in the configuration, {repo.config.cipher} in the repository")
    if settings.zstd_level != repo.config.compression_level:
        differences.append(f"{level(settings.zstd_level)} in the configuration, "
                           f"{level(repo.config.compression_level)} in the repository")
    if differences:
        click.echo(f"backupctl: warning: [repositories.{settings.name}]: {'; '.join(differences)}: the repository "
                   f"keeps what it was created with (fixed at init); set the configuration back, or init a new "
                   f"repository with the new settings and `backupctl copy --to` it", err=True)


def warn_clock_skew(repo: Repository) -> None:
    """Say so when the storage server's clock contradicts ours (prune then refuses)."""
    skew = repo.clock_skew()
    if skew is not None and abs(skew) > CLOCK_SKEW_LIMIT:
        click.echo(f"backupctl: warning: {describe_skew(skew)}; snapshot times follow this computer's "
                   f"clock and prune will refuse to run — {CLOCK_SKEW_HINT}", err=True)


def ledger_of(config: config_module.Config, repo: Repository) -> Ledger:
    """This machine's record of the repository's snapshots (agent/state/ledger.py)."""
    return Ledger(config.agent.state_dir, repo.config.repository_id)


def warn_ledger(ledger: Ledger) -> None:
    if ledger.write_problem:
        click.echo(f"backupctl: warning: the snapshot ledger was not updated: {ledger.write_problem}; "
                   f"deleted or replayed snapshots may go unnoticed until it can be written", err=True)


def warn_unreadable_snapshots(repo: Repository) -> None:
    """After repo.snapshots(): name the snapshots left out because they do not decrypt."""
    for problem in repo.snapshot_problems:
        click.echo(f"backupctl: warning: {problem}; `backupctl check` tells more", err=True)


def note_medium(config: config_module.Config, repo_name: str | None, label: str | None, **fields: Any) -> list[str]:
    """Record an event of the mounted disk `label` (backup, check; None: the repository is
    not on a set of disks); returns rotation warnings."""
    if not label:
        return []
    settings = config.repository(repo_name)
    state = media.MediaState(config.agent.state_dir, settings.name)
    record = state.note(label, **fields)
    if "last_backup" not in fields:
        return []
    return media.rotation_warnings(settings.media, label, record.get("previous"),
                                   clock.today(config.retention.zone))


def find_snapshot(repo: Repository, wanted: str) -> Snapshot:
    if wanted == "latest":
        snapshots = repo.snapshots()
        if not snapshots and repo.snapshot_problems:
            raise IntegrityError(repo.snapshot_problems[0], hint="run `backupctl check` to see what is affected")
        warn_unreadable_snapshots(repo)  # "latest" is then the newest readable one
        if not snapshots:
            raise UsageError("the repository has no snapshot yet", hint="run `backupctl backup` first")
        return snapshots[-1]
    wanted = wanted.lower()
    matches = [i for i in repo.list_snapshot_ids() if i.hex().startswith(wanted)]
    if not matches:
        raise UsageError(f"no snapshot id starts with {wanted!r}", hint="list them with `backupctl snapshots`")
    if len(matches) > 1:
        raise UsageError(f"{len(matches)} snapshots start with {wanted!r}", hint="give more characters of the id")
    return repo.load_snapshot(matches[0])


def id_hex(snapshot: Snapshot) -> str:
    """The id of a snapshot read from the repository, in hex (only one being written has none)."""
    assert snapshot.id is not None, "a snapshot read from the repository has its id"
    return snapshot.id.hex()


def print_json(document: dict[str, Any]) -> None:
    # ASCII escapes keep the document valid UTF-8 even for file names that are not.
    click.echo(json.dumps(document, indent=2, ensure_ascii=True))


def display_path(path: str) -> str:
    """Paths in human output: replace undecodable bytes visibly instead of failing."""
    return os.fsencode(path).decode("utf-8", errors="replace")


def audit(config: config_module.Config, action: str, **details: Any) -> None:
    """Add a record to the audit trail (rules T1-T3; agent/state/audit.py)."""
    audit_in(config.agent.state_dir, action, **details)


def audit_in(state_dir: str, action: str, **details: Any) -> None:
    """The same for a state directory given directly (`recover` has no configuration).
    A trail that cannot be written is said loudly but does not fail the command: the
    action is done by then, and a restore in an emergency must not be undone by an
    unwritable state directory."""
    try:
        AuditTrail(state_dir).append(action, **details)
    except (StateDirError, PermissionDenied) as exc:
        click.echo(f"backupctl: warning: the action was not recorded in the audit trail: {exc}", err=True)


GENERATE_HINT = ("choose a longer one, or a generated one: head -c 32 /dev/urandom | base64 "
                 "(docs/INSTALL.md, \"Installing on the practice server\")")


def require_long_passphrase(secret: bytes, *, what: str = "the new passphrase") -> bytes:
    """A passphrase that will wrap a master key: at least MIN_PASSPHRASE characters,
    wherever it came from (file, environment, systemd credential, prompt). Counted in
    characters after NFC normalisation (docs/FORMAT.md 3.1); the message never says
    anything of the passphrase itself, not even its length."""
    length = len(normalize_passphrase(secret).decode("utf-8", errors="replace"))
    if length < MIN_PASSPHRASE:
        raise UsageError(f"{what} is shorter than {MIN_PASSPHRASE} characters", hint=GENERATE_HINT)
    return secret


def new_passphrase(path: str | None) -> bytes:
    if path:
        return require_long_passphrase(read_private_file(path, where="--new-passphrase-file "),
                                       what=f"the passphrase in --new-passphrase-file {path}")
    if not sys.stdin.isatty():
        raise UsageError("no new passphrase: give --new-passphrase-file FILE (mode 0600)")
    text = click.prompt("New passphrase", hide_input=True, confirmation_prompt=True)
    return require_long_passphrase(text.encode("utf-8"))


def resume_command() -> str:
    """The command as it was typed, with --resume: what finishes an interrupted restore
    (`restore`, `recover --restore`)."""
    words = sys.argv[1:]
    return shlex.join(["backupctl", *words, *([] if "--resume" in words else ["--resume"])])

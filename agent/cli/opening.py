"""One way for a command to open its repository (borg's `@with_repository` is the model).

`@with_repository(lock=...)` on a click command opens the repository named by its
`--repo` (for a set of rotated disks: the one mounted now, refused unless its label is
one of the set's), takes the lock the command declares, hands the command an `Opened`
(config, settings, repository, medium), and releases the lock when the command ends,
however it ends (an error, Ctrl-C). The engines do not take locks of their own: they
assert that the one they need is held (agent.repo.lock.require_lock).

The locks declared:
  None         no lock (snapshots, key, reports, compliance: they read no pack), or the
               engine takes its own (restore, which overlaps the lock's round trips with
               its first reads; copy, which locks two repositories)
  "shared"     reading: no prune meanwhile. When the storage cannot take a lock at all
               (a read-only disk, read-only credentials) the reading goes on unlocked.
  "shared-writer"  backup: the same, but a storage that cannot take it stops the command
  "exclusive"  prune and repair: nothing else runs meanwhile
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Literal

import click

from agent import clock
from agent import config as config_module
from agent.cli.common import (attach_probe_record, load_config, medium_storage, passphrase_and_source,
                              warn_clock_skew)
from agent.engine.inventory import INVENTORY_RECORD, take
from agent.errors import BackupctlError, KeyFileError, NoKeyFile, WrongPassphrase, recover_add_key
from agent.repo.cache import CacheRoot
from agent.repo.lock import RepositoryLock, shared_lock_for_reading
from agent.repo.repository import Repository
from agent.state import media
from agent.state.known_keys import KnownKeys
from agent.state.layout import StateLayout
from agent.state.records import Records
from agent.storage import open_storage
from agent.storage.base import Storage

LockKind = Literal["shared", "shared-writer", "exclusive"] | None

# The commands after which the repository's inventory is noted for the metrics
# (agent/engine/inventory.py): those that change it or read it whole anyway. A listing of
# snapshots/ and data/ more, while the lock is still held (so no prune runs meanwhile).
INVENTORY_AFTER = frozenset({"backup", "prune", "check", "repair", "restore-test"})


@dataclass(frozen=True)
class Opened:
    config: config_module.Config
    settings: config_module.RepositorySettings
    repo: Repository
    medium: str | None  # the label of the rotated disk it is on (None: not a set of disks)

    def config_and_repo(self) -> tuple[config_module.Config, Repository]:
        return self.config, self.repo


def open_repository(ctx: click.Context, repo_name: str | None, *, warn_skew: bool = True) -> Opened:
    """The named repository, opened without a lock (`opened` takes one). Warns of a storage
    server whose clock disagrees with ours unless `warn_skew` is False (prune, which refuses
    instead)."""
    config = load_config(ctx)
    settings = config.repository(repo_name)
    medium = None
    storage: Storage
    if settings.media:
        medium = media.check_label(settings.media, settings.mount, settings.name,
                                   today=clock.today(config.retention.zone)).label
        storage = medium_storage(settings.mount)
    else:
        storage = open_storage(settings.url, s3=settings.s3)
        attach_probe_record(config, settings, storage)
    known = KnownKeys(config.agent.state_dir)
    secret, source = passphrase_and_source(config)
    next_step = recover_add_key(settings.url or "URL")
    # An S3 repository's metadata is kept in the state directory (agent/repo/cache.py): each
    # object read is a round trip over the WAN. A file:// repository or a rotated disk is
    # read at the speed of a local disk already, and a copy on the same machine would only
    # double what is stored (a rotated disk's whole point is to leave with its data).
    cache = (CacheRoot(StateLayout(config.agent.state_dir).cache_root())
             if settings.s3 is not None and not settings.media else None)
    try:
        repo = Repository.open(storage, secret, try_first=known.key_ids(), cache=cache)
    except WrongPassphrase as exc:
        # The person fixes the source that was used, not the one they think was used (a
        # BACKUPCTL_PASSPHRASE left in a shell wins over the passphrase file).
        raise WrongPassphrase(f"{exc}; the passphrase came from {source}",
                              hint=(f"if the passphrase is lost, {next_step}" if exc.hint == WrongPassphrase.hint
                                    else exc.hint)) from None
    except NoKeyFile as exc:
        raise NoKeyFile(str(exc), hint=f"the data is there but no passphrase can open it: {next_step}") from None
    except KeyFileError as exc:
        raise KeyFileError(str(exc), hint=f"if no other passphrase of the repository is left, {next_step}") from None
    known.remember(repo.config.repository_id, repo.key_id)
    if warn_skew:
        warn_clock_skew(repo)
    return Opened(config, settings, repo, medium)


@contextlib.contextmanager
def holding(repo: Repository, lock: LockKind, operation: str) -> Iterator[None]:
    """The declared lock, held while the body runs and released however it ends. The
    storages hold no connection or file to close (agent/storage/base.py): the lock is
    all there is to give back."""
    if lock is None:
        yield
    elif lock == "shared":
        with shared_lock_for_reading(repo, operation):
            yield
    elif lock == "shared-writer":
        with RepositoryLock(repo, operation):
            yield
    elif lock == "exclusive":
        with RepositoryLock(repo, operation, exclusive=True):
            yield
    else:
        raise ValueError(f"unknown lock {lock!r}")


@contextlib.contextmanager
def opened(ctx: click.Context, repo_name: str | None, *, lock: LockKind, operation: str,
           warn_skew: bool = True) -> Iterator[Opened]:
    """open_repository, with the lock `lock` held until the body ends."""
    result = open_repository(ctx, repo_name, warn_skew=warn_skew)
    with holding(result.repo, lock, operation):
        yield result


def with_repository(*, lock: LockKind | Callable[[dict[str, Any]], LockKind] = None,
                    warn_skew: bool | Callable[[dict[str, Any]], bool] = True,
                    operation: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a click command (below its options) that has a `repo_name` parameter: it
    is called with `opened=` the repository open and locked. `lock` and `warn_skew` may be
    functions of the command's parameters (prune: none of it for a dry run)."""
    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(command)
        def run(*args: Any, **params: Any) -> Any:
            ctx = click.get_current_context()
            kind = lock(params) if callable(lock) else lock
            skew = warn_skew(params) if callable(warn_skew) else warn_skew
            with opened(ctx, params.get("repo_name"), lock=kind, warn_skew=skew,
                        operation=operation or ctx.info_name or "command") as repository:
                try:
                    result = command(*args, opened=repository, **params)
                except click.exceptions.Exit as exit_:  # ctx.exit(code): a partial backup ended too
                    _note_inventory(ctx, repository)
                    raise exit_
                _note_inventory(ctx, repository)
                return result
        run.declared_lock = lock  # type: ignore[attr-defined]  # what docs/REFERENCE.md's table is checked against
        return run
    return decorate


def _note_inventory(ctx: click.Context, repository: Opened) -> None:
    """After a command of INVENTORY_AFTER that did not fail: the inventory into the
    records. Its failure never fails the command (the metrics show the previous one, dated)."""
    if ctx.info_name not in INVENTORY_AFTER:
        return
    try:
        Records(repository.config.agent.state_dir, repository.settings.name).note(
            INVENTORY_RECORD, clock.now(), medium=repository.medium, **take(repository.repo))
    except (BackupctlError, OSError) as exc:
        click.echo(f"backupctl: warning: the repository's inventory for the metrics was not noted ({exc})", err=True)

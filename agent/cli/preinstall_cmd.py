"""`backupctl pre-installation`: the snapshot the apt hook takes before dpkg changes packages
(rule S5: a copy before every installation; contrib/apt/, docs/INSTALL.md).

apt runs it as root from DPkg::Pre-Invoke, through the service wrapper: it then runs as the
service user, in the service's sandbox, like any command typed by hand. It must never stop
an installation, so every outcome exits 0: a problem is one warning line on standard error,
and apt goes on.

* Once a day at most: a snapshot already taken today (the practice's day, `[retention]
  timezone`) is enough for every apt run of the day; it is remembered in the repository's
  records (agent/state/records.py, kind RECORD).
* Not again for BACKOFF after an attempt that did not succeed (failed, given up, or killed
  before it could say: each attempt is noted as it starts, kind ATTEMPT, and marked ok once
  its snapshot is saved): a repository that
  does not answer would otherwise make every apt run of the day wait. --force tries anyway.
* One repository: the one `backupctl backup` uses without --repo (the first configured),
  or --repo. It is the copy to go back to if the installation breaks the server; the
  daemon's own backups carry the data to the other repositories.
* Bounded in time: the repository must answer within REACH_TIMEOUT_S (a snapshot listing;
  an unreachable server, a disk not plugged in, give up then, or sooner), and the whole
  within --timeout (30 minutes by default). Past it the backup is stopped (SIGTERM: it keeps
  what it stored; then SIGKILL) and apt goes on.
* A backup saved but marked suspect by the ransomware alarm (exit SUSPECT_BACKUP_EXIT_CODE)
  is a snapshot all the same: it is the copy, with a warning line that it is suspect.

The backup is the `backup` command itself, run as the daemon runs its jobs
(agent/daemon/children.py): the same snapshot, records, ledger, audit trail and rescue kit.
"""

from __future__ import annotations

import datetime as _dt
import json
import signal
import subprocess
import time

import click

from agent import clock, timefmt
from agent.cli.common import load_config
from agent.config import Config
from agent.daemon.children import child_command
from agent.engine.installation_copy import TAG
from agent.errors import PARTIAL_BACKUP_EXIT_CODE, SUCCESS_EXIT_CODE, SUSPECT_BACKUP_EXIT_CODE, BackupctlError
from agent.state.records import Records

RECORD = "before_installation"  # the Records kind: the last snapshot taken by this command
ATTEMPT = "before_installation_attempt"  # the Records kind: the last attempt, noted as it starts
BACKOFF = _dt.timedelta(hours=6)  # no new attempt for this long after one that did not succeed
DEFAULT_TIMEOUT_S = 30 * 60
REACH_TIMEOUT_S = 60
STOP_GRACE_S = 30  # after SIGTERM, before SIGKILL
_ERROR = "backupctl: error: "


class _GiveUp(Exception):
    """No snapshot this time: why, in one line."""


def _warn(text: str) -> None:
    click.echo(f"backupctl: warning: no snapshot before installation: {text}; the installation goes on", err=True)


def _say(text: str) -> None:
    click.echo(f"backupctl: {text}")


@click.command("pre-installation")
@click.option("--repo", "repo_name", metavar="NAME", help="Repository (default: the first configured).")
@click.option("--timeout", "timeout_s", type=click.IntRange(1, 24 * 3600), default=DEFAULT_TIMEOUT_S,
              show_default=True, metavar="SECONDS", help="Give up after this long; the installation goes on.")
@click.option("--force", is_flag=True,
              help="Take a snapshot even if one was taken today, or an attempt failed within 6 hours.")
@click.pass_context
def command(ctx: click.Context, repo_name: str | None, timeout_s: int, force: bool) -> None:
    """The apt hook's snapshot, tagged avant-installation, before packages change (rule S5).

    At most once a day; always exit 0: a failure is one warning line, never a failed apt run.
    """
    try:
        config = load_config(ctx)
        name = config.repository(repo_name).name
        if not config.agent.copy_before_installation:
            _say("copy_before_installation = false in the configuration: no snapshot before installation")
            return
        records = Records(config.agent.state_dir, name)
        last = records.last(RECORD)
        zone = config.retention.zone
        if last is not None and not force and last.time.astimezone(zone).date() == clock.today(zone):
            _say(f"snapshot {str(last.detail.get('snapshot', '?'))[:8]} ({TAG}) already taken today in {name}, "
                 f"at {timefmt.shown(last.time, zone)}: none again today")
            return
        attempt = records.last(ATTEMPT)
        now = clock.now()
        if (attempt is not None and not force and attempt.detail.get("ok") is not True
                and attempt.time <= now < attempt.time + BACKOFF):
            why = attempt.detail.get("why") or "it was stopped before it ended"
            _warn(f"the attempt at {timefmt.shown(attempt.time, zone)} did not succeed ({why}); no new attempt "
                  f"before {timefmt.shown(attempt.time + BACKOFF, zone)} (`backupctl pre-installation --force` "
                  f"tries now)")
            return
        records.note(ATTEMPT, now)
        started = time.monotonic()
        try:
            _reach(config, name, min(REACH_TIMEOUT_S, timeout_s))
            snapshot, code = _backup(config, name, timeout_s - (time.monotonic() - started))
        except _GiveUp as exc:
            records.note(ATTEMPT, now, why=str(exc))
            raise
        records.note(RECORD, clock.now(), snapshot=snapshot, partial=code == PARTIAL_BACKUP_EXIT_CODE,
                     suspect=code == SUSPECT_BACKUP_EXIT_CODE)
        records.note(ATTEMPT, now, ok=True)
    except _GiveUp as exc:
        _warn(str(exc))
        return
    except BackupctlError as exc:
        _warn(exc.one_line())
        return
    note = " with warnings (files it could not read: `backupctl snapshots`)" if code == PARTIAL_BACKUP_EXIT_CODE else ""
    _say(f"snapshot {snapshot[:8]} ({TAG}) saved in {name}{note} in {time.monotonic() - started:.0f} s")
    if code == SUSPECT_BACKUP_EXIT_CODE:
        click.echo(f"backupctl: warning: snapshot {snapshot[:8]} ({TAG}) is marked suspect by the ransomware "
                   f"alarm: see `backupctl status`, then `backupctl acknowledge`; the installation goes on",
                   err=True)


def _reach(config: Config, name: str, timeout_s: float) -> None:
    """The repository answers (its snapshots listed) within `timeout_s`, or _GiveUp."""
    # It only reads: stopped outright (a read blocked on a silent server may not heed SIGTERM).
    code, _out, err = _run(child_command(config.path, "snapshots", name, []), timeout_s, grace_s=0)
    if code is None:
        raise _GiveUp(f"the repository {name} did not answer within {timeout_s:.0f} s")
    if code != SUCCESS_EXIT_CODE:
        raise _GiveUp(f"the repository {name} cannot be opened: {_error_line(err)}")


def _backup(config: Config, name: str, timeout_s: float) -> tuple[str, int]:
    """(snapshot id, exit code: saved, saved with warnings, or saved but suspect) of
    `backup --repo NAME --tag TAG`, or _GiveUp."""
    if timeout_s <= 0:
        raise _GiveUp("no time left for the backup")
    code, out, err = _run(child_command(config.path, "backup", name, ["--tag", TAG]), timeout_s,
                          grace_s=STOP_GRACE_S)
    if code is None:
        raise _GiveUp(f"the backup into {name} took longer than the time allowed and was stopped")
    if code not in (SUCCESS_EXIT_CODE, PARTIAL_BACKUP_EXIT_CODE, SUSPECT_BACKUP_EXIT_CODE):
        raise _GiveUp(f"the backup into {name} failed (exit {code}): {_error_line(err)}")
    try:
        snapshot = json.loads(out)["snapshot_id"]
    except (ValueError, KeyError, TypeError):
        raise _GiveUp(f"the backup into {name} gave no snapshot id") from None
    if not isinstance(snapshot, str):
        raise _GiveUp(f"the backup into {name} gave no snapshot id")
    return snapshot, code


def _run(argv: list[str], timeout_s: float, *, grace_s: float) -> tuple[int | None, bytes, bytes]:
    """(exit code, stdout, stderr) of a child; None for the code when it ran out of time, after
    SIGTERM (a backup keeps what it stored) and, `grace_s` later, SIGKILL."""
    child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = child.communicate(timeout=timeout_s)
        return child.returncode, out, err
    except subprocess.TimeoutExpired:
        child.send_signal(signal.SIGTERM if grace_s else signal.SIGKILL)
        try:
            out, err = child.communicate(timeout=grace_s or None)
        except subprocess.TimeoutExpired:
            child.kill()
            out, err = child.communicate()
        return None, out, err


def _error_line(stderr: bytes) -> str:
    """The child's error line (an error names no source file: agent/run_as.py), not its warnings."""
    lines = stderr.decode("utf-8", "replace").splitlines()
    errors = [line[len(_ERROR):] for line in lines if line.startswith(_ERROR)]
    return errors[-1] if errors else "no error line"

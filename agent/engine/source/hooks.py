"""Commands run around a backup: [[hooks]] in the configuration.

To make the data consistent before it is read (stop the practice software, flush it,
take a file-system snapshot) and to undo that afterwards. Each hook is a command and
its arguments, run without a shell, with a time limit. Its output goes to the log (the
daemon's journal), line by line.

A hook's environment is not the agent's: it gets PATH, the locale (LANG, LC_*), TZ, HOME,
USER, LOGNAME and TMPDIR of the agent (agent/child_env.py), then its own `environment`
table from the configuration, and nothing else: not the passphrase, not the S3 keys, not
the systemd credentials folder, not a variable of the shell that started backupctl.

On failure (a non-zero exit, a time-out, a command that cannot start), `on_failure`
decides: "abort" stops before reading anything (exit code 20, and the daemon alerts);
"continue" backs up anyway and the snapshot carries a warning (exit code 3, alerted).
The `after` command of every hook whose `before` ran is run whatever happened, in
reverse order, so a stopped service is always started again.
"""

from __future__ import annotations

import logging
import subprocess
from dataclasses import dataclass

from agent.child_env import child_environment
from agent.errors import HookFailed

log = logging.getLogger("backupctl.hooks")
HOOK_FAILURE_CHOICES = ("abort", "continue")
OUTPUT_KEPT = 200  # characters of the last output line in a warning


@dataclass(frozen=True)
class HookSettings:
    """[[hooks]] in the configuration."""

    name: str
    before: tuple[str, ...] = ()  # argv, no shell
    after: tuple[str, ...] = ()
    timeout: int = 300
    on_failure: str = "abort"  # or "continue"
    environment: tuple[tuple[str, str], ...] = ()  # added to the clean environment of agent/child_env.py


def run_command(hook: HookSettings, argv: tuple[str, ...], when: str) -> str | None:
    """Run one command of a hook; returns None, or why it failed (one line)."""
    env = child_environment(dict(hook.environment))
    try:
        done = subprocess.run(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              env=env, timeout=hook.timeout)
    except subprocess.TimeoutExpired as exc:
        _log_output(hook, when, exc.stdout or b"")
        return f"hook {hook.name!r} ({when}) stopped after {hook.timeout} s"
    except OSError as exc:
        return f"hook {hook.name!r} ({when}): {argv[0]} cannot be started ({exc.strerror})"
    lines = _log_output(hook, when, done.stdout)
    if done.returncode != 0:
        last = lines[-1][:OUTPUT_KEPT] if lines else "no output"
        return f"hook {hook.name!r} ({when}) failed with exit code {done.returncode}: {last}"
    return None


def _log_output(hook: HookSettings, when: str, output: bytes) -> list[str]:
    lines = [line for line in output.decode("utf-8", "replace").splitlines() if line.strip()]
    for line in lines:
        log.info("hook %s (%s): %s", hook.name, when, line)
    return lines


class Hooks:
    """`with Hooks(settings):` runs the before commands on entry (raising HookFailed for
    an "abort" hook that fails) and the after commands on exit. Failures that did not
    stop the backup are in `before_warnings` (known before the snapshot is saved, so
    counted in it) and `after_warnings`."""

    def __init__(self, hooks: tuple[HookSettings, ...]) -> None:
        self.hooks = hooks
        self.before_warnings: list[str] = []
        self.after_warnings: list[str] = []
        self._started: list[HookSettings] = []

    @property
    def failures(self) -> int:
        return len(self.before_warnings) + len(self.after_warnings)

    def __enter__(self) -> "Hooks":
        for hook in self.hooks:
            problem = run_command(hook, hook.before, "before") if hook.before else None
            self._started.append(hook)
            if problem is None:
                continue
            if hook.on_failure == "abort":
                self._after()
                raise HookFailed(f"{problem}; no backup was made", hint="see the hook's output in the log")
            self.before_warnings.append(problem + "; backed up anyway (on_failure = \"continue\")")
        return self

    def __exit__(self, *_exc: object) -> None:
        self._after()

    def _after(self) -> None:
        for hook in reversed(self._started):
            if hook.after:
                problem = run_command(hook, hook.after, "after")
                if problem:
                    self.after_warnings.append(problem)
        self._started = []

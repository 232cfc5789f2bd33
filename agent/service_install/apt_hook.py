"""The apt hook: /etc/apt/apt.conf.d/80backupctl, which has apt run `backupctl pre-installation`
(agent/cli/preinstall_cmd.py) before dpkg changes packages: a snapshot tagged
avant-installation, once a day at most (rule S5, docs/INSTALL.md "A copy before every
installation").

DPkg::Pre-Invoke runs its commands as root with `sh -c` before apt runs dpkg (apt install,
upgrade, remove); a command that fails makes apt stop before dpkg. So the hook line cannot
fail: `pre-installation` itself always exits 0 and says any problem in one warning line;
should the wrapper or systemd-run fail instead, or the whole outlast its own timeout, the
line says so with a warning of its own and ends with `true`.
`timeout` is a backstop only (the command stops its backup at 30 minutes): it stops
systemd-run, not the transient unit the command runs in, which the wrapper gives
RuntimeMaxSec=RUNTIME_MAX_S for that (agent/service_install/wrapper.py). stdin is /dev/null
so that the wrapper never opens a terminal of its own (systemd-run --pipe). The line enters
/ first: the wrapper runs the command in the caller's folder, and apt's may be one the
sandbox does not have (`cd $(mktemp -d) && apt install ./x.deb`: PrivateTmp=).

contrib/apt/80backupctl is this text as installed; tests/unit/service_install checks they agree.
"""

from __future__ import annotations

import shlex

from agent.service_install import layout

# The command's own limit (preinstall_cmd.DEFAULT_TIMEOUT_S, 30 min) plus its stop grace
# and the program's start: only a hang of the wrapper itself meets this one.
BACKSTOP_S = 1900
# The transient unit's own limit, under the backstop: systemd stops the command itself.
RUNTIME_MAX_S = BACKSTOP_S - 30
WARNING = "backupctl: warning: no snapshot before installation (the hook failed); the installation goes on"


def render(program: str = layout.WRAPPER) -> str:
    """The apt.conf snippet; `program` is the wrapper on a server (another in the tests)."""
    run = shlex.quote(program)
    line = (f"if [ -x {run} ]; then cd / && timeout --kill-after=60 {BACKSTOP_S} {run} pre-installation </dev/null"
            f" || echo '{WARNING}' >&2; fi; true")
    if '"' in line or "\\" in line:
        raise ValueError(f"{program}: apt.conf strings cannot hold a double quote or a backslash")
    return f"""// backupctl: a snapshot tagged avant-installation before dpkg changes packages, at most
// once a day (rule S5 of docs/COMPLIANCE.md: a copy before every installation).
// Written by `backupctl install-service`, removed by its --uninstall; docs/INSTALL.md,
// "A copy before every installation". It never makes apt fail: a problem is one warning
// line. To turn it off: copy_before_installation = false in [agent] of {layout.CONFIG}.
DPkg::Pre-Invoke {{
  "{line}";
}};
"""

"""The polkit rule that lets the service user start, stop and restart the units its hooks
name, and nothing else.

A [[hooks]] command `systemctl stop logiciel-cabinet` runs as the service user, which
systemd refuses without polkit's leave (every backup then aborted, exit 20). The rule allows
exactly the verbs (start, stop, restart) each hook names on exactly the units it names; no
hook naming one, no rule file.
"""

from __future__ import annotations

import json
import posixpath

from agent.engine.source.hooks import HookSettings
from agent.service_install import layout

VERBS = ("start", "stop", "restart")
# systemctl options that take a value as the next argument (the others are flags).
_OPTIONS_WITH_VALUE = frozenset({"-t", "--type", "-s", "--signal", "--job-mode", "-H", "--host", "-M",
                                 "--machine", "--kill-whom", "--what", "-o", "--output", "-n", "--lines",
                                 "--timestamp", "--root", "--image", "--state", "-p", "--property"})


def hook_units(hooks: tuple[HookSettings, ...]) -> dict[str, tuple[str, ...]]:
    """Unit name -> the verbs the hooks use on it, from `systemctl start|stop|restart UNIT...`."""
    found: dict[str, set[str]] = {}
    for hook in hooks:
        for argv in (hook.before, hook.after):
            if not argv or posixpath.basename(argv[0]) != "systemctl":
                continue
            words: list[str] = []
            skip = False
            for word in argv[1:]:
                if skip:
                    skip = False
                elif word.startswith("-"):
                    skip = word in _OPTIONS_WITH_VALUE
                else:
                    words.append(word)
            if len(words) < 2 or words[0] not in VERBS:
                continue
            for unit in words[1:]:
                found.setdefault(_unit_name(unit), set()).add(words[0])
    return {unit: tuple(v for v in VERBS if v in verbs) for unit, verbs in sorted(found.items())}


def _unit_name(word: str) -> str:
    # systemctl adds ".service" to a name without a type suffix.
    known = (".service", ".socket", ".target", ".timer", ".mount", ".path", ".slice", ".scope", ".swap",
             ".device", ".automount")
    return word if word.endswith(known) else word + ".service"


def render(units: dict[str, tuple[str, ...]]) -> str | None:
    if not units:
        return None
    allowed = json.dumps({unit: list(verbs) for unit, verbs in units.items()}, indent=4, sort_keys=True)
    return f"""// Written by `backupctl install-service` from the [[hooks]] of {layout.CONFIG};
// a re-run rewrites it. The service user may start, stop or restart these units only,
// with the verbs its hooks use.
polkit.addRule(function(action, subject) {{
    if (action.id != "org.freedesktop.systemd1.manage-units" || subject.user != "{layout.SERVICE_USER}") {{
        return polkit.Result.NOT_HANDLED;
    }}
    var allowed = {allowed};
    var verbs = allowed[action.lookup("unit")];
    if (verbs && verbs.indexOf(action.lookup("verb")) >= 0) {{
        return polkit.Result.YES;
    }}
    return polkit.Result.NOT_HANDLED;
}});
"""

"""agent.engine.backup: the walk's per-file decisions, made cheaply and the same as before."""

from __future__ import annotations

import itertools

from agent.engine.backup import _matches_any, _Matcher

PATTERNS = [[], ["*.db"], ["*.tmp", "cache"], ["/srv/*/private", "*.db", "[!a]*.sqlite"], ["/srv/cabinet/x*"],
            ["*[*"]]
PATHS = [b"/srv/cabinet/cabinet.db", b"/srv/cabinet/cache", b"/srv/cabinet/lettre.txt", b"/srv/a/private",
         b"/srv/cabinet/xray.png", b"/srv/b.sqlite", b"/srv/a.sqlite", b"/srv/\xff\xfe.db", b"/srv/cabinet/x.tmp",
         b"/srv/a/b/private", b"/srv/cabinet/[x", b"/srv/a\nb.db"]


def test_the_compiled_matcher_decides_as_fnmatch_per_pattern():
    for patterns, path in itertools.product(PATTERNS, PATHS):
        name = path.rsplit(b"/", 1)[1]
        assert _Matcher(patterns)(path, name) == _matches_any(patterns, path, name), (patterns, path)

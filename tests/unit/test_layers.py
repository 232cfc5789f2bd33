"""Architecture rules, checked on the source of every module under agent/ (with `ast`).

(a) layers point down; (b) each third-party library is confined to the module that
wraps it; (c) no MD5 or SHA-1 anywhere; (d) only agent/clock.py reads the wall clock.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

AGENT = Path(__file__).resolve().parents[2] / "agent"


@dataclass
class Module:
    name: str  # dotted, e.g. "agent.repo.pack"
    path: Path
    source: str
    tree: ast.Module
    imports: set[str] = field(default_factory=set)  # fully qualified module names
    aliases: dict[str, str] = field(default_factory=dict)  # local name -> qualified name

    @property
    def rel(self) -> str:
        return self.path.relative_to(AGENT.parent).as_posix()

    @property
    def is_package(self) -> bool:
        return self.path.name == "__init__.py"


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(qualified: str, root: Path) -> bool:
    """Does `qualified` (agent.x.y) name a module or package under root?"""
    parts = qualified.split(".")
    if parts[0] != root.name:
        return False
    base = root.parent.joinpath(*parts)
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def analyse(source: str, name: str, path: Path, root: Path = AGENT) -> Module:
    tree = ast.parse(source, filename=str(path))
    module = Module(name=name, path=path, source=source, tree=tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                module.imports.add(alias.name)
                if alias.asname:
                    module.aliases[alias.asname] = alias.name
                else:
                    top = alias.name.split(".")[0]
                    module.aliases[top] = top
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            module.imports.add(base)
            for alias in node.names:
                qualified = f"{base}.{alias.name}"
                if alias.name != "*" and _is_module(qualified, root):
                    module.imports.add(qualified)
                module.aliases[alias.asname or alias.name] = qualified
        elif isinstance(node, ast.Call):
            # importlib.import_module("x") / __import__("x") with a literal name
            target = _qualify(node.func, module.aliases)
            if target in ("importlib.import_module", "__import__") and node.args \
                    and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                module.imports.add(node.args[0].value)
    return module


def _qualify(expr: ast.expr, aliases: dict[str, str]) -> str | None:
    """Qualified name of `a.b.c` when `a` is imported (or a builtin); else None."""
    if isinstance(expr, ast.Name):
        if expr.id in aliases:
            return aliases[expr.id]
        return expr.id if expr.id == "__import__" else None
    if isinstance(expr, ast.Attribute):
        base = _qualify(expr.value, aliases)
        return f"{base}.{expr.attr}" if base else None
    return None


def _load_all() -> list[Module]:
    modules = []
    for path in sorted(AGENT.rglob("*.py")):
        modules.append(analyse(path.read_text(encoding="utf-8"), _module_name(path, AGENT), path))
    return modules


MODULES = _load_all()


def _in(module_name: str, package: str) -> bool:
    return module_name == package or module_name.startswith(package + ".")


def _imports_from(module: Module, packages: list[str]) -> list[str]:
    return sorted(i for i in module.imports for p in packages if _in(i, p))


def test_the_checker_sees_the_whole_agent():
    names = {m.name for m in MODULES}
    for expected in ("agent.clock", "agent.config", "agent.crypto.aead", "agent.storage.local",
                     "agent.repo.repository", "agent.state.files_cache", "agent.cli.main"):
        assert expected in names
    repository = next(m for m in MODULES if m.name == "agent.repo.repository")
    assert "agent.crypto.aead" in repository.imports  # `from agent.crypto import aead, ids`
    assert "agent.clock" in repository.imports  # `from agent import clock`


def test_the_import_resolver_on_a_synthetic_module():
    source = (
        "import os, datetime as _dt\n"
        "from agent import clock, __version__\n"
        "from . import layout\n"
        "from ..crypto import aead as a\n"
        "def f():\n"
        "    import boto3.session\n"
        "    importlib.import_module('zstandard')\n"
        "import importlib\n"
    )
    module = analyse(source, "agent.repo.thing", AGENT / "repo" / "thing.py")
    assert {"os", "datetime", "agent", "agent.clock", "agent.repo", "agent.repo.layout", "agent.crypto",
            "agent.crypto.aead", "boto3.session", "zstandard"} <= module.imports
    assert "agent.__version__" not in module.imports
    assert module.aliases["_dt"] == "datetime"
    assert module.aliases["a"] == "agent.crypto.aead"


# ---- (a) layers point down -------------------------------------------------------------------

ABOVE_STORAGE = ["agent.repo", "agent.state", "agent.engine", "agent.cli", "agent.config", "agent.daemon",
                 "agent.reports"]
LAYER_RULES = [
    # storage and crypto at the bottom, apart from each other (storage moves bytes it never reads;
    # crypto never does I/O)
    ("agent.storage", ABOVE_STORAGE + ["agent.crypto"]),
    ("agent.crypto", ABOVE_STORAGE + ["agent.storage"]),
    # the repository format and the machine's state directory are siblings: a repository never
    # depends on what one machine remembers, and the state never reads a repository
    ("agent.repo", ["agent.state", "agent.engine", "agent.cli", "agent.config", "agent.daemon", "agent.reports"]),
    ("agent.state", ["agent.repo", "agent.storage", "agent.engine", "agent.cli", "agent.config", "agent.daemon",
                     "agent.reports"]),
    # engines reach storage only through a Repository (its lock, retries, verification)
    ("agent.engine", ["agent.storage", "agent.cli", "agent.config", "agent.daemon", "agent.reports"]),
    ("agent.config", ["agent.cli", "agent.daemon", "agent.reports"]),
    # a report is built from facts it is told (the upload verification in force included): it
    # opens no storage of its own
    ("agent.reports", ["agent.storage", "agent.cli", "agent.daemon"]),
    ("agent.daemon", ["agent.cli"]),
]

# The modules directly in agent/ are the foundation every layer may use: they import no package
# of agent/ (only one another).
FOUNDATION = ["agent.alerts", "agent.child_env", "agent.clock", "agent.clock_skew", "agent.errors",
              "agent.processes", "agent.run_as", "agent.timefmt"]
PACKAGES = ["agent.storage", "agent.crypto", "agent.repo", "agent.state", "agent.engine", "agent.config",
            "agent.reports", "agent.daemon", "agent.cli", "agent.service_install"]


def test_the_foundation_is_every_plain_module_and_imports_no_package():
    plain = {m.name for m in MODULES if m.name.count(".") == 1 and not m.is_package}
    # the two entry points and config (a layer of its own) are the plain modules outside it
    assert plain - {"agent.__main__", "agent.config"} == set(FOUNDATION)
    violations = {m.rel: _imports_from(m, PACKAGES) for m in MODULES
                  if m.name in FOUNDATION and _imports_from(m, PACKAGES)}
    assert violations == {}


def test_what_a_backup_reads_besides_files_needs_no_other_engine():
    """agent/engine/source/ (dumps, hooks, holes) is used by the engines, never the reverse: a
    source can be read (and tested) without a repository or an engine."""
    members = [m for m in MODULES if _in(m.name, "agent.engine.source")]
    assert {m.name for m in members} >= {"agent.engine.source.dumps", "agent.engine.source.hooks",
                                         "agent.engine.source.holes"}
    violations = {m.rel: [i for i in _imports_from(m, ["agent.engine", "agent.repo"])
                          if not _in(i, "agent.engine.source") and i != "agent.engine"]
                  for m in members}
    assert {k: v for k, v in violations.items() if v} == {}


def test_the_state_directorys_paths_are_built_in_its_layout_module_only():
    """Every path under state_dir comes from agent/state/layout.py: a literal folder or file name
    of the state directory joined anywhere else is a second, divergent copy of the layout."""
    names = ("records", "ledger", "keys.json", "media", "audit.jsonl", "audit.head", "credentials",
             "restore-test", "restore-test-databases", "reports", "daemon", "files.sqlite",
             "lock-dates.json", "jobs.json", "alerts.json", "daemon.lock", "schedule.sqlite", "config.sha256")
    found = []
    for module in MODULES:
        if module.name == "agent.state.layout":
            continue
        for node in ast.walk(module.tree):
            if isinstance(node, ast.Call) and _qualify(node.func, module.aliases) == "os.path.join":
                literals = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
                mentions_state = any("state_dir" in ast.unparse(a) for a in node.args)
                if mentions_state and any(literal in names for literal in literals):
                    found.append(f"{module.rel}:{node.lineno}")
    assert found == []


@pytest.mark.parametrize("package, forbidden", LAYER_RULES, ids=[r[0] for r in LAYER_RULES])
def test_layers_point_down(package, forbidden):
    members = [m for m in MODULES if _in(m.name, package)]
    assert members, f"no module in {package}"
    violations = {m.rel: _imports_from(m, forbidden) for m in members if _imports_from(m, forbidden)}
    assert violations == {}


def test_only_the_cli_imports_the_cli():
    # agent/__main__.py is the `python -m agent` entry point: it sits above the CLI.
    allowed = {"agent.__main__"}
    violations = {m.rel: _imports_from(m, ["agent.cli"]) for m in MODULES
                  if not _in(m.name, "agent.cli") and m.name not in allowed and _imports_from(m, ["agent.cli"])}
    assert violations == {}


# ---- (b) third-party libraries are confined ---------------------------------------------------

CONFINEMENT = {
    "boto3": ["agent/storage/s3.py"],
    "botocore": ["agent/storage/s3.py"],
    "click": ["agent/cli/"],
    "rich": ["agent/cli/"],
    "nacl": ["agent/crypto/"],
    "cryptography": ["agent/crypto/"],
    "blake3": ["agent/crypto/"],
    "zstandard": ["agent/repo/compression.py"],
    "pyfastcdc": ["agent/repo/chunker.py"],
    "apscheduler": ["agent/daemon/"],
    "jinja2": ["agent/reports/html.py"],
    "markupsafe": ["agent/reports/html.py"],
    "segno": ["agent/reports/qr.py"],
    "Crypto": ["agent/crypto/shares.py"],
    "prometheus_client": ["agent/daemon/metrics_export.py"],
}


@pytest.mark.parametrize("library", sorted(CONFINEMENT))
def test_third_party_library_is_confined(library):
    places = CONFINEMENT[library]
    users = sorted(m.rel for m in MODULES if any(_in(i, library) for i in m.imports))
    outside = [u for u in users if not any(u == p or (p.endswith("/") and u.startswith(p)) for p in places)]
    assert outside == [], f"{library} may only be imported in {places}"


# ---- (c) no MD5 or SHA-1 -----------------------------------------------------------------------

_WEAK_HASH = re.compile(r"md5|sha-?1(?![0-9])|sha_1", re.IGNORECASE)


def test_weak_hash_pattern_itself():
    for text in ("hashlib.md5(x)", "hashlib.sha1(x)", 'hashlib.new("MD5")', "Content-MD5", "SHA-1", "sha_1"):
        assert _WEAK_HASH.search(text), text
    for text in ("hashlib.sha256(x)", "sha512", "SHA-256", "blake3", "sha3_256"):
        assert not _WEAK_HASH.search(text), text


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.rel)
def test_no_module_mentions_md5_or_sha1(module):
    hits = [(n, line.strip()) for n, line in enumerate(module.source.splitlines(), 1) if _WEAK_HASH.search(line)]
    assert hits == []


# ---- (d) only agent/clock.py reads the wall clock -----------------------------------------------

_WALL_CLOCK = {
    "datetime.datetime.now", "datetime.datetime.utcnow", "datetime.datetime.today", "datetime.date.today",
    "time.time", "time.time_ns",
}
_WALL_CLOCK_WITHOUT_ARGUMENT = {"time.localtime", "time.gmtime", "time.ctime", "time.asctime"}


def wall_clock_calls(module: Module) -> list[str]:
    found = []
    for node in ast.walk(module.tree):
        if not isinstance(node, ast.Call):
            continue
        target = _qualify(node.func, module.aliases)
        if target in _WALL_CLOCK or (target in _WALL_CLOCK_WITHOUT_ARGUMENT and not node.args):
            found.append(f"{module.rel}:{node.lineno} {target}()")
    return found


def test_clock_module_is_found_reading_the_clock():
    """The checker must see the one legitimate call, or it would see nothing anywhere."""
    clock = next(m for m in MODULES if m.name == "agent.clock")
    assert any("datetime.datetime.now" in hit for hit in wall_clock_calls(clock))


def test_wall_clock_detection_on_a_synthetic_module():
    source = (
        "import time\nimport datetime as _dt\nfrom datetime import datetime, date\nfrom agent import clock\n"
        "a = time.time()\nb = _dt.datetime.now()\nc = datetime.utcnow()\nd = date.today()\n"
        "e = time.monotonic()\nf = clock.now()\ng = time.localtime()\nh = time.localtime(0)\n"
    )
    module = analyse(source, "agent.engine.x", AGENT / "engine" / "x.py")
    hits = [h.split(" ", 1)[1] for h in wall_clock_calls(module)]
    assert hits == ["time.time()", "datetime.datetime.now()", "datetime.datetime.utcnow()",
                    "datetime.date.today()", "time.localtime()"]


def test_only_clock_reads_the_wall_clock():
    offenders = [hit for m in MODULES if m.name != "agent.clock" for hit in wall_clock_calls(m)]
    assert offenders == []

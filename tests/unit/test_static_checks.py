"""The static checks run as tests, so that `make test` (and .ci/run, which calls it) fails on them.

mypy checks agent/ as --strict and ruff checks the tree, both configured in pyproject.toml, and
neither leaves anything out any more: mypy has no allow-list (an override may only tell it that a
third-party library has no type information) and ruff excludes no path. The tests below keep it so:
a module is written clean, never listed to be fixed later.
"""

import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    # The tools of the interpreter running the tests: the versions pinned in requirements-test.lock.
    return subprocess.run([sys.executable, "-m", *argv], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_mypy_strict_passes() -> None:
    result = _run("mypy")  # strict = true, files = agent: [tool.mypy] in pyproject.toml
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_is_strict_on_agent() -> None:
    mypy = _pyproject()["tool"]["mypy"]
    assert mypy["strict"] is True
    assert mypy["files"] == ["agent"]
    # Nothing beside it turns one of --strict's checks off for the whole tree.
    assert set(mypy) <= {"strict", "files", "python_version", "overrides"}, sorted(mypy)


def test_ruff_passes() -> None:
    result = _run("ruff", "check", "--no-cache", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_has_no_allow_list() -> None:
    # A module is written clean under --strict, never allow-listed: no override hides a module's
    # errors (ignore_errors) or turns a check off, and none is about agent/ at all. What is left
    # is the one for the libraries without type information (ignore_missing_imports).
    for override in _pyproject()["tool"]["mypy"]["overrides"]:
        assert set(override) == {"module", "ignore_missing_imports"}, override
        assert not any(str(module).split(".")[0] == "agent" for module in override["module"]), override


def test_ruff_excludes_nothing() -> None:
    # Beyond ruff's own defaults (.git, .venv, build output...): no path of ours is left unchecked,
    # and no rule is turned off for some files only.
    ruff = _pyproject()["tool"]["ruff"]
    assert not {"exclude", "extend-exclude"} & set(ruff), ruff
    assert not {"per-file-ignores", "extend-per-file-ignores", "ignore"} & set(ruff.get("lint", {})), ruff["lint"]


def test_make_test_runs_these_checks() -> None:
    # README.md: `make test` (which .ci/run calls) runs the static checks. It does because its
    # pytest is given no path, so it collects testpaths, which holds this file.
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert "-m pytest" in recipe
    assert "tests/" not in recipe
    assert "tests" in _pyproject()["tool"]["pytest"]["ini_options"]["testpaths"]
    assert "make test" in (ROOT / ".ci/run").read_text()

"""The static checks run as tests, so that `make test` (and .ci/run, which calls it) fails on them.

mypy checks agent/ as --strict and ruff checks the tree, both configured in pyproject.toml. mypy
has no allow-list any more (every module of agent/ is clean): the test below keeps it so, an
override may only tell mypy that a third-party library has no type information. What ruff does not
look at yet is written in its extend-exclude, a list that may only shrink: the number below pins
its length; fixing a path means deleting its line there and lowering the number here.
"""

import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

# The ratchet: it may go down, never up.
RUFF_EXCLUDED_MAX = 1


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


def test_ruff_exclusions_only_shrink() -> None:
    excluded = _pyproject()["tool"]["ruff"]["extend-exclude"]
    assert len(excluded) <= RUFF_EXCLUDED_MAX, excluded


def test_ruff_exclusions_name_existing_paths() -> None:
    # ruff passes over a path that does not exist without a word: a moved module's line would
    # stay behind, counted by the ratchet while it excludes nothing.
    for path in _pyproject()["tool"]["ruff"]["extend-exclude"]:
        assert (ROOT / path).exists(), path


def test_make_test_runs_these_checks() -> None:
    # README.md: `make test` (which .ci/run calls) runs the static checks. It does because its
    # pytest is given no path, so it collects testpaths, which holds this file.
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert "-m pytest" in recipe
    assert "tests/" not in recipe
    assert "tests" in _pyproject()["tool"]["pytest"]["ini_options"]["testpaths"]
    assert "make test" in (ROOT / ".ci/run").read_text()

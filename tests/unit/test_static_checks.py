"""The static checks run as tests, so that `make test` (and .ci/run, which calls it) fails on them.

mypy checks agent/ as --strict and ruff checks the tree, both configured in pyproject.toml. What
either does not look at yet is written there in two lists that may only shrink: mypy's allow-list
(modules whose errors are not reported) and ruff's extend-exclude. The numbers below pin their
lengths; fixing a module means deleting its line there and lowering the number here.
"""

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# The ratchet: each may go down, never up. A new module is written clean, never allow-listed.
MYPY_ALLOW_LIST_MAX = 57
RUFF_EXCLUDED_MAX = 6


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _mypy_allow_list() -> list[str]:
    overrides = _pyproject()["tool"]["mypy"]["overrides"]
    [allowed] = [o["module"] for o in overrides if o.get("ignore_errors")]
    return allowed


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


def test_ruff_passes() -> None:
    result = _run("ruff", "check", "--no-cache", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_allow_list_only_shrinks() -> None:
    allowed = _mypy_allow_list()
    assert len(allowed) <= MYPY_ALLOW_LIST_MAX, (
        f"{len(allowed)} modules allow-listed, at most {MYPY_ALLOW_LIST_MAX}: fix the new errors instead")
    assert len(set(allowed)) == len(allowed)


def test_mypy_allow_list_names_existing_modules() -> None:
    # A module moved or deleted leaves its line behind; the line goes (the moved module is not
    # allow-listed under its new name unless its package is).
    for module in _mypy_allow_list():
        path = ROOT / module.removesuffix(".*").replace(".", "/")
        if module.endswith(".*"):
            continue  # a package being assembled may not exist yet
        assert path.with_suffix(".py").is_file() or (path / "__init__.py").is_file(), module


def test_ruff_exclusions_only_shrink() -> None:
    excluded = _pyproject()["tool"]["ruff"]["extend-exclude"]
    assert len(excluded) <= RUFF_EXCLUDED_MAX, excluded


def test_make_test_runs_these_checks() -> None:
    # README.md: `make test` (which .ci/run calls) runs the static checks. It does because its
    # pytest is given no path, so it collects testpaths, which holds this file.
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert "-m pytest" in recipe
    assert "tests/" not in recipe
    assert "tests" in _pyproject()["tool"]["pytest"]["ini_options"]["testpaths"]
    assert "make test" in (ROOT / ".ci/run").read_text()

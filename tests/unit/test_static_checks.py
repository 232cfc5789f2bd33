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
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

# The ratchet: each may go down, never up. A new module is written clean, never allow-listed.
MYPY_ALLOW_LIST_MAX = 7
RUFF_EXCLUDED_MAX = 1


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _mypy_allow_list() -> list[str]:
    overrides = _pyproject()["tool"]["mypy"]["overrides"]
    [allowed] = [o["module"] for o in overrides if o.get("ignore_errors")]
    return [str(module) for module in allowed]


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


def test_mypy_allow_list_holds_no_clean_module(tmp_path: Path) -> None:
    # mypy again, the allow-list left out: a module that has no error any more leaves the list
    # (so that it stays checked from now on).
    mypy = _pyproject()["tool"]["mypy"]
    lines = ["[mypy]", "strict = True", f"python_version = {mypy['python_version']}"]
    for override in mypy["overrides"]:
        if not override.get("ignore_errors"):
            lines += [f"[mypy-{','.join(override['module'])}]",
                      *(f"{key} = {value}" for key, value in override.items() if key != "module")]
    config = tmp_path / "mypy.ini"
    config.write_text("\n".join(lines) + "\n")
    result = _run("mypy", "--config-file", str(config), "--cache-dir", str(tmp_path / "cache"), *mypy["files"])
    with_errors = {line.split(":", 1)[0].removesuffix(".py").removesuffix("/__init__").replace("/", ".")
                   for line in result.stdout.splitlines() if ": error: " in line}
    clean = [m for m in _mypy_allow_list() if not m.endswith(".*") and m not in with_errors]
    assert result.returncode in (0, 1), result.stdout + result.stderr
    assert not clean, f"clean under --strict now, delete from the allow-list in pyproject.toml: {clean}"

"""The suite's own guard (tests/conftest.py): a test that leaves the environment changed fails,
and the next test does not see the change."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _suite(tmp_path: Path, test_source: str) -> Path:
    """A folder with the project's tests/conftest.py and one test module."""
    suite = tmp_path / "tests"
    suite.mkdir()
    shutil.copy(ROOT / "tests" / "conftest.py", suite / "conftest.py")
    (suite / "test_it.py").write_text(test_source)
    return suite


def test_a_test_that_leaves_a_variable_set_fails_and_the_next_one_does_not_see_it(tmp_path: Path) -> None:
    suite = _suite(
        tmp_path,
        "import os\n"
        "def test_1_leaks():\n    os.environ['BACKUPCTL_LEAK_PROBE'] = '1'\n"
        "def test_2_undone(monkeypatch):\n    monkeypatch.setenv('BACKUPCTL_FINE', '1')\n"
        "def test_3_clean():\n    assert 'BACKUPCTL_LEAK_PROBE' not in os.environ\n"
        "    assert 'BACKUPCTL_FINE' not in os.environ\n")
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider",
                             str(suite)], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stdout
    assert "test_1_leaks left the environment changed: ['BACKUPCTL_LEAK_PROBE']" in result.stdout
    assert "3 passed, 1 error" in result.stdout, result.stdout


def test_a_suite_started_with_ctrl_c_ignored_gives_its_children_ctrl_c(tmp_path: Path) -> None:
    """As a CI runner's background job starts it: SIGINT ignored. The Ctrl-C tests need their
    commands to get it as from a terminal (tests/conftest.py)."""
    import signal

    suite = _suite(
        tmp_path,
        "import subprocess, sys\n"
        "def test_child_gets_sigint():\n"
        "    out = subprocess.run([sys.executable, '-c', 'import signal; print(signal.getsignal(signal.SIGINT))'],\n"
        "                         capture_output=True, text=True).stdout\n"
        "    assert 'default_int_handler' in out, out\n")

    def ignore_sigint() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(suite)],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120, preexec_fn=ignore_sigint)
    assert result.returncode == 0, result.stdout


_RESELECT = """
import json, sys
import pytest

class Collected:
    def __init__(self):
        self.ids = []
    def pytest_collection_modifyitems(self, items):
        self.ids = [item.nodeid for item in items]

first = Collected()
assert pytest.main(["-q", "--collect-only", "-p", "no:cacheprovider", *sys.argv[1:]], plugins=[first]) == 0
again = Collected()
code = pytest.main(["-q", "--collect-only", "-p", "no:cacheprovider", *first.ids], plugins=[again])
print("RESULT " + json.dumps({"code": int(code), "lost": sorted(set(first.ids) - set(again.ids)),
                               "count": len(first.ids)}))
"""


def test_every_test_of_the_mutation_runs_can_be_selected_by_its_id(tmp_path: Path) -> None:
    """`make mutation` runs each test by the id pytest gave it; an id pytest had to escape cannot
    be found again (exit 4 ends the whole run): tests/support/ids.py makes plain ones."""
    import tomllib

    selection = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"][
        "pytest_add_cli_args_test_selection"]
    script = tmp_path / "reselect.py"
    script.write_text(_RESELECT)
    result = subprocess.run([sys.executable, str(script), *selection], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))
    verdict = json.loads(line.removeprefix("RESULT "))
    assert verdict["count"] > 1000, verdict["count"]
    assert (verdict["code"], verdict["lost"]) == (0, []), verdict["lost"][:10]

"""One source of exit codes (agent/errors.py): the exception classes and the module's
constants are the codes; the module docstring, the table of docs/REFERENCE.md and the
daemon's meanings say exactly those, and no other module of agent/ writes a code as a
number of its own."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from agent import errors
from agent.daemon.outcomes import known_exit_codes

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "REFERENCE.md"


def _classes() -> dict[str, type[errors.BackupctlError]]:
    return {name: cls for name, cls in vars(errors).items()
            if isinstance(cls, type) and issubclass(cls, errors.BackupctlError)}


def _constants() -> dict[str, int]:
    return {name: value for name, value in vars(errors).items() if name.endswith("_EXIT_CODE")}


def _class_codes() -> set[int]:
    return {cls.exit_code for cls in _classes().values()}


def _all_codes() -> set[int]:
    return _class_codes() | set(_constants().values())


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).upper()


# ---- the module docstring ---------------------------------------------------------------

# "    |   +-- StateDirError               2  the local state directory ...": the bars and the
# branch give the depth in the tree; a constant's line has neither.
_LINE = re.compile(r"^    (?P<bars>(?:\|   |    )*)(?P<branch>\+-- )?(?P<name>[A-Z][A-Za-z_]+) +(?P<code>\d+)"
                   r"  (?P<meaning>\S.*)$")


def _docstring() -> tuple[dict[str, tuple[str | None, int]], dict[str, int]]:
    """The tree of the docstring, {class: (parent, code)}, and its other codes, {constant: code}."""
    tree: dict[str, tuple[str | None, int]] = {}
    constants: dict[str, int] = {}
    path: list[str] = []  # the names of the lines above, by depth
    for line in (errors.__doc__ or "").splitlines():
        match = _LINE.match(line)
        if match is None:
            continue
        name, code = match["name"], int(match["code"])
        if name.endswith("_EXIT_CODE"):
            constants[name] = code
            continue
        depth = len(match["bars"]) // 4 + (1 if match["branch"] else 0)
        assert depth <= len(path), f"{name}: drawn deeper than the line above it"
        path[depth:] = [name]
        tree[name] = (path[depth - 1] if depth else None, code)
    return tree, constants


def test_the_docstring_draws_the_exception_tree_with_each_class_s_code() -> None:
    actual = {name: (cls.__mro__[1].__name__ if cls is not errors.BackupctlError else None, cls.exit_code)
              for name, cls in _classes().items()}
    drawn, _constants_drawn = _docstring()
    assert drawn == actual


def test_the_docstring_lists_the_codes_that_are_not_errors() -> None:
    _drawn, listed = _docstring()
    # A constant that repeats a class's code is that class by name (INTERRUPTED_EXIT_CODE is
    # Interrupted's): the code is drawn in the tree already.
    not_errors = {}
    for name, value in _constants().items():
        carriers = [cls for cls in _classes().values() if cls.exit_code == value]
        if carriers:
            assert any(name == f"{_snake(cls.__name__)}_EXIT_CODE" for cls in carriers), \
                f"{name} = {value}, the code of {[c.__name__ for c in carriers]}: one code, one meaning"
        else:
            not_errors[name] = value
    assert listed == not_errors
    assert errors.SUCCESS_EXIT_CODE == 0  # what every shell and systemd read as success


# ---- docs/REFERENCE.md -------------------------------------------------------------------

def _reference_table() -> dict[int, str]:
    text = REFERENCE.read_text(encoding="utf-8")
    table = text.split("\n## Exit codes\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (\d+) \| (.*) \|$", table, flags=re.MULTILINE)
    codes = [int(code) for code, _meaning in rows]
    assert len(codes) == len(set(codes)), "a code has two rows"
    return {int(code): meaning.strip() for code, meaning in rows}


def test_the_reference_table_lists_exactly_the_codes_that_exist() -> None:
    table = _reference_table()
    assert set(table) == _all_codes()
    assert all(table.values()), "a row without its meaning"


def test_the_readme_points_to_the_reference_for_the_exit_codes() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "docs/REFERENCE.md" in readme and "exit codes" in readme
    assert not re.search(r"^\| *\d+ *\|", readme, flags=re.MULTILINE), "a second exit-code table, in README.md"


# ---- readers of the codes ------------------------------------------------------------------

def test_the_daemon_gives_a_meaning_to_every_code_a_child_can_return() -> None:
    # Its children are backup, prune, check and restore-test: never status or compliance.
    assert known_exit_codes() == _all_codes() - {errors.OBLIGATIONS_AT_RISK_EXIT_CODE}


_EXIT_NAMES = {"exit_code", "returncode"}  # what holds an exit code: ours, or a child process's


def _exit_name(node: ast.expr) -> str | None:
    """"exit_code" or "returncode" when the expression names one: x.exit_code, returncode,
    step["exit_code"], step.get("exit_code"); else None."""
    name: object = None
    if isinstance(node, ast.Attribute):
        name = node.attr
    elif isinstance(node, ast.Name):
        name = node.id
    elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
        name = node.slice.value
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get" \
            and node.args and isinstance(node.args[0], ast.Constant):
        name = node.args[0].value
    return name if isinstance(name, str) and name in _EXIT_NAMES else None


def _numbers(node: ast.expr, constants: dict[str, list[int]]) -> list[int]:
    """The integers an expression writes: 3, (0, 3), or a constant of the module holding
    them (`REPOSITORY_EXISTS = 11` then `returncode == REPOSITORY_EXISTS`)."""
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return [node.value]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [n for element in node.elts for n in _numbers(element, constants)]
    if isinstance(node, ast.Name):
        return constants.get(node.id, [])
    return []


def _is_exit_call(node: ast.Call) -> bool:
    """exit(...), sys.exit(...), ctx.exit(...), os._exit(...), SystemExit(...)."""
    name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
    return name in {"exit", "_exit", "SystemExit"}


def _numeric_codes(tree: ast.Module) -> list[tuple[int, str]]:
    constants: dict[str, list[int]] = {}
    for statement in tree.body:
        if isinstance(statement, ast.Assign) and statement.value is not None:
            for target in statement.targets:
                if isinstance(target, ast.Name) and _numbers(statement.value, constants):
                    constants[target.id] = _numbers(statement.value, constants)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            named = {_exit_name(o) for o in operands} - {None}
            numbers = [n for o in operands for n in _numbers(o, constants)]
            # A process's `returncode != 0` is every program's convention (a hook, pg_dump,
            # Chromium), not a code of ours; any other number compared with a code is one.
            universal = named == {"returncode"} and numbers == [0]
            if named and numbers and not universal:
                found.append((node.lineno, ast.unparse(node)))
        elif isinstance(node, ast.Call):
            if _is_exit_call(node) and any(_numbers(a, constants) for a in node.args):
                found.append((node.lineno, ast.unparse(node)))
            found += [(node.lineno, ast.unparse(node)) for k in node.keywords
                      if k.arg in _EXIT_NAMES and _numbers(k.value, constants)]
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [t.id if isinstance(t, ast.Name) else getattr(t, "attr", "") for t in targets]
            if node.value is not None and _numbers(node.value, constants) and \
                    any(n in _EXIT_NAMES or n.endswith(("EXIT_CODE", "EXIT_CODES")) for n in names):
                found.append((node.lineno, ast.unparse(node)))
    return found


def test_no_module_but_errors_writes_an_exit_code_as_a_number() -> None:
    """Codes are compared, returned and assigned by name (errors.SUCCESS_EXIT_CODE,
    errors.Terminated.exit_code), never as `== 143`, `exit(3)`, `in (0, 3)` or
    `exit_code = 16` outside agent/errors.py."""
    found = []
    for path in sorted((ROOT / "agent").rglob("*.py")):
        if path == ROOT / "agent" / "errors.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        found += [f"{path.relative_to(ROOT)}:{line}: {text}" for line, text in _numeric_codes(tree)]
    assert found == []


def test_the_scan_finds_numeric_codes() -> None:
    """The scan above is not blind: each way of writing a code as a number is caught, and
    another program's `returncode != 0` is not."""
    caught = ["step.exit_code == 143", "s.get('exit_code') not in (0, 3)", "ctx.exit(0)", "sys.exit(2)",
              "raise SystemExit(1)", "done.returncode == 11", "class E:\n    exit_code = 16",
              "StepResult(exit_code=3)", "REPOSITORY_EXISTS_EXIT_CODE = 11", "step['exit_code'] != 0",
              "EXISTS = 11\nif done.returncode == EXISTS: pass", "SAVED = (0, PARTIAL)\nok = s.exit_code in SAVED"]
    for source in caught:
        assert _numeric_codes(ast.parse(source)), source
    for source in ["done.returncode != 0", "ctx.exit(errors.SUCCESS_EXIT_CODE)", "code in BACKUP_SAVED",
                   "len(steps) == 3", "status == 404"]:
        assert not _numeric_codes(ast.parse(source)), source

"""Rules the test suite keeps: tests prove behaviour through public interfaces.

A test that reads `runner._idle_workers` or swaps `checkpointer._round` pins how the code works
today, not what it promises, and breaks on every refactoring that keeps the promise. So no test
reads, writes or patches an attribute with one leading underscore of an object of ours.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable
from pathlib import Path

# Attributes public despite their underscore, by the library's own documentation.
PUBLIC_BY_CONVENTION = {
    "_asdict": "namedtuple's public API",
    "_replace": "namedtuple's public API",
    "_fields": "namedtuple's public API",
    "_make": "namedtuple's public API",
    "_mapping": "SQLAlchemy Row's public API",
}
# The few left, by test file and attribute, each with why no public way reaches it.
ALLOWED = {
    ("test_intake.py", "_DELETE"): (
        "fault injection: the intake file's one connection holds it exclusively, so no outside "
        "fault reaches its delete; a statement that fails is the fault"
    ),
}
# A class's own state, inside its methods (a test helper's, say): `self._x`, `cls._x`.
OWN = {"self", "cls"}
ATTRIBUTE_FUNCTIONS = {"getattr", "setattr", "delattr", "hasattr"}


def is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__") and name not in PUBLIC_BY_CONVENTION


def private_reads(paths: Iterable[Path]) -> list[str]:
    """`file:line: what` for each private attribute of ours a test file touches."""
    found: list[str] = []
    for path in paths:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        touches: list[tuple[int, str]] = []
        for node in ast.walk(tree):
            name = _private_name(node)
            if name and (path.name, name) not in ALLOWED:
                touches.append((node.lineno, ast.unparse(node)))
        found += [f"{path}:{line}: {source}" for line, source in sorted(touches)]
    return found


def _allowed_base(value: ast.expr) -> bool:
    # Python's own modules (`os._exit`, `sys._getframe`) are not ours to keep private.
    return isinstance(value, ast.Name) and (value.id in OWN or value.id in sys.stdlib_module_names)


def _private_name(node: ast.AST) -> str:
    """The private attribute of ours this node touches: `x._y`, or the "_y" of getattr(x, "_y"),
    setattr(...), monkeypatch.setattr(x, "_y", ...) and the like; "" for none."""
    if isinstance(node, ast.Attribute):
        return node.attr if is_private(node.attr) and not _allowed_base(node.value) else ""
    if not isinstance(node, ast.Call) or len(node.args) < 2 or _allowed_base(node.args[0]):
        return ""
    function = node.func
    called = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", "")
    attribute = node.args[1]
    if called in ATTRIBUTE_FUNCTIONS and isinstance(attribute, ast.Constant) and isinstance(attribute.value, str):
        return attribute.value if is_private(attribute.value) else ""
    return ""


def test_no_taskflow_test_reads_a_private_attribute() -> None:
    found = private_reads(sorted(Path(__file__).parent.glob("*.py")))
    assert not found, "tests must prove behaviour through public interfaces:\n" + "\n".join(found)


def test_the_rule_names_the_file_and_line_of_a_private_read(tmp_path: Path) -> None:
    offender = tmp_path / "test_offender.py"
    offender.write_text(
        "import os\n"
        "def test_it(runner, monkeypatch):\n"
        "    assert runner._idle_workers == 0\n"
        "    monkeypatch.setattr(runner, '_round', None)\n"
        "    os._exit(0)\n"
        "    runner.row._asdict()\n"
        "class Helper:\n"
        "    def up(self):\n"
        "        return self._up\n"
    )
    assert private_reads([offender]) == [
        f"{offender}:3: runner._idle_workers",
        f"{offender}:4: monkeypatch.setattr(runner, '_round', None)",
    ]

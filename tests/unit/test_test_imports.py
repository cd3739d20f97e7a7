"""Test modules share helpers through tests/support/ (and fixtures through a conftest),
never by importing one another: a test module stays free to be renamed, split or deleted
without breaking an unrelated one, and no module pulls in another's tests and fixtures."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support.paths import ROOT

TESTS = ROOT / "tests"
SHARED = "tests.support"


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in ``path``: ``from tests import x`` imports tests.x,
    and a relative import keeps its leading dots."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == "tests":
            found.extend((node.lineno, f"tests.{alias.name}") for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.append((node.lineno, "." * node.level + (node.module or "")))
    return found


def from_another_test_module(module: str) -> bool:
    inside_tests = module == "tests" or module.startswith(("tests.", "."))
    shared = module == SHARED or module.startswith(f"{SHARED}.")
    return inside_tests and not shared


def test_test_modules_import_only_the_support_package() -> None:
    offending = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for path in sorted(TESTS.rglob("*.py"))
        for line, module in imported_modules(path)
        if from_another_test_module(module)
    ]
    assert offending == [], "import shared helpers from tests/support/:\n" + "\n".join(offending)


def test_the_check_sees_a_test_module_importing_another(tmp_path: Path) -> None:
    module = tmp_path / "test_example.py"
    module.write_text(
        "from tests.integration.test_gateway_calls import rpc\n"
        "from tests import conftest\n"
        "from tests.support.polling import poll_until\n"
    )
    found = [m for _, m in imported_modules(module) if from_another_test_module(m)]
    assert found == ["tests.integration.test_gateway_calls", "tests.conftest"]

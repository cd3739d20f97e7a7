"""Code shape rules of docs/architecture.md, checked on the source and the tests: no
function or method over 60 lines (outside bench/ and store/migrations), and every module
over 400 lines in flows/ ingest/ store/ says why in a ``Size: <reason>`` line of its
module docstring."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = (
    "chargeflow",
    "runtime",
    "bus",
    "ingest",
    "flows",
    "models",
    "store",
    "api",
    "notify",
    "smart_charging",
    "tests",
)
SIZED_PACKAGES = ("flows", "ingest", "store")
MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 400


def _modules() -> list[Path]:
    return sorted(
        path
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if "migrations" not in path.relative_to(ROOT / package).parts
    )


def _name(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


MODULES = _modules()


def test_the_packages_are_found() -> None:
    assert {_name(p).split("/")[0] for p in MODULES} == set(PACKAGES)


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_no_function_is_over_60_lines(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    long = [
        f"{node.name} (line {node.lineno}): {node.end_lineno - node.lineno + 1} lines"
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, f"{_name(path)}: split into well-named steps: {long}"


@pytest.mark.parametrize(
    "path", [p for p in MODULES if _name(p).split("/")[0] in SIZED_PACKAGES], ids=_name
)
def test_a_long_module_says_why(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    lines = len(text.splitlines())
    if lines <= MAX_MODULE_LINES:
        return
    docstring = ast.get_docstring(ast.parse(text)) or ""
    assert "Size:" in docstring, (
        f"{_name(path)} has {lines} lines: split it by concern, or give the reason in a "
        "'Size: <reason>' line of its module docstring"
    )

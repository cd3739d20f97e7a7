"""Every example in the packages' docstrings runs (River-style docstrings with doctests).

Modules are found by walking the packages, so a new module's examples run without being
listed anywhere, and a new top-level package fails a test until it is listed here. The
tests themselves are not walked: their helpers import test-only dependencies."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
from types import ModuleType

import pytest

from tests.support.paths import ROOT

PACKAGES = (
    "runtime",
    "bus",
    "ingest",
    "flows",
    "models",
    "billing",
    "store",
    "api",
    "notify",
    "invoicing",
    "smart_charging",
    "reports",
    "dashboards",
    "chargeflow",
    "bench",
)
# Alembic's environment runs migrations when imported; it has no examples.
SKIP_PREFIXES = ("store.migrations",)
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _modules() -> list[str]:
    names: list[str] = []
    for package in PACKAGES:
        root = importlib.import_module(package)
        names.append(package)
        for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
            if not info.name.startswith(SKIP_PREFIXES):
                names.append(info.name)
    return sorted(names)


def _examples(module: ModuleType) -> list[doctest.DocTest]:
    finder = doctest.DocTestFinder(exclude_empty=True)
    return [t for t in finder.find(module) if t.examples]


MODULES_WITH_EXAMPLES = [name for name in _modules() if _examples(importlib.import_module(name))]


def test_every_top_level_package_is_walked() -> None:
    packages = {init.parent.name for init in ROOT.glob("*/__init__.py")} - {"tests"}
    assert packages <= set(PACKAGES)


def test_examples_are_found_everywhere() -> None:
    # A few modules known to carry examples: if the walk misses them, it misses others too.
    assert {"bus.normalized", "bus.envelope", "flows.sessions.logic"} <= set(MODULES_WITH_EXAMPLES)


@pytest.mark.parametrize("name", MODULES_WITH_EXAMPLES)
def test_module_examples(name: str) -> None:
    module = importlib.import_module(name)
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    for test in _examples(module):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.attempted > 0
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} examples failed"

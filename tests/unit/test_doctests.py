"""The examples in module docstrings run (River-style docstrings with doctests)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = (
    "bus.envelope", "bus.commands", "bus.load", "bus.sessions", "flows.load.logic",
    "flows.sessions.logic", "ingest.gateway.commands", "ingest.meters.reading",
    "store.load_queries", "runtime.logs", "chargeflow.cli",
)


@pytest.mark.parametrize("name", MODULES)
def test_module_doctests(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name),
                             optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0

"""Helpers the tests share: builders, fixtures' building blocks, polling, processes.

Test modules import from here (and get fixtures from a conftest), never from each other,
so a test module can be renamed, split or deleted without breaking an unrelated one
(checked by tests/unit/test_test_imports.py)."""

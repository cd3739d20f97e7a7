"""The long-running processes do not load the migration stack: Alembic and SQLAlchemy
cost each process ~20 MiB and only migrations need them (store.db imports them where
migrations run)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.paths import ROOT

HEAVY = ("alembic", "sqlalchemy", "river", "numpy", "pandas")


@pytest.mark.parametrize(
    "module",
    [
        "ingest.gateway.server",
        "ingest.meters.bridge",
        "flows.sessions.dataflow",
        "flows.load.dataflow",
        "flows.status.dataflow",
        "api.main",
    ],
)
def test_a_process_entry_point_imports_no_heavy_library(module: str) -> None:
    code = f"import sys, {module}\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "", f"{module} loads {out.stdout.strip()}"

"""deploy/docker/chargeflow-flow, the image's flow entry, run for real: it creates the
process's share of the recovery partitions, then hands over to ``flows.run``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.paths import ROOT

SCRIPT = ROOT / "deploy" / "docker" / "chargeflow-flow"


def run(
    tmp_path: Path, flow: str, process: int, partitions: str
) -> subprocess.CompletedProcess[str]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("CHARGEFLOW_", "BYTEWAX_"))},
        # `python` in the image is the venv's; here the test's interpreter.
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "BYTEWAX_PROCESS_ID": str(process),
        "BYTEWAX_ADDRESSES": "flow-x-0:2101;flow-x-1:2101",
        "BYTEWAX_RECOVERY_DIRECTORY": str(tmp_path / f"volume{process}"),
        "BYTEWAX_SNAPSHOT_INTERVAL": "5",
        "BYTEWAX_RECOVERY_BACKUP_INTERVAL": "0",
    }
    return subprocess.run(
        ["sh", str(SCRIPT), flow, partitions],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_creates_the_process_share_then_runs_the_flow(tmp_path: Path) -> None:
    # A flow that does not exist: the partitions are made, then flows.run fails to import
    # it, which shows the hand-over without a broker.
    done = run(tmp_path, "no_such_flow", 1, "4")
    assert done.returncode != 0
    assert "flows.no_such_flow" in done.stderr
    assert sorted(p.name for p in (tmp_path / "volume1").glob("part-*")) == [
        "part-1.sqlite3",
        "part-3.sqlite3",
    ]


def test_a_volume_with_another_share_stops_before_the_flow(tmp_path: Path) -> None:
    assert run(tmp_path, "no_such_flow", 0, "4").returncode != 0  # volume0: partitions 0, 2
    (tmp_path / "volume0").rename(tmp_path / "volume1")  # process 1 gets process 0's volume
    done = run(tmp_path, "no_such_flow", 1, "4")
    assert done.returncode == 1
    assert "holds partitions [0, 2] of [4], not [1, 3] of 4" in done.stderr
    assert "flows.no_such_flow" not in done.stderr

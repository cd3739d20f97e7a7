"""``python -m flows.run``: SIGINT/SIGTERM stop a running dataflow with one log line
and exit 0, even with RUST_BACKTRACE set (Bytewax stops by a Rust panic, whose report
and backtrace would otherwise go to stderr)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import ROOT
from tests.support.polling import poll_until


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stopped_flow_logs_one_line_and_no_rust_backtrace(
    sig: signal.Signals, tmp_path: Path
) -> None:
    log = tmp_path / "flow.log"
    env = {
        **os.environ,
        "RUST_BACKTRACE": "1",
        "CHARGEFLOW_LOG_FORMAT": "console",
        "PYTHONUNBUFFERED": "1",
    }
    with log.open("wb") as out:
        flow = subprocess.Popen(
            [sys.executable, "-m", "flows.run", "tests.support.ticking_flow:flow"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        poll_until(log.read_text, lambda text: "tick" in text, 60, "the flow running")
        flow.send_signal(sig)
        assert flow.wait(30) == 0
    finally:
        if flow.poll() is None:
            flow.kill()
            flow.wait()
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    others = [line for line in lines if "tick" not in line]
    assert len(others) == 1, "\n".join(others[:40])
    assert f"dataflow stopped on {sig.name}" in others[0]

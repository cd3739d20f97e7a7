"""The aggregates refresher as deployed (``python -m store.aggregates --every``, a real
process on the real database): ready while its refreshes succeed, not ready while it
cannot reach the database (alive all the same), stopped cleanly by SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from chargeflow.stack import free_port
from tests.support.paths import ROOT
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration


@contextmanager
def refresher(database_url: str, port: int) -> Iterator[subprocess.Popen[bytes]]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CHARGEFLOW_")},
        "CHARGEFLOW_DATABASE_URL": database_url,
        "CHARGEFLOW_AGGREGATES_HTTP_PORT": str(port),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "store.aggregates", "--every", "0.5"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)


def _status(url: str) -> int:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.TransportError:
        return 0


def test_ready_while_refreshing_and_stopped_by_sigterm(clean_db: str) -> None:
    port = free_port()
    with refresher(clean_db, port) as process:
        poll_until(lambda: _status(f"http://127.0.0.1:{port}/readyz"), lambda s: s == 200, 30,
                   "the refresher ready")  # fmt: skip
        body = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).json()
        assert body["checks"]["refreshing"]["ok"] is True
        assert "process_cpu_seconds_total" in httpx.get(f"http://127.0.0.1:{port}/metrics").text
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0


def test_not_ready_while_the_database_is_away(clean_db: str) -> None:
    port, nowhere = free_port(), free_port()
    with refresher(f"postgresql://nobody@127.0.0.1:{nowhere}/none", port) as process:
        poll_until(lambda: _status(f"http://127.0.0.1:{port}/livez"), lambda s: s == 200, 30,
                   "the refresher alive")  # fmt: skip
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
        assert ready.status_code == 503
        assert ready.json()["checks"]["refreshing"]["ok"] is False
        assert process.poll() is None  # it keeps trying
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=15)[0].decode()
    assert process.returncode == 0
    assert "aggregate refresh failed" in output

"""The gateway's authentication limits are settings: ``chargeflow gateway`` run as a
process with ``CHARGEFLOW_GATEWAY_AUTH_*`` in its environment applies them."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from bus.topics import Topics
from chargeflow.stack import EmbeddedBroker, free_port
from tests.support.paths import ROOT
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration


def live(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/livez", timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


@pytest.fixture
def gateway_port(
    broker: EmbeddedBroker, clean_db: str, topics: Topics, tmp_path: Path
) -> Iterator[int]:
    port = free_port()
    env = {
        **os.environ,
        "CHARGEFLOW_KAFKA_BOOTSTRAP": broker.bootstrap,
        "CHARGEFLOW_DATABASE_URL": clean_db,
        "CHARGEFLOW_TOPIC_PREFIX": topics.ocpp_events[: -len(Topics().ocpp_events)],
        "CHARGEFLOW_GATEWAY_PORT": str(port),
        "CHARGEFLOW_GATEWAY_AUTH_FAILURE_LIMIT_IP": "2",
        "CHARGEFLOW_GATEWAY_AUTH_COOLDOWN_S": "300",
    }
    with open(tmp_path / "gateway.log", "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "chargeflow.cli", "gateway"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=out,
            stdin=subprocess.DEVNULL,
        )
    try:
        poll_until(lambda: proc.poll() is not None or live(port), bool, 60, "gateway /livez")
        assert proc.poll() is None, (tmp_path / "gateway.log").read_text()[-2000:]
        yield port
    finally:
        proc.terminate()
        proc.wait(30)


def status(port: int, cp_id: str) -> int:
    with pytest.raises(InvalidStatus) as info:
        connect(
            f"ws://127.0.0.1:{port}/ocpp/{cp_id}",
            subprotocols=["ocpp1.6"],  # type: ignore[list-item]
            additional_headers={"Authorization": "Basic Q1A6bm9wZQ=="},
        )
    return int(info.value.response.status_code)


def test_the_source_failure_limit_and_cool_down_come_from_the_environment(
    gateway_port: int,
) -> None:
    answers = [status(gateway_port, f"CP-NOBODY-{n}") for n in range(3)]
    assert answers == [404, 404, 429]

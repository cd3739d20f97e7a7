"""Processes read their settings the same way: the environment, then ``.env`` in their
working directory; the CLI finds the database as ``chargeflow run`` does."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest

from bus.topics import Topics
from chargeflow.stack import (
    LOCAL_POSTGRES_URL,
    DatabaseServer,
    EmbeddedBroker,
    free_port,
    tcp_open,
)
from tests.support.paths import ROOT
from tests.support.polling import poll_until


def _bare_env() -> dict[str, str]:
    """The test's environment without any CHARGEFLOW_* variable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHARGEFLOW_")}
    env["PYTHONPATH"] = str(ROOT)
    return env


def test_python_m_api_reads_dotenv(clean_db: str, tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / ".env").write_text(
        f"CHARGEFLOW_DATABASE_URL={clean_db}\nCHARGEFLOW_API_PORT={port}\n"
    )
    api = subprocess.Popen(
        [sys.executable, "-m", "api"],
        cwd=tmp_path,
        env=_bare_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        poll_until(
            lambda: api.poll() is not None or tcp_open("127.0.0.1", port),
            bool,
            60,
            "the API to listen on the port from .env",
        )
        assert api.poll() is None, api.stderr.read().decode() if api.stderr else ""
        health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
        assert health.status_code == 200
        assert health.json()["status"] == "ok"
    finally:
        api.terminate()
        api.wait(30)


def test_a_flow_reads_dotenv(
    broker: EmbeddedBroker, topics: Topics, clean_db: str, tmp_path: Path
) -> None:
    prefix = topics.ocpp_events[: -len(Topics().ocpp_events)]
    bootstrap = broker.bootstrap
    # Batch mode (tail false) from .env: the flow stops at the end of its empty topics.
    (tmp_path / ".env").write_text(
        f"CHARGEFLOW_KAFKA_BOOTSTRAP={bootstrap}\nCHARGEFLOW_DATABASE_URL={clean_db}\n"
        f"CHARGEFLOW_TOPIC_PREFIX={prefix}\nCHARGEFLOW_FLOW_TAIL=false\n"
    )
    flow = subprocess.run(
        [sys.executable, "-m", "flows.run", "flows.status.dataflow:from_env()"],
        cwd=tmp_path,
        env=_bare_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert flow.returncode == 0, flow.stderr[-3000:]


def test_station_add_finds_the_local_database_without_a_url(
    pg_server: DatabaseServer, tmp_path: Path
) -> None:
    assert tcp_open("127.0.0.1", 5432), "the CLI's default is the local server on :5432"
    name = f"chargeflow_test_cli_{uuid.uuid4().hex[:8]}"
    local = DatabaseServer(admin_url=LOCAL_POSTGRES_URL, origin="local")
    env = {
        **_bare_env(),
        "CHARGEFLOW_DATABASE_NAME": name,
        "CHARGEFLOW_DATA_DIR": str(tmp_path / "data"),
    }
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "chargeflow.cli",
                "station",
                "add",
                "CP-CLI-1",
                "--generate-password",
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert "provisioned CP-CLI-1" in result.stdout
        with psycopg.connect(local.url_for(name)) as conn:
            row = conn.execute("SELECT charge_point_id FROM stations").fetchall()
        assert row == [("CP-CLI-1",)]
    finally:
        local.drop_database(name)


@pytest.mark.parametrize(
    "variable", ["CHARGEFLOW_GATEWAY_PORT", "CHARGEFLOW_API_PORT", "CHARGEFLOW_WEBHOOKS_HTTP_PORT"]
)
def test_chargeflow_run_stops_at_a_bad_process_setting(variable: str, tmp_path: Path) -> None:
    env = {**_bare_env(), variable: "not-a-port", "CHARGEFLOW_DATA_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "chargeflow.cli", "run"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: {variable}: ")

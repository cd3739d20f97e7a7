"""``chargeflow run`` as a newcomer uses it, and the embedded PostgreSQL fallback."""

from __future__ import annotations

import contextlib
import functools
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import psutil
import pytest

from chargeflow.stack import DatabaseServer, database_server, free_port
from store.db import StorageMode, migrate
from tests.support.paths import ROOT
from tests.support.polling import poll_until


def test_embedded_postgresql_is_used_when_no_server_is_given(tmp_path: Path) -> None:
    server = database_server(None, tmp_path, try_local=False)
    try:
        assert server.origin == "embedded"
        url = server.create_database("chargeflow")
        assert migrate(url) is StorageMode.POSTGRESQL
        postmaster = server._embedded.get_pid()
        assert postmaster is not None
        assert psutil.pid_exists(postmaster)
    finally:
        server.stop()
    assert not psutil.pid_exists(postmaster) or psutil.Process(postmaster).status() == "zombie"


def _run_env(
    database_url: str, api_port: int, gateway_port: int, meters_port: int, data_dir: Path
) -> dict[str, str]:
    return {
        **os.environ,
        "CHARGEFLOW_DATABASE_URL": database_url,
        "CHARGEFLOW_API_PORT": str(api_port),
        "CHARGEFLOW_GATEWAY_PORT": str(gateway_port),
        "CHARGEFLOW_METERS_HTTP_PORT": str(meters_port),
        "CHARGEFLOW_FLOW_METRICS_PORT": "0",  # free ports, listed in the banner
        "CHARGEFLOW_SIMULATED_STATIONS": "3",
        # Fast simulated time so a session closes within seconds.
        "CHARGEFLOW_SIMULATOR_TIME_SCALE": "600",
        "CHARGEFLOW_SIMULATOR_METER_INTERVAL_S": "30",
        "CHARGEFLOW_SIMULATOR_MEAN_DWELL_S": "900",
        "CHARGEFLOW_SIMULATOR_MEAN_ARRIVAL_GAP_S": "60",
        # Smart meter readings 5 simulated minutes apart (the flow brackets sessions
        # with readings within 15 simulated minutes of their start and stop).
        "CHARGEFLOW_SIMULATED_METER_INTERVAL_S": "0.5",
        "CHARGEFLOW_DATA_DIR": str(data_dir),
        "PYTHONUNBUFFERED": "1",
    }


def _read_the_banner_and_wait_until_ready(
    lines: list[str], launcher: subprocess.Popen[bytes], api_port: int, meters_port: int
) -> str:
    """Returns the development API key the banner shows."""
    key_line = poll_until(
        lambda: next((ln for ln in lines if "dev API key" in ln), None),
        lambda ln: ln is not None or launcher.poll() is not None,
        90,
        "the launcher banner",
    )
    assert key_line is not None, "".join(lines[-80:])
    match = re.search(r"(cf_\S+)", key_line)
    assert match, key_line
    text = "".join(lines)
    assert f"http://127.0.0.1:{api_port}/docs" in text
    assert "simulator (3 charge points)" in text
    # Each flow serves health and metrics on its own port, named in the banner.
    flow_line = next(ln for ln in lines if "flow health" in ln)
    flow_ports = dict(re.findall(r"(\w+) http://127\.0\.0\.1:(\d+)", flow_line))
    expected = {"sessions", "load", "status", "faults", "messages", "smart_charging"}
    assert set(flow_ports) == expected, flow_line
    for name, port in [*flow_ports.items(), ("meters", str(meters_port))]:
        poll_until(
            functools.partial(_status, f"http://127.0.0.1:{port}/readyz"),
            lambda code: code == 200,
            60,
            f"{name} ready",
        )
    return match.group(1)


def _check_the_api_serves_closed_sessions(api_port: int, key: str) -> None:
    api = f"http://127.0.0.1:{api_port}"
    assert httpx.get(f"{api}/healthz", timeout=5).json()["status"] == "ok"
    assert httpx.get(f"{api}/v1/sessions", timeout=5).status_code == 401
    closed = poll_until(
        lambda: httpx.get(
            f"{api}/v1/sessions",
            params={"status": "closed"},
            headers={"X-API-Key": key},
            timeout=5,
        ).json()["items"],
        lambda items: len(items) >= 1,
        90,
        "a closed session from the simulated fleet",
    )
    assert closed[0]["energy_wh"] == closed[0]["meter_stop_wh"] - closed[0]["meter_start_wh"]
    # SIM-0001's smart meter (run by the simulator, following the station's register)
    # bills its sessions; it agrees with the station, so the session stays exact.
    (billed, *_) = poll_until(
        lambda: httpx.get(
            f"{api}/v1/sessions",
            params={"status": "closed", "station": "SIM-0001"},
            headers={"X-API-Key": key},
            timeout=5,
        ).json()["items"],
        lambda items: len(items) >= 1,
        90,
        "a closed session of SIM-0001",
    )
    assert billed["energy_source"] == "smart_meter", billed
    assert billed["quality"] == "exact", billed
    assert billed["smart_meter_id"] == "MTR-SIM-0001-1", billed
    # The billing worker priced it under the demo tariff: its CDR is in the API.
    cdrs = poll_until(
        lambda: httpx.get(
            f"{api}/v1/cdrs", headers={"X-API-Key": key}, params={"station": "SIM-0001"}, timeout=5
        ).json()["items"],
        lambda items: any(c["session_id"] == billed["session_id"] for c in items),
        90,
        "the CDR of SIM-0001's session",
    )
    cdr = next(c for c in cdrs if c["session_id"] == billed["session_id"])
    assert cdr["currency"] == "EUR", cdr
    assert httpx.get(f"{api}/docs", timeout=5).status_code == 200
    # The messages flow keeps the stations' OCPP messages for the API.
    messages = poll_until(
        lambda: httpx.get(
            f"{api}/v1/stations/SIM-0001/messages",
            params={"action": "BootNotification"},
            headers={"X-API-Key": key},
            timeout=5,
        ).json()["items"],
        lambda items: len(items) >= 1,
        60,
        "SIM-0001's BootNotification in its message history",
    )
    assert messages[0]["direction"] == "station_to_csms", messages


def _check_the_demo_faults_are_alerted(api_port: int, key: str) -> None:
    """The launcher's demo stations develop their faults (SIM-0002 a ground fault,
    SIM-0003 a failing controller; ``chargeflow.launcher.DEMO_FAULTS``) and the faults
    flow alerts on them through the API; the healthy SIM-0001 has none."""

    def alerts() -> list[dict[str, object]]:
        page = httpx.get(
            f"http://127.0.0.1:{api_port}/v1/alerts",
            params={"limit": 500},
            headers={"X-API-Key": key},
            timeout=5,
        )
        items: list[dict[str, object]] = page.json()["items"]
        return items

    got = poll_until(
        lambda: {(a["station_id"], a["kind"]) for a in alerts()},
        lambda kinds: {("SIM-0002", "ground_fault"), ("SIM-0003", "controller_fault")} <= kinds,
        90,
        "the demo stations' alerts in /v1/alerts",
    )
    assert not [k for k in got if k[0] == "SIM-0001"], got


def _check_the_process_family(launcher: subprocess.Popen[bytes]) -> set[int]:
    """Returns the pids of every process under the launcher."""
    children = psutil.Process(launcher.pid).children(recursive=True)
    family = {p.pid for p in children}
    commands = [" ".join(p.cmdline()) for p in children]
    # brokers (Kafka, MQTT), gateway, 5 flows, aggregates, api, billing, meter bridge,
    # simulator
    assert len(family) >= 10, commands
    assert sum("chargeflow.cli billing" in c for c in commands) == 1, commands
    assert sum("chargeflow.cli simulate" in c for c in commands) == 1, commands
    assert sum("chargeflow.cli meters" in c for c in commands) == 1, commands
    # The smart meters run inside the simulator, not in a process of their own.
    assert not any("ingest.simulator.meters" in c for c in commands), commands
    return family


def test_chargeflow_run_serves_sessions_and_ctrl_c_stops_everything(
    pg_server: DatabaseServer, tmp_path: Path
) -> None:
    db_name = f"chargeflow_test_run_{uuid.uuid4().hex[:8]}"
    database_url = pg_server.create_database(db_name, exist_ok=False)
    api_port, gateway_port, meters_port = free_port(), free_port(), free_port()
    env = _run_env(database_url, api_port, gateway_port, meters_port, tmp_path / "data")
    launcher = subprocess.Popen(
        [sys.executable, "-m", "chargeflow.cli", "run"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    lines: list[str] = []

    def pump() -> None:
        assert launcher.stdout is not None
        for raw in iter(launcher.stdout.readline, b""):
            lines.append(raw.decode("utf-8", "replace"))

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    family: set[int] = set()
    try:
        key = _read_the_banner_and_wait_until_ready(lines, launcher, api_port, meters_port)
        _check_the_api_serves_closed_sessions(api_port, key)
        _check_the_demo_faults_are_alerted(api_port, key)
        assert "faults (demo)   SIM-0003" in "".join(lines)
        family = _check_the_process_family(launcher)
        launcher.send_signal(signal.SIGINT)  # what Ctrl-C delivers
        assert launcher.wait(60) == 0, "".join(lines[-60:])
    finally:
        if launcher.poll() is None:
            # A failed check: the children run in sessions of their own, so killing the
            # launcher's group alone would leave them running past the test.
            children = psutil.Process(launcher.pid).children(recursive=True)
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.wait()
            for child in children:
                with contextlib.suppress(psutil.NoSuchProcess):
                    child.kill()
        reader.join(timeout=5)
        pg_server.drop_database(db_name)

    deadline = time.monotonic() + 10
    alive = [pid for pid in family if _running(pid)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [pid for pid in family if _running(pid)]
    assert not alive, f"orphans left: {alive}"
    assert "all stopped" in "".join(lines)


def _status(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=5).status_code
    except httpx.TransportError:
        return None


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.parametrize("role", ["billing", "nonsense"])
def test_apikey_create_command(database_url: str, role: str) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "chargeflow.cli",
            "apikey",
            "create",
            "--role",
            role,
            "--name",
            "erp",
        ],
        cwd=ROOT,
        env={**os.environ, "CHARGEFLOW_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    if role == "billing":
        assert result.returncode == 0, result.stderr
        assert re.fullmatch(r"cf_[0-9a-f]+_\S+\n", result.stdout)
    else:
        assert result.returncode != 0
        assert "unknown role" in result.stderr

"""Ctrl-C and a second ``chargeflow run`` on the same database: the sessions the first
run left active are reconciled (its embedded broker kept none of their events), and
no connector ever shows two active sessions."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from chargeflow.stack import DatabaseServer, free_port
from tests.support.paths import ROOT
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration


class Launcher:
    """``chargeflow run`` as a child process, its output collected."""

    def __init__(self, env: dict[str, str]) -> None:
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "chargeflow.cli", "run"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for raw in iter(self.process.stdout.readline, b""):
            self.lines.append(raw.decode("utf-8", "replace"))

    def output(self) -> str:
        return "".join(self.lines[-80:])

    def wait_ready(self) -> None:
        poll_until(
            lambda: (
                any("dev API key" in ln for ln in self.lines) or (self.process.poll() is not None)
            ),
            bool,
            120,
            "the launcher banner",
        )
        assert self.process.poll() is None, self.output()

    def stop(self) -> None:
        """Ctrl-C, and a clean exit."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            assert self.process.wait(60) == 0, self.output()
        finally:
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
            self._reader.join(timeout=5)


def active_sessions(url: str) -> set[Any]:
    with psycopg.connect(url) as conn:
        return {
            r[0]
            for r in conn.execute(
                "SELECT session_id FROM sessions WHERE status = 'active'"
            ).fetchall()
        }


def doubly_active_connectors(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT charge_point_id, connector_id, count(*) FROM sessions"
            " WHERE status = 'active' GROUP BY 1, 2 HAVING count(*) > 1"
        ).fetchall()


def _run_env(url: str, data_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "CHARGEFLOW_DATABASE_URL": url,
        "CHARGEFLOW_API_PORT": str(free_port()),
        "CHARGEFLOW_GATEWAY_PORT": str(free_port()),
        "CHARGEFLOW_METERS_HTTP_PORT": str(free_port()),
        "CHARGEFLOW_SIMULATED_STATIONS": "3",
        "CHARGEFLOW_DEMO_FAULTS": "false",  # sessions on every station, none Faulted
        # Sessions of ~10 simulated hours at 600x: about a minute each, so several
        # are running when the first run stops.
        "CHARGEFLOW_SIMULATOR_TIME_SCALE": "600",
        "CHARGEFLOW_SIMULATOR_METER_INTERVAL_S": "60",
        "CHARGEFLOW_SIMULATOR_MEAN_DWELL_S": "36000",
        "CHARGEFLOW_SIMULATOR_MEAN_ARRIVAL_GAP_S": "60",
        "CHARGEFLOW_DATA_DIR": str(data_dir),
        "PYTHONUNBUFFERED": "1",
    }


def _check_left_active_are_reconciled(url: str, left_active: set[Any]) -> None:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT status, closed_by, quality, quality_reasons FROM sessions"
            " WHERE session_id = ANY(%s)",
            (list(left_active),),
        ).fetchall()
    assert len(rows) == len(left_active)
    for status, closed_by, quality, reasons in rows:
        assert (status, closed_by) == ("closed", "reconciled"), rows
        assert quality != "exact", rows
        assert "state_lost" in reasons, rows


def _check_new_sessions_and_the_publication(url: str, left_active: set[Any]) -> None:
    # New sessions on the same connectors: never a second active one there.
    def new_sessions() -> set[Any]:
        with psycopg.connect(url) as conn:
            return {
                r[0] for r in conn.execute("SELECT session_id FROM sessions").fetchall()
            } - left_active

    poll_until(new_sessions, lambda ids: len(ids) >= 2, 120, "new sessions in the second run")
    assert doubly_active_connectors(url) == []
    # sessions.closed is published for the reconciled ones too.
    with psycopg.connect(url) as conn:
        poll_until(
            lambda: conn.execute(
                "SELECT count(*) FROM sessions_outbox WHERE session_id = ANY(%s)"
                " AND published_at IS NOT NULL",
                (list(left_active),),
            ).fetchone(),
            lambda row: row == (len(left_active),),
            60,
            "the reconciled sessions published on sessions.closed",
        )


def test_second_run_reconciles_sessions_left_active_by_the_first(
    pg_server: DatabaseServer, tmp_path: Path
) -> None:
    db_name = f"chargeflow_test_restart_{uuid.uuid4().hex[:8]}"
    url = pg_server.create_database(db_name, exist_ok=False)
    env = _run_env(url, tmp_path / "data")
    try:
        first = Launcher(env)
        try:
            first.wait_ready()
            poll_until(
                lambda: active_sessions(url),
                lambda ids: len(ids) >= 2,
                120,
                "two active sessions in the first run",
            )
        finally:
            first.stop()
        left_active = active_sessions(url)
        assert left_active, "the first run stopped with no session active"

        second = Launcher(env)
        try:
            second.wait_ready()
            _check_left_active_are_reconciled(url, left_active)
            _check_new_sessions_and_the_publication(url, left_active)
        finally:
            second.stop()
        assert doubly_active_connectors(url) == []
        assert "closed as reconciled" in "".join(second.lines)
    finally:
        pg_server.drop_database(db_name)

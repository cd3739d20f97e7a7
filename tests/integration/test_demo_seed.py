"""``chargeflow demo-seed`` (the compose stack's seed one-shot) as a subprocess, its
database URL and the stations' password read from files as Docker secrets hand them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tests.support.paths import ROOT

pytestmark = pytest.mark.integration

PASSWORD = "demo-station-password-0123"


def demo_seed(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chargeflow.cli", "demo-seed", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_seeds_the_demo_once_from_secret_files(clean_db: str, tmp_path: Path) -> None:
    (tmp_path / "database_url").write_text(clean_db + "\n")
    (tmp_path / "station_password").write_text(PASSWORD + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHARGEFLOW_")}
    env["CHARGEFLOW_DATABASE_URL_FILE"] = str(tmp_path / "database_url")
    env["CHARGEFLOW_SIMULATOR_STATION_PASSWORD_FILE"] = str(tmp_path / "station_password")

    for _ in range(2):  # idempotent: a restarted one-shot seeds nothing twice
        done = demo_seed(env, "--stations", "6")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == (
            "demo seeded: 6 stations SIM-0001..SIM-0006 on sites DEMO-DEPOT, DEMO-PARK"
        )
        assert PASSWORD not in done.stdout + done.stderr
    with psycopg.connect(clean_db) as conn:
        sites = conn.execute(
            "SELECT site_id, count(*) FROM stations WHERE charge_point_id LIKE 'SIM-%' "
            "GROUP BY site_id ORDER BY site_id"
        ).fetchall()
        tariffs = conn.execute("SELECT count(DISTINCT tariff_id) FROM tariffs").fetchone()
    assert sites == [("DEMO-DEPOT", 3), ("DEMO-PARK", 3)]
    assert tariffs == (1,)


def test_without_the_stations_password_it_says_which_setting(clean_db: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHARGEFLOW_")}
    env["CHARGEFLOW_DATABASE_URL"] = clean_db
    done = demo_seed(env)
    assert done.returncode != 0
    assert "CHARGEFLOW_SIMULATOR_STATION_PASSWORD is required" in done.stderr
    assert "Traceback" not in done.stderr

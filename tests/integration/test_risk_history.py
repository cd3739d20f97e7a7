"""Migration 0032: every score the faults flow's writer stores in ``connector_health``
is folded into ``connector_risk_1m`` (per connector and UTC minute of telemetry time:
maximum, latest score and time, count); a snapshot the writer refuses as older leaves
the history alone; the migration downgrades and upgrades again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from alembic import command

from bench.common import fresh_database
from chargeflow.stack import DatabaseServer
from store.db import alembic_config, migrate
from tests.support.alerts import connector_health, write_alerts

pytestmark = pytest.mark.integration

T0 = datetime(2026, 7, 1, 8, 0, 10, tzinfo=UTC)


def _history(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as db:
        return db.execute(
            "SELECT station_id, connector_id, bucket, max_risk, last_risk, last_at, scores"
            " FROM connector_risk_1m ORDER BY station_id, connector_id, bucket"
        ).fetchall()


def test_scores_are_folded_per_connector_and_minute(clean_db: str) -> None:
    second = timedelta(seconds=1)
    write_alerts(clean_db, health=[connector_health("CP1", 1, T0, risk=0.3)])
    write_alerts(clean_db, health=[connector_health("CP1", 1, T0 + 20 * second, risk=0.8)])
    write_alerts(clean_db, health=[connector_health("CP1", 1, T0 + 40 * second, risk=0.5)])
    # older than the stored snapshot: the writer keeps the newer one, the history too
    write_alerts(clean_db, health=[connector_health("CP1", 1, T0 + 30 * second, risk=0.99)])
    write_alerts(
        clean_db,
        health=[
            connector_health("CP1", 1, T0 + 60 * second, risk=0.1),
            connector_health("CP1", 2, T0, risk=0.6),
        ],
    )
    minute = T0.replace(second=0)
    assert _history(clean_db) == [
        ("CP1", 1, minute, 0.8, 0.5, T0 + 40 * second, 3),
        ("CP1", 1, minute + timedelta(minutes=1), 0.1, 0.1, T0 + 60 * second, 1),
        ("CP1", 2, minute, 0.6, 0.6, T0, 1),
    ]


def test_the_migration_downgrades_and_upgrades(pg_server: DatabaseServer) -> None:
    with fresh_database(pg_server, "chargeflow_test_risk_migration") as url:
        migrate(url)
        write_alerts(url, health=[connector_health("CP1", 1, T0, risk=0.4)])
        command.downgrade(alembic_config(url), "0025")
        with psycopg.connect(url) as db:
            tables = db.execute("SELECT to_regclass('connector_risk_1m')").fetchone()
        assert tables == (None,)
        write_alerts(url, health=[connector_health("CP1", 1, T0 + timedelta(minutes=1))])
        migrate(url)
        write_alerts(url, health=[connector_health("CP1", 1, T0 + timedelta(minutes=2))])
        assert [row[2] for row in _history(url)] == [T0.replace(second=0) + timedelta(minutes=2)]

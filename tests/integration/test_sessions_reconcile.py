"""store.session_reconcile against the real database: sessions the flow no longer
knows are closed (never left active, never two active on one connector), with the
figure the table holds and a quality that is never exact; replays change nothing."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from bus.sessions import ClosedBy
from chargeflow.stack import DatabaseServer
from flows.sessions.logic import SessionRow
from store.db import migrate
from store.session_reconcile import reconcile_active_sessions
from store.sessions import write_sessions_batch
from tests.support.sessions import T0, active, sample

pytestmark = pytest.mark.integration

H = timedelta(hours=1)
COLUMNS = (
    "transaction_id, status, closed_by, stopped_at, energy_wh, energy_source, quality,"
    " quality_reasons"
)


def sessions(db: psycopg.Connection[Any]) -> dict[str, tuple[Any, ...]]:
    rows = db.execute(f"SELECT {COLUMNS} FROM sessions ORDER BY transaction_id").fetchall()
    return {r[0]: tuple(r[1:]) for r in rows}


def outbox(db: psycopg.Connection[Any]) -> dict[str, dict[str, Any]]:
    return {
        p["transaction_id"]: p
        for (p,) in db.execute("SELECT payload FROM sessions_outbox").fetchall()
    }


def test_a_new_session_closes_the_stale_active_one_on_its_connector(
    db: psycopg.Connection[Any],
) -> None:
    # Left active by a flow whose state is gone: registers up to 10 min in.
    stale = active("1", energy_wh=500, last_register_wh=1_500, sample_count=1)
    write_sessions_batch(db, [stale], [sample(10, "1500")])
    # The flow starts afresh and sees a new session on the same connector.
    new = active("2", started_at=T0 + 2 * H)
    write_sessions_batch(db, [new], [])
    assert sessions(db) == {
        "1": (
            "closed",
            "next_start",
            T0 + timedelta(minutes=10),
            500,
            "station_register",
            "corrected",
            ["state_lost", "stop_missing"],
        ),
        "2": ("active", None, None, 0, "station_register", "exact", []),
    }
    assert outbox(db)["1"]["closed_by"] == "next_start"
    assert set(outbox(db)) == {"1"}
    # A replay of both from the start: the closed one stays closed, the new one active.
    before = sessions(db)
    write_sessions_batch(db, [stale], [sample(10, "1500")])
    write_sessions_batch(db, [new], [])
    assert sessions(db) == before


def test_the_schema_refuses_two_active_sessions_on_one_connector(
    db: psycopg.Connection[Any],
) -> None:
    write_sessions_batch(db, [active("1")], [])
    with pytest.raises(psycopg.errors.UniqueViolation):
        db.execute(
            "INSERT INTO sessions (session_id, charge_point_id, connector_id,"
            " transaction_id, status, started_at, meter_start_wh)"
            " VALUES (gen_random_uuid(), 'CP1', 2, '2', 'active', now(), 0)"
        )


def _sessions_in_every_state() -> list[SessionRow]:
    return [
        active("1", energy_wh=500, last_register_wh=1_500),  # a register figure so far
        active("2", connector_id=3, energy_wh=0),  # nothing after its start: no figure
        # Stopped; it only waited for its smart-meter reading.
        active("3", connector_id=4, stopped_at=T0 + H, meter_stop_wh=1_800, energy_wh=800),
        active(
            "4",
            connector_id=5,
            energy_wh=3_600,
            energy_source="power_integration",
            quality="estimated",
            quality_reasons=("register_missing",),
            meter_start_wh=None,
        ),
        replace(
            active("5", connector_id=6),
            status="closed",
            closed_by=ClosedBy.STOP,
            stopped_at=T0 + H,
            meter_stop_wh=2_000,
            energy_wh=1_000,
        ),
    ]


def _reconciled_sessions() -> dict[str, tuple[Any, ...]]:
    return {
        "1": (
            "closed",
            "reconciled",
            T0 + timedelta(minutes=20),
            500,
            "station_register",
            "corrected",
            ["state_lost", "stop_missing"],
        ),
        "2": (
            "closed",
            "reconciled",
            T0,
            None,
            None,
            "missing",
            ["state_lost", "stop_missing", "register_missing"],
        ),
        "3": ("closed", "stop", T0 + H, 800, "station_register", "corrected", ["state_lost"]),
        "4": (
            "closed",
            "reconciled",
            T0,
            3_600,
            "power_integration",
            "estimated",
            ["register_missing", "state_lost", "stop_missing"],
        ),
        "5": ("closed", "stop", T0 + H, 1_000, "station_register", "exact", []),
    }


def test_reconcile_closes_every_active_session_with_what_the_table_knows(
    db: psycopg.Connection[Any], clean_db: str
) -> None:
    write_sessions_batch(db, _sessions_in_every_state(), [sample(20, "1500")])
    closed = reconcile_active_sessions(clean_db)
    assert len(closed) == 4
    assert sessions(db) == _reconciled_sessions()
    assert set(outbox(db)) == {"1", "2", "3", "4", "5"}
    assert (outbox(db)["2"]["quality"], outbox(db)["2"]["energy_wh"]) == ("missing", None)
    assert reconcile_active_sessions(clean_db) == []  # nothing left active


def test_migration_0010_relabels_and_closes_what_it_finds(pg_server: DatabaseServer) -> None:
    name = f"chargeflow_test_m10_{uuid.uuid4().hex[:8]}"
    url = pg_server.create_database(name, exist_ok=False)
    try:
        migrate(url, "0009")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO sessions (session_id, charge_point_id, connector_id, transaction_id,"
                " status, started_at, meter_start_wh, energy_wh, energy_source, quality)"
                " VALUES (gen_random_uuid(), 'CP', 1, 'old', 'active', %(t)s, 0, 0, 'register',"
                "         'exact'),"
                "        (gen_random_uuid(), 'CP', 1, 'new', 'active', %(t1)s, 0, 0, 'register',"
                "         'exact'),"
                "        (gen_random_uuid(), 'CP', 2, 'none', 'closed', %(t)s, 0, NULL,"
                "         'register', 'corrected')",
                {"t": T0, "t1": T0 + H},
            )
        migrate(url)
        with psycopg.connect(url) as conn:
            got = sessions(conn)
        assert got == {
            "new": ("active", None, None, 0, "station_register", "exact", []),
            "none": ("closed", None, None, None, None, "missing", []),
            "old": (
                "closed",
                "next_start",
                T0,
                0,
                "station_register",
                "corrected",
                ["state_lost", "stop_missing"],
            ),
        }
    finally:
        pg_server.drop_database(name)

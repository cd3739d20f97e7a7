"""A 2.0.1 station that sends the same seqNo on every TransactionEvent (as a widely
used station simulator does), through the real gateway, broker, sessions flow and
PostgreSQL: the session closes with its energy, flagged ``seq_no_reused``."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest
from bytewax.testing import run_main

from bus.topics import Topics
from chargeflow.stack import EmbeddedBroker
from flows.sessions.dataflow import SessionsFlowConfig, build_flow
from ingest.gateway.server import Gateway
from store.id_tokens import add_id_tag
from tests.support.gateway import open_v201, register, rpc, wait_for_envelopes

pytestmark = pytest.mark.integration

T0, T1, T2 = "2026-01-05T10:00:00.000Z", "2026-01-05T10:20:00.000Z", "2026-01-05T10:40:00.000Z"


def event(kind: str, trigger: str, at: str, **extra: Any) -> dict[str, Any]:
    return {
        "eventType": kind,
        "timestamp": at,
        "triggerReason": trigger,
        "seqNo": 0,
        "transactionInfo": {"transactionId": "SIM-TX-1", **extra.pop("info", {})},
        **extra,
    }


def _transaction_all_with_seq_no_0() -> list[tuple[str, dict[str, Any]]]:
    """(unique id, TransactionEvent payload) of a started, updated and ended transaction."""
    return [
        (
            "started",
            event(
                "Started",
                "Authorized",
                T0,
                evse={"id": 1, "connectorId": 1},
                idToken={"idToken": "TOKEN-1", "type": "ISO14443"},
                meterValue=register(10_000, "Transaction.Begin", T0),
            ),
        ),
        (
            "updated",
            event(
                "Updated",
                "MeterValuePeriodic",
                T1,
                meterValue=register(13_000, "Sample.Periodic", T1),
            ),
        ),
        (
            "ended",
            event(
                "Ended",
                "EVDeparted",
                T2,
                info={"stoppedReason": "EVDisconnected"},
                meterValue=register(16_500, "Transaction.End", T2),
            ),
        ),
    ]


def _check_the_session_closed_with_its_energy(db: psycopg.Connection[Any]) -> None:
    row = db.execute(
        "SELECT status, closed_by, stopped_at, meter_start_wh, meter_stop_wh, energy_wh,"
        " energy_source, quality, quality_reasons, stop_reason, sample_count FROM sessions"
        " WHERE charge_point_id = 'CS-SEQ0'"
    ).fetchall()
    assert len(row) == 1, row
    (
        status,
        closed_by,
        stopped_at,
        start_wh,
        stop_wh,
        energy,
        source,
        quality,
        reasons,
        stop_reason,
        samples,
    ) = row[0]
    assert (status, closed_by, stop_reason) == ("closed", "stop", "EVDisconnected")
    assert stopped_at.isoformat() == "2026-01-05T10:40:00+00:00"
    assert (start_wh, stop_wh, energy, source) == (10_000, 16_500, 6_500, "station_register")
    assert quality == "corrected"
    assert "seq_no_reused" in reasons
    assert samples == 3


async def test_started_updated_ended_all_with_seq_no_0_close_with_their_energy(
    broker: EmbeddedBroker,
    gateway: Gateway,
    clean_db: str,
    topics: Topics,
    db: psycopg.Connection[Any],
) -> None:
    await asyncio.to_thread(add_id_tag, clean_db, "TOKEN-1")
    ws = await open_v201(gateway, "CS-SEQ0")
    try:
        for uid, payload in _transaction_all_with_seq_no_0():
            frame = await rpc(ws, "TransactionEvent", payload, uid)
            assert frame[0] == 3, frame  # answered: the station will never resend it
    finally:
        await ws.close()
    await asyncio.to_thread(wait_for_envelopes, broker, topics.ocpp_events, 3)

    config = SessionsFlowConfig(
        brokers=[broker.bootstrap], database_url=clean_db, topics=topics, tail=False
    )
    await asyncio.to_thread(run_main, build_flow(config))

    _check_the_session_closed_with_its_energy(db)
    # The closed session is in the outbox for sessions.closed.
    assert db.execute("SELECT count(*) FROM sessions_outbox").fetchone() == (1,)

"""The faults flow behind the real gateway: a station that reports a ground fault over
OCPP 1.6J, then healthy again, gets one alert in the database and on the ``alerts`` topic,
opened at the station's own timestamp and resolved at the healthy report's; the
gateway's envelopes (calls, connection events) and the flow's own messages on its input
topics are no dead letters."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bench.common import flow_env, start_flow, stop_flow
from bus.admin import read_topic
from bus.alerts import AlertStatus, decode_fault_alert
from bus.topics import Topics
from chargeflow.stack import EmbeddedBroker
from ingest.gateway.server import Gateway
from tests.support.builders import iso
from tests.support.gateway import open_station, rpc
from tests.support.polling import apoll

pytestmark = pytest.mark.integration

FAULTS_FLOW = "flows.faults.dataflow:from_env()"
FAULTED_AT = datetime(2026, 7, 1, 12, 0, 5, tzinfo=UTC)
HEALTHY_AT = datetime(2026, 7, 1, 12, 20, 0, tzinfo=UTC)


def stored(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(
            "SELECT alert_id, station_id, connector_id, kind, status, first_seen, resolved_at"
            " FROM alerts"
        ).fetchall()


def fault_alerts_on_topic(broker: EmbeddedBroker, topics: Topics) -> list[tuple[str, str]]:
    return [
        (alert.alert_id, alert.status.value)
        for msg in read_topic(broker.bootstrap, topics.alerts)
        if b'"fault.alert"' in (value := msg.value() or b"")
        for alert in [decode_fault_alert(value)]
    ]


async def test_a_ground_fault_reported_through_the_gateway_opens_and_resolves_one_alert(
    gateway: Gateway, broker: EmbeddedBroker, topics: Topics, clean_db: str, tmp_path: Path
) -> None:
    log = tmp_path / "flow.log"
    flow = start_flow(
        flow_env(broker.bootstrap, topics, clean_db, tail=True), log=log, flow=FAULTS_FLOW
    )
    try:
        ws = await open_station(gateway, "CP-GF-1")
        for at, code, state in (
            (FAULTED_AT, "GroundFailure", "Faulted"),
            (FAULTED_AT.replace(minute=5), "GroundFailure", "Faulted"),  # the same fault
            (HEALTHY_AT, "NoError", "Available"),
        ):
            payload = {"connectorId": 1, "errorCode": code, "status": state, "timestamp": iso(at)}
            assert (await rpc(ws, "StatusNotification", payload))[2] == {}
        await ws.close()
        [row] = await apoll(
            lambda: stored(clean_db),
            lambda rows: len(rows) == 1 and rows[0][4] == "resolved",
            60,
            "the ground fault resolved",
        )
        alert_id = row[0]
        assert row[1:] == ("CP-GF-1", 1, "ground_fault", "resolved", FAULTED_AT, HEALTHY_AT)
        published = await apoll(
            lambda: fault_alerts_on_topic(broker, topics),
            lambda got: len(got) == 2,
            30,
            "the open and resolved versions on the alerts topic",
        )
        assert published == [(alert_id, AlertStatus.OPEN.value), (alert_id, "resolved")]
    finally:
        rc = stop_flow(flow)
    assert rc == 0, log.read_text()[-3000:]
    assert list(read_topic(broker.bootstrap, topics.deadletter)) == []

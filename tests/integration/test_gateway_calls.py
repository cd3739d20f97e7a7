"""The gateway against the real broker and database: every 1.6 action answered and
published as an envelope on ocpp.events before the answer, with its normalised form."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from websockets.asyncio.client import ClientConnection, connect

from bus.admin import read_topic
from bus.envelope import Envelope, Kind, decode_envelope
from bus.normalized import ConnectorStatus, MeterSample, TransactionEnd, TransactionStart
from bus.topics import Topics
from chargeflow.stack import EmbeddedBroker
from ingest.gateway.config import GatewayConfig
from ingest.gateway.server import Gateway
from store.registry import add_id_tag, provision_station
from tests.conftest import poll_until

pytestmark = pytest.mark.integration

NOW = "2026-01-05T10:00:00.000Z"


def gateway_config(
    broker: EmbeddedBroker, database_url: str, topics: Topics, **overrides: Any
) -> GatewayConfig:
    """Tests also check every CALLRESULT the gateway builds against its schema, and
    leave the test process's garbage collector alone (no freeze per gateway)."""
    overrides.setdefault("validate_responses", True)
    overrides.setdefault("gc_young_threshold", 0)
    return GatewayConfig(
        kafka_bootstrap=broker.bootstrap, database_url=database_url, topics=topics, **overrides
    )


@pytest.fixture
async def gateway(broker: EmbeddedBroker, clean_db: str, topics: Topics) -> AsyncIterator[Gateway]:
    async with Gateway(gateway_config(broker, clean_db, topics)) as gw:
        yield gw


STATION_PASSWORD = "test-station-password-1"


def basic_auth(cp_id: str, password: str = STATION_PASSWORD) -> dict[str, str]:
    token = base64.b64encode(f"{cp_id}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def provision(gw: Gateway, cp_id: str, password: str = STATION_PASSWORD) -> None:
    """Stations must be provisioned (with a password) before they may connect."""
    await asyncio.to_thread(provision_station, gw.config.database_url, cp_id, password=password)


async def open_station(
    gw: Gateway, cp_id: str, subprotocols: tuple[str, ...] = ("ocpp1.6",)
) -> ClientConnection:
    await provision(gw, cp_id)
    return await connect(
        f"{gw.url}/{cp_id}",
        subprotocols=list(subprotocols),  # type: ignore[arg-type]
        additional_headers=basic_auth(cp_id),
    )


async def rpc(
    ws: ClientConnection, action: str, payload: dict[str, Any], unique_id: str | None = None
) -> list[Any]:
    """Send a CALL and return the answer frame (CALLRESULT or CALLERROR)."""
    uid = unique_id or uuid.uuid4().hex[:20]
    await ws.send(json.dumps([2, uid, action, payload]))
    return await receive(ws, uid)


async def receive(ws: ClientConnection, unique_id: str) -> list[Any]:
    async with asyncio.timeout(20):
        while True:
            frame = json.loads(await ws.recv())
            if frame[1] == unique_id:
                return list(frame)


def envelopes(
    broker: EmbeddedBroker, topic: str, kind: Kind | None = Kind.OCPP_CALL
) -> list[Envelope]:
    """Envelopes of one kind (default: CALLs, not connection events); None = all."""
    got = [decode_envelope(m.value()) for m in read_topic(broker.bootstrap, topic)]
    return [e for e in got if kind is None or e.kind == kind]


def wait_for_envelopes(broker: EmbeddedBroker, topic: str, count: int) -> list[Envelope]:
    return poll_until(
        lambda: envelopes(broker, topic),
        lambda e: len(e) >= count,
        20,
        f"{count} envelopes on {topic}",
    )


async def test_all_seven_actions_are_answered_and_published(
    gateway: Gateway, broker: EmbeddedBroker, topics: Topics, db: psycopg.Connection[Any]
) -> None:
    add_id_tag(gateway.config.database_url, "TAG-OK", parent_id_tag="FLEET-1")
    ws = await open_station(gateway, "CP-ALL")
    try:
        boot = await rpc(
            ws,
            "BootNotification",
            {
                "chargePointVendor": "Acme",
                "chargePointModel": "AC22",
                "chargePointSerialNumber": "SN-9",
                "firmwareVersion": "1.2.3",
            },
            "u-boot",
        )
        assert boot[0] == 3
        assert boot[2]["status"] == "Accepted"
        assert boot[2]["interval"] == 300
        datetime.fromisoformat(boot[2]["currentTime"])

        hb = await rpc(ws, "Heartbeat", {}, "u-hb")
        assert hb[0] == 3
        assert "currentTime" in hb[2]

        status = await rpc(
            ws,
            "StatusNotification",
            {"connectorId": 1, "errorCode": "NoError", "status": "Preparing", "timestamp": NOW},
        )
        assert status == [3, status[1], {}]

        auth = await rpc(ws, "Authorize", {"idTag": "TAG-OK"})
        assert auth[2] == {"idTagInfo": {"status": "Accepted", "parentIdTag": "FLEET-1"}}

        start = await rpc(
            ws,
            "StartTransaction",
            {
                "connectorId": 1,
                "idTag": "TAG-OK",
                "meterStart": 1_000_000,
                "timestamp": "2026-01-05T10:00:01Z",
            },
            "u-start",
        )
        assert start[0] == 3
        tx = start[2]["transactionId"]
        assert isinstance(tx, int)
        assert start[2]["idTagInfo"]["status"] == "Accepted"

        mv = await rpc(
            ws,
            "MeterValues",
            {
                "connectorId": 1,
                "transactionId": tx,
                "meterValue": [
                    {
                        "timestamp": "2026-01-05T10:00:30Z",
                        "sampledValue": [
                            {
                                "value": "1000100",
                                "measurand": "Energy.Active.Import.Register",
                                "unit": "Wh",
                            }
                        ],
                    },
                    {
                        "timestamp": "2026-01-05T10:01:00Z",
                        "sampledValue": [
                            {
                                "value": "1000200",
                                "measurand": "Energy.Active.Import.Register",
                                "unit": "Wh",
                            }
                        ],
                    },
                ],
            },
        )
        assert mv[0] == 3
        assert mv[2] == {}

        stop = await rpc(
            ws,
            "StopTransaction",
            {
                "transactionId": tx,
                "meterStop": 1_005_000,
                "timestamp": "2026-01-05T10:30:00Z",
                "idTag": "TAG-OK",
                "reason": "Local",
            },
            "u-stop",
        )
        assert stop[2] == {"idTagInfo": {"status": "Accepted", "parentIdTag": "FLEET-1"}}
        stop_no_tag = await rpc(
            ws,
            "StopTransaction",
            {"transactionId": tx, "meterStop": 1_005_000, "timestamp": "2026-01-05T10:30:00Z"},
        )
        assert stop_no_tag[2] == {}
    finally:
        await ws.close()

    got = wait_for_envelopes(broker, topics.ocpp_events, 8)
    assert [e.action for e in got] == [
        "BootNotification",
        "Heartbeat",
        "StatusNotification",
        "Authorize",
        "StartTransaction",
        "MeterValues",
        "StopTransaction",
        "StopTransaction",
    ]  # one station: one partition, ordered
    assert len({e.message_id for e in got}) == 8
    by_uid = {e.unique_id: e for e in got}
    assert by_uid["u-start"].response == start[2]
    assert by_uid["u-start"].payload["meterStart"] == 1_000_000
    assert by_uid["u-start"].measured_at == datetime(2026, 1, 5, 10, 0, 1, tzinfo=UTC)
    assert by_uid["u-stop"].response == stop[2]
    assert by_uid["u-boot"].response == boot[2]
    assert by_uid["u-hb"].measured_at == by_uid["u-hb"].received_at
    mv_env = next(e for e in got if e.action == "MeterValues")
    assert mv_env.measured_at == datetime(2026, 1, 5, 10, 1, tzinfo=UTC)
    for env in got:
        assert env.charge_point_id == "CP-ALL"
        assert env.ocpp_version == "1.6"
    messages = list(read_topic(broker.bootstrap, topics.ocpp_events))
    assert {m.key() for m in messages} == {b"CP-ALL"}
    # Normalised facts next to the raw payload.
    start_facts = by_uid["u-start"].normalized
    assert start_facts is not None
    assert isinstance(start_facts[0], TransactionStart)
    assert (start_facts[0].transaction_id, start_facts[0].meter_start_wh) == (str(tx), 1_000_000)
    assert [f.value for f in mv_env.normalized or [] if isinstance(f, MeterSample)] == [
        1_000_100,
        1_000_200,
    ]
    stop_facts = by_uid["u-stop"].normalized
    assert stop_facts is not None
    assert isinstance(stop_facts[0], TransactionEnd)
    assert (stop_facts[0].meter_stop_wh, stop_facts[0].stopped_reason) == (1_005_000, "Local")
    assert by_uid["u-boot"].normalized == []

    # Registry side effects.
    station = db.execute(
        "SELECT vendor, model, serial_number, firmware_version, ocpp_version, last_seen_at "
        "FROM stations WHERE charge_point_id = 'CP-ALL'"
    ).fetchone()
    assert station is not None
    assert station[:5] == ("Acme", "AC22", "SN-9", "1.2.3", "1.6")
    assert station[5] is not None
    conn = db.execute(
        "SELECT status, error_code, status_at FROM connectors "
        "WHERE charge_point_id = 'CP-ALL' AND connector_id = 1"
    ).fetchone()
    assert conn == ("Preparing", "NoError", datetime(2026, 1, 5, 10, tzinfo=UTC))


async def test_authorize_statuses(gateway: Gateway, db: psycopg.Connection[Any]) -> None:
    url = gateway.config.database_url
    future = datetime.now(UTC) + timedelta(days=30)
    add_id_tag(url, "T-ACCEPTED", expiry_date=future)
    add_id_tag(url, "T-BLOCKED", status="Blocked")
    add_id_tag(url, "T-EXPIRED", status="Expired")
    add_id_tag(url, "T-PAST", expiry_date=datetime.now(UTC) - timedelta(days=1))
    ws = await open_station(gateway, "CP-AUTH")
    try:

        async def status_of(tag: str) -> dict[str, Any]:
            frame = await rpc(ws, "Authorize", {"idTag": tag})
            assert frame[0] == 3, frame
            return dict(frame[2]["idTagInfo"])

        accepted = await status_of("T-ACCEPTED")
        assert accepted["status"] == "Accepted"
        assert datetime.fromisoformat(accepted["expiryDate"]) == future.replace(
            microsecond=future.microsecond // 1000 * 1000
        )
        assert (await status_of("T-BLOCKED")) == {"status": "Blocked"}
        assert (await status_of("T-EXPIRED")) == {"status": "Expired"}
        assert (await status_of("T-PAST")) == {"status": "Expired"}
        assert (await status_of("T-UNKNOWN")) == {"status": "Invalid"}
        start = await rpc(
            ws,
            "StartTransaction",
            {"connectorId": 1, "idTag": "T-BLOCKED", "meterStart": 5, "timestamp": NOW},
        )
        assert start[2]["idTagInfo"] == {"status": "Blocked"}
    finally:
        await ws.close()


async def test_transaction_ids_come_from_the_database_sequence_across_gateways(
    broker: EmbeddedBroker, clean_db: str, topics: Topics, db: psycopg.Connection[Any]
) -> None:
    start = {"connectorId": 1, "idTag": "ANY", "meterStart": 0, "timestamp": NOW}
    ids: list[int] = []
    async with (
        Gateway(gateway_config(broker, clean_db, topics)) as gw1,
        Gateway(gateway_config(broker, clean_db, topics)) as gw2,
    ):
        assert gw1.port != gw2.port
        ws1 = await open_station(gw1, "CP-R1")
        ws2 = await open_station(gw2, "CP-R2")
        try:
            for _ in range(3):
                for ws in (ws1, ws2):
                    frame = await rpc(ws, "StartTransaction", start)
                    ids.append(frame[2]["transactionId"])
        finally:
            await ws1.close()
            await ws2.close()
    assert len(set(ids)) == 6
    last = db.execute("SELECT last_value FROM ocpp_transaction_id_seq").fetchone()
    assert last is not None
    assert max(ids) <= last[0]
    assert sorted(ids) == ids  # drawn one after another from the one sequence


async def test_metrics_and_health_are_served_on_the_gateway_port(gateway: Gateway) -> None:
    import urllib.request

    ws = await open_station(gateway, "CP-MET")
    try:
        await rpc(ws, "Heartbeat", {})
        base = f"http://127.0.0.1:{gateway.port}"

        def fetch(path: str) -> str:
            with urllib.request.urlopen(base + path, timeout=5) as resp:
                return str(resp.read().decode())

        assert (await asyncio.to_thread(fetch, "/health")).strip() == "ok"
        text = await asyncio.to_thread(fetch, "/metrics")
        assert 'chargeflow_gateway_calls_total{action="Heartbeat",outcome="ok"} 1.0' in text
        assert "chargeflow_gateway_connected_stations 1.0" in text
        assert "chargeflow_gateway_publish_seconds_count" in text
    finally:
        await ws.close()


CHARGE_POINT_ERROR_CODES = (
    "ConnectorLockFailure",
    "EVCommunicationError",
    "GroundFailure",
    "HighTemperature",
    "InternalError",
    "LocalListConflict",
    "NoError",
    "OtherError",
    "OverCurrentFailure",
    "PowerMeterFailure",
    "PowerSwitchFailure",
    "ReaderFailure",
    "ResetFailure",
    "UnderVoltage",
    "OverVoltage",
    "WeakSignal",
)
CHARGE_POINT_STATUSES = (
    "Available",
    "Preparing",
    "Charging",
    "SuspendedEVSE",
    "SuspendedEV",
    "Finishing",
    "Reserved",
    "Unavailable",
    "Faulted",
)


async def test_remaining_16_actions_error_codes_and_transaction_data(
    broker: EmbeddedBroker, clean_db: str, topics: Topics
) -> None:
    cfg = gateway_config(
        broker, clean_db, topics, data_transfer_vendor_ids=frozenset({"org.chargeflow"})
    )
    sent: list[tuple[str, dict[str, Any]]] = []
    async with Gateway(cfg) as gw:
        ws = await open_station(gw, "CP-MORE")
        try:

            async def call(uid: str, action: str, payload: dict[str, Any]) -> dict[str, Any]:
                frame = await rpc(ws, action, payload, uid)
                assert frame[0] == 3, frame
                sent.append((uid, frame[2]))
                return dict(frame[2])

            assert await call(
                "dt-known",
                "DataTransfer",
                {"vendorId": "org.chargeflow", "messageId": "Ping", "data": "x"},
            ) == {"status": "Accepted"}
            assert await call("dt-unknown", "DataTransfer", {"vendorId": "com.other"}) == {
                "status": "UnknownVendorId"
            }
            assert await call("diag", "DiagnosticsStatusNotification", {"status": "Uploaded"}) == {}
            assert await call("fw", "FirmwareStatusNotification", {"status": "Installed"}) == {}
            for i, code in enumerate(CHARGE_POINT_ERROR_CODES):
                status = CHARGE_POINT_STATUSES[i % len(CHARGE_POINT_STATUSES)]
                assert (
                    await call(
                        f"st-{code}",
                        "StatusNotification",
                        {
                            "connectorId": 2,
                            "errorCode": code,
                            "status": status,
                            "timestamp": NOW,
                            "info": "i",
                            "vendorId": "v",
                            "vendorErrorCode": "E1",
                        },
                    )
                    == {}
                )
            assert (
                await call(
                    "stop",
                    "StopTransaction",
                    {
                        "transactionId": 77,
                        "meterStop": 2_000,
                        "timestamp": "2026-01-05T11:00:00Z",
                        "reason": "EVDisconnected",
                        "transactionData": [
                            {
                                "timestamp": "2026-01-05T10:59:00Z",
                                "sampledValue": [
                                    {"value": "1990", "context": "Transaction.End"},
                                    {
                                        "value": "7.2",
                                        "measurand": "Power.Active.Import",
                                        "unit": "kW",
                                        "phase": "L1",
                                    },
                                    {"value": "0A1B", "format": "SignedData"},
                                ],
                            }
                        ],
                    },
                )
                == {}
            )
        finally:
            await ws.close()

    got = wait_for_envelopes(broker, topics.ocpp_events, len(sent))
    by_uid = {e.unique_id: e for e in got}
    assert [e.unique_id for e in got] == [uid for uid, _ in sent]
    for uid, response in sent:
        assert by_uid[uid].response == response
        assert by_uid[uid].ocpp_version == "1.6"
    for i, code in enumerate(CHARGE_POINT_ERROR_CODES):
        facts = by_uid[f"st-{code}"].normalized
        assert facts is not None
        assert len(facts) == 1
        assert isinstance(facts[0], ConnectorStatus)
        status = CHARGE_POINT_STATUSES[i % len(CHARGE_POINT_STATUSES)]
        assert (facts[0].error_code, facts[0].status, facts[0].evse_id) == (code, status, 2)
    stop = by_uid["stop"]
    assert stop.payload["transactionData"][0]["sampledValue"][2]["format"] == "SignedData"
    facts = stop.normalized
    assert facts is not None
    assert isinstance(facts[0], TransactionEnd)
    assert (facts[0].transaction_id, facts[0].meter_stop_wh, facts[0].stopped_reason) == (
        "77",
        2_000,
        "EVDisconnected",
    )
    samples = [f for f in facts if isinstance(f, MeterSample)]
    assert [
        (s.measurand, s.context, s.unit, s.value, s.phase, s.transaction_id) for s in samples
    ] == [
        ("Energy.Active.Import.Register", "Transaction.End", "Wh", 1990, None, "77"),
        ("Power.Active.Import", "Sample.Periodic", "kW", Decimal("7.2"), "L1", "77"),
    ]

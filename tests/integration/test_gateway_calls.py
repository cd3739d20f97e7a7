"""The gateway against the real broker and database: every 1.6 action answered and
published as an envelope on ocpp.events before the answer, with its normalised form."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from websockets.asyncio.client import ClientConnection

from bus.admin import read_topic
from bus.normalized import (
    Authorization,
    ConnectorStatus,
    MeterSample,
    SecurityEvent,
    StationBoot,
    TransactionEnd,
    TransactionStart,
)
from bus.times import parse_rfc3339
from bus.topics import Topics
from chargeflow.stack import EmbeddedBroker
from ingest.gateway.server import Gateway
from store.id_tokens import add_id_tag
from tests.support.gateway import NOW, gateway_config, open_station, rpc, wait_for_envelopes

pytestmark = pytest.mark.integration


def _register_reading(timestamp: str, value: str) -> dict[str, Any]:
    return {
        "timestamp": timestamp,
        "sampledValue": [
            {"value": value, "measurand": "Energy.Active.Import.Register", "unit": "Wh"}
        ],
    }


async def _boot_heartbeat_status_and_authorise(ws: ClientConnection) -> list[Any]:
    """Returns the BootNotification answer frame."""
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
    return boot


async def _start_meter_and_stop(ws: ClientConnection) -> tuple[list[Any], list[Any], int]:
    """Returns the StartTransaction and StopTransaction answer frames and the transaction id."""
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

    readings = [
        _register_reading("2026-01-05T10:00:30Z", "1000100"),
        _register_reading("2026-01-05T10:01:00Z", "1000200"),
    ]
    mv = await rpc(
        ws, "MeterValues", {"connectorId": 1, "transactionId": tx, "meterValue": readings}
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
    return start, stop, tx


def _check_the_eight_envelopes(
    got: list[Any], boot: list[Any], start: list[Any], stop: list[Any]
) -> None:
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


def _check_the_normalised_facts(got: list[Any], tx: int) -> None:
    by_uid = {e.unique_id: e for e in got}
    mv_env = next(e for e in got if e.action == "MeterValues")
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
    [boot] = by_uid["u-boot"].normalized or []
    assert isinstance(boot, StationBoot)
    assert (boot.vendor, boot.model, boot.firmware_version, boot.reason) == (
        "Acme",
        "AC22",
        "1.2.3",
        None,
    )
    auth = next(e for e in got if e.action == "Authorize")
    assert auth.normalized == [
        Authorization(
            charge_point_id="CP-ALL",
            id_tag="TAG-OK",
            auth_status="Accepted",
            timestamp=auth.received_at,
        )
    ]


def _check_the_registry_rows(db: psycopg.Connection[Any]) -> None:
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


async def test_all_seven_actions_are_answered_and_published(
    gateway: Gateway, broker: EmbeddedBroker, topics: Topics, db: psycopg.Connection[Any]
) -> None:
    add_id_tag(gateway.config.database_url, "TAG-OK", parent_id_tag="FLEET-1")
    ws = await open_station(gateway, "CP-ALL")
    try:
        boot = await _boot_heartbeat_status_and_authorise(ws)
        start, stop, tx = await _start_meter_and_stop(ws)
    finally:
        await ws.close()

    got = wait_for_envelopes(broker, topics.ocpp_events, 8)
    _check_the_eight_envelopes(got, boot, start, stop)
    messages = list(read_topic(broker.bootstrap, topics.ocpp_events))
    assert {m.key() for m in messages} == {b"CP-ALL"}
    # Normalised facts next to the raw payload.
    _check_the_normalised_facts(got, tx)
    _check_the_registry_rows(db)


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


STOP_WITH_TRANSACTION_DATA = {
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
}


async def _send_the_remaining_actions(gw: Gateway) -> list[tuple[str, dict[str, Any]]]:
    """Returns (unique id, answer payload) of every call, in the order sent."""
    sent: list[tuple[str, dict[str, Any]]] = []
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
        security = {"type": "TamperDetectionActivated", "timestamp": NOW, "techInfo": "lid"}
        assert await call("sec", "SecurityEventNotification", security) == {}
        for i, code in enumerate(CHARGE_POINT_ERROR_CODES):
            status = CHARGE_POINT_STATUSES[i % len(CHARGE_POINT_STATUSES)]
            notification = {
                "connectorId": 2,
                "errorCode": code,
                "status": status,
                "timestamp": NOW,
                "info": "i",
                "vendorId": "v",
                "vendorErrorCode": "E1",
            }
            assert await call(f"st-{code}", "StatusNotification", notification) == {}
        assert await call("stop", "StopTransaction", STOP_WITH_TRANSACTION_DATA) == {}
    finally:
        await ws.close()
    return sent


def _check_the_stop_with_transaction_data(stop: Any) -> None:
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


async def test_remaining_16_actions_error_codes_and_transaction_data(
    broker: EmbeddedBroker, clean_db: str, topics: Topics
) -> None:
    cfg = gateway_config(
        broker, clean_db, topics, data_transfer_vendor_ids=frozenset({"org.chargeflow"})
    )
    async with Gateway(cfg) as gw:
        sent = await _send_the_remaining_actions(gw)

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
    _check_the_stop_with_transaction_data(by_uid["stop"])
    security = by_uid["sec"]
    assert security.measured_at == parse_rfc3339(NOW)
    assert security.normalized == [
        SecurityEvent(
            charge_point_id="CP-MORE",
            event_type="TamperDetectionActivated",
            tech_info="lid",
            timestamp=parse_rfc3339(NOW),
        )
    ]

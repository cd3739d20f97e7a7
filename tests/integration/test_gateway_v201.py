"""OCPP 2.0.1 against the real gateway, broker and database: every handled action is
answered and published (raw payload + normalised facts) before the answer; bad
input gets the 2.0.1 error codes; subprotocol negotiation."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from websockets.asyncio.client import ClientConnection

from bus.normalized import (
    Authorization,
    ChargingNeeds,
    ConnectorStatus,
    DeviceEvent,
    MeterSample,
    SecurityEvent,
    StationBoot,
    StationHeartbeat,
    TransactionEnd,
    TransactionStart,
    TransactionUpdate,
)
from bus.times import parse_rfc3339
from bus.topics import Topics
from chargeflow.stack import EmbeddedBroker
from ingest.gateway.server import Gateway
from store.id_tokens import add_id_tag
from tests.support.gateway import (
    gateway_config,
    open_station,
    open_v201,
    register,
    rpc,
    wait_for_envelopes,
)

pytestmark = pytest.mark.integration

T0 = "2026-01-05T10:00:00.000Z"


def tx_event(
    event: str, seq: int, trigger: str, *, state: str | None = None, **extra: Any
) -> dict[str, Any]:
    info: dict[str, Any] = {"transactionId": "TX-201-A"}
    if state is not None:
        info["chargingState"] = state
    info.update(extra.pop("info", {}))
    return {
        "eventType": event,
        "timestamp": T0,
        "triggerReason": trigger,
        "seqNo": seq,
        "transactionInfo": info,
        **extra,
    }


Call = Callable[[str, str, dict[str, Any]], Awaitable[dict[str, Any]]]


def _occupied(timestamp: str = T0) -> dict[str, Any]:
    return {"timestamp": timestamp, "connectorStatus": "Occupied", "evseId": 1, "connectorId": 1}


async def _boot_and_authorise(call: Call) -> None:
    boot = await call(
        "boot",
        "BootNotification",
        {
            "chargingStation": {
                "vendorName": "Acme",
                "model": "DC50",
                "serialNumber": "SN-201",
                "firmwareVersion": "2.0",
            },
            "reason": "PowerUp",
        },
    )
    assert boot["status"] == "Accepted"
    assert boot["interval"] == 300
    datetime.fromisoformat(boot["currentTime"])
    assert "currentTime" in await call("hb", "Heartbeat", {})
    assert await call("st-occ", "StatusNotification", _occupied()) == {}
    assert await call(
        "auth", "Authorize", {"idToken": {"idToken": "TOKEN-OK", "type": "ISO14443"}}
    ) == {
        "idTokenInfo": {
            "status": "Accepted",
            "groupIdToken": {"idToken": "GROUP-1", "type": "Central"},
        }
    }


async def _run_a_transaction(call: Call) -> None:
    started = await call(
        "tx-start",
        "TransactionEvent",
        tx_event(
            "Started",
            0,
            "Authorized",
            state="Charging",
            evse={"id": 1, "connectorId": 1},
            idToken={"idToken": "TOKEN-OK", "type": "ISO14443"},
            meterValue=register(1_000_000, "Transaction.Begin"),
        ),
    )
    assert started["idTokenInfo"]["status"] == "Accepted"
    assert await call("st-charging", "StatusNotification", _occupied()) == {}
    updated = tx_event(
        "Updated",
        1,
        "MeterValuePeriodic",
        state="SuspendedEV",
        offline=True,
        meterValue=register(1_000.5, "Sample.Periodic", unit="kWh"),
    )
    assert await call("tx-upd", "TransactionEvent", updated) == {}
    ended = tx_event(
        "Ended",
        2,
        "EVDeparted",
        state="Idle",
        info={"stoppedReason": "EVDisconnected"},
        meterValue=register(1_002_500, "Transaction.End"),
    )
    assert await call("tx-end", "TransactionEvent", ended) == {}
    assert await call("st-finishing", "StatusNotification", _occupied()) == {}


async def _send_meter_values_and_notifications(call: Call) -> None:
    sampled = [
        {
            "value": 230.1,
            "measurand": "Voltage",
            "phase": "L1-N",
            "unitOfMeasure": {"unit": "V"},
        },
        {
            "value": 7,
            "measurand": "Power.Active.Import",
            "unitOfMeasure": {"unit": "W", "multiplier": 3},
        },
    ]
    meter_values = {
        "evseId": 1,
        "meterValue": [{"timestamp": "2026-01-05T10:05:00Z", "sampledValue": sampled}],
    }
    assert await call("mv", "MeterValues", meter_values) == {}
    event_data = {
        "eventId": 1,
        "timestamp": T0,
        "trigger": "Alerting",
        "actualValue": "95",
        "eventNotificationType": "HardWiredMonitor",
        "component": {"name": "Connector", "evse": {"id": 1, "connectorId": 1}},
        "variable": {"name": "Temperature"},
    }
    notify_event = {"generatedAt": "2026-01-05T10:06:00Z", "seqNo": 0, "eventData": [event_data]}
    assert await call("event", "NotifyEvent", notify_event) == {}
    report_data = {
        "component": {"name": "ChargingStation"},
        "variable": {"name": "Model"},
        "variableAttribute": [{"value": "DC50"}],
    }
    report = {"requestId": 1, "generatedAt": T0, "seqNo": 0, "reportData": [report_data]}
    assert await call("report", "NotifyReport", report) == {}
    needs = {
        "evseId": 1,
        "chargingNeeds": {
            "requestedEnergyTransfer": "AC_three_phase",
            "departureTime": "2026-01-05T17:30:00Z",
            "acChargingParameters": {
                "energyAmount": 24000,
                "evMinCurrent": 6,
                "evMaxCurrent": 16,
                "evMaxVoltage": 400,
            },
        },
    }
    assert await call("needs", "NotifyEVChargingNeeds", needs) == {"status": "Processing"}


async def _send_status_reports_and_data_transfers(call: Call) -> None:
    security = {"type": "FirmwareUpdated", "timestamp": T0}
    assert await call("sec", "SecurityEventNotification", security) == {}
    firmware = {"status": "Installed", "requestId": 3}
    assert await call("fw", "FirmwareStatusNotification", firmware) == {}
    assert await call("log", "LogStatusNotification", {"status": "Uploaded"}) == {}
    assert await call(
        "dt-known",
        "DataTransfer",
        {"vendorId": "org.chargeflow", "messageId": "Ping", "data": {"a": 1}},
    ) == {"status": "Accepted"}
    assert await call("dt-unknown", "DataTransfer", {"vendorId": "com.other"}) == {
        "status": "UnknownVendorId"
    }
    available = {
        "timestamp": "2026-01-05T10:07:00Z",
        "connectorStatus": "Available",
        "evseId": 1,
        "connectorId": 1,
    }
    assert await call("st-free", "StatusNotification", available) == {}


async def _drive_every_201_action(gw: Gateway) -> dict[str | None, list[Any]]:
    """Sends every handled action from one station; returns the answer frames by unique id."""
    ws = await open_v201(gw, "CS-201")
    answers: dict[str | None, list[Any]] = {}

    async def call(uid: str, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        frame = await rpc(ws, action, payload, uid)
        assert frame[0] == 3, frame
        answers[uid] = frame
        return dict(frame[2])

    try:
        await _boot_and_authorise(call)
        await _run_a_transaction(call)
        await _send_meter_values_and_notifications(call)
        await _send_status_reports_and_data_transfers(call)
    finally:
        await ws.close()
    return answers


def _check_envelopes(by_uid: dict[str | None, Any], answers: dict[str | None, list[Any]]) -> None:
    for uid, env in by_uid.items():
        assert env.ocpp_version == "2.0.1"
        assert env.charge_point_id == "CS-201"
        assert env.response == answers[uid][2]
        assert env.normalized is not None
    assert by_uid["tx-start"].payload["transactionInfo"]["transactionId"] == "TX-201-A"
    assert by_uid["tx-start"].measured_at == datetime(2026, 1, 5, 10, tzinfo=UTC)
    assert by_uid["event"].measured_at == datetime(2026, 1, 5, 10, 6, tzinfo=UTC)
    assert by_uid["mv"].measured_at == datetime(2026, 1, 5, 10, 5, tzinfo=UTC)


def _check_normalised_statuses(by_uid: dict[str | None, Any]) -> None:
    def statuses(uid: str) -> list[str]:
        return [f.status for f in by_uid[uid].normalized or [] if isinstance(f, ConnectorStatus)]

    assert statuses("st-occ") == ["Preparing"]  # occupied, no transaction yet
    assert statuses("st-charging") == ["Charging"]
    assert statuses("st-finishing") == ["Finishing"]  # the transaction ended
    assert statuses("st-free") == ["Available"]


def _check_normalised_transaction(by_uid: dict[str | None, Any]) -> None:
    start = by_uid["tx-start"].normalized
    assert start is not None
    assert isinstance(start[0], TransactionStart)
    assert (
        start[0].transaction_id,
        start[0].evse_id,
        start[0].connector_id,
        start[0].id_tag,
        start[0].meter_start_wh,
        start[0].seq_no,
        start[0].auth_status,
    ) == ("TX-201-A", 1, 1, "TOKEN-OK", Decimal(1_000_000), 0, "Accepted")
    upd = by_uid["tx-upd"].normalized
    assert upd is not None
    assert isinstance(upd[0], TransactionUpdate)
    assert (upd[0].seq_no, upd[0].offline, upd[0].charging_state, upd[0].trigger_reason) == (
        1,
        True,
        "SuspendedEV",
        "MeterValuePeriodic",
    )
    assert isinstance(upd[1], MeterSample)
    assert (upd[1].value, upd[1].unit, upd[1].transaction_id) == (
        Decimal("1000.5"),
        "kWh",
        "TX-201-A",
    )
    end = by_uid["tx-end"].normalized
    assert end is not None
    assert isinstance(end[0], TransactionEnd)
    assert (end[0].meter_stop_wh, end[0].stopped_reason, end[0].seq_no) == (
        Decimal(1_002_500),
        "EVDisconnected",
        2,
    )


def _check_normalised_samples_and_the_rest(by_uid: dict[str | None, Any]) -> None:
    mv = by_uid["mv"].normalized
    assert mv is not None
    assert [
        (s.measurand, s.phase, s.value, s.unit_multiplier, s.evse_id)
        for s in mv
        if isinstance(s, MeterSample)
    ] == [("Voltage", "L1-N", Decimal("230.1"), 0, 1), ("Power.Active.Import", None, 7, 3, 1)]
    [boot] = by_uid["boot"].normalized
    assert isinstance(boot, StationBoot)
    assert (boot.vendor, boot.model, boot.firmware_version, boot.reason) == (
        "Acme",
        "DC50",
        "2.0",
        "PowerUp",
    )
    assert boot.timestamp == by_uid["boot"].received_at
    [beat] = by_uid["hb"].normalized
    assert isinstance(beat, StationHeartbeat)
    assert beat.timestamp == by_uid["hb"].received_at
    [event] = by_uid["event"].normalized
    assert isinstance(event, DeviceEvent)
    assert (event.component, event.variable, event.actual_value, event.evse_id) == (
        "Connector",
        "Temperature",
        "95",
        1,
    )
    [auth] = by_uid["auth"].normalized
    assert isinstance(auth, Authorization)
    assert (auth.id_tag, auth.id_token_type, auth.auth_status) == (
        "TOKEN-OK",
        "ISO14443",
        "Accepted",
    )
    assert auth.timestamp == by_uid["auth"].received_at  # Authorize carries no station time
    [security] = by_uid["sec"].normalized
    assert isinstance(security, SecurityEvent)
    assert (security.event_type, security.timestamp) == ("FirmwareUpdated", parse_rfc3339(T0))
    [needs] = by_uid["needs"].normalized
    assert isinstance(needs, ChargingNeeds)
    assert (
        needs.evse_id,
        needs.requested_energy_transfer,
        needs.departure,
        needs.energy_wh,
        needs.ev_min_current_a,
        needs.ev_max_current_a,
        needs.state_of_charge,
    ) == (1, "AC_three_phase", datetime(2026, 1, 5, 17, 30, tzinfo=UTC), 24000, 6, 16, None)
    assert needs.timestamp == by_uid["needs"].received_at  # the message carries no time
    for uid in ("report", "fw", "log", "dt-known"):
        assert by_uid[uid].normalized == []


def _check_station_and_connector_rows(db: psycopg.Connection[Any]) -> None:
    station = db.execute(
        "SELECT vendor, model, serial_number, firmware_version, ocpp_version "
        "FROM stations WHERE charge_point_id = 'CS-201'"
    ).fetchone()
    assert station == ("Acme", "DC50", "SN-201", "2.0", "2.0.1")
    conn = db.execute(
        "SELECT status, error_code, status_at FROM connectors "
        "WHERE charge_point_id = 'CS-201' AND connector_id = 1"
    ).fetchone()
    assert conn == ("Available", "NoError", datetime(2026, 1, 5, 10, 7, tzinfo=UTC))


async def test_every_201_action_is_answered_published_and_normalised(
    broker: EmbeddedBroker, clean_db: str, topics: Topics, db: psycopg.Connection[Any]
) -> None:
    cfg = gateway_config(
        broker, clean_db, topics, data_transfer_vendor_ids=frozenset({"org.chargeflow"})
    )
    add_id_tag(clean_db, "TOKEN-OK", parent_id_tag="GROUP-1")
    async with Gateway(cfg) as gw:
        answers = await _drive_every_201_action(gw)

    got = wait_for_envelopes(broker, topics.ocpp_events, len(answers))
    assert [e.unique_id for e in got] == list(answers)  # one station: ordered
    by_uid = {e.unique_id: e for e in got}
    _check_envelopes(by_uid, answers)
    _check_normalised_statuses(by_uid)
    _check_normalised_transaction(by_uid)
    _check_normalised_samples_and_the_rest(by_uid)
    _check_station_and_connector_rows(db)


async def test_201_authorisation_statuses(gateway: Gateway, db: psycopg.Connection[Any]) -> None:
    url = gateway.config.database_url
    future = datetime.now(UTC) + timedelta(days=30)
    add_id_tag(url, "T-ACCEPTED", expiry_date=future)
    add_id_tag(url, "T-BLOCKED", status="Blocked")
    add_id_tag(url, "T-EXPIRED", status="Expired")
    ws = await open_v201(gateway, "CS-AUTH")
    try:

        async def info(token: str, kind: str = "ISO14443") -> dict[str, Any]:
            frame = await rpc(ws, "Authorize", {"idToken": {"idToken": token, "type": kind}})
            assert frame[0] == 3, frame
            return dict(frame[2]["idTokenInfo"])

        accepted = await info("T-ACCEPTED")
        assert accepted["status"] == "Accepted"
        assert datetime.fromisoformat(accepted["cacheExpiryDateTime"]) == future.replace(
            microsecond=future.microsecond // 1000 * 1000
        )
        assert await info("T-BLOCKED") == {"status": "Blocked"}
        assert await info("T-EXPIRED") == {"status": "Expired"}
        assert await info("T-UNKNOWN", "Central") == {"status": "Invalid"}
        assert await info("", "NoAuthorization") == {"status": "Accepted"}
        # TransactionEvent: idTokenInfo only when the event carries an idToken.
        blocked = await rpc(
            ws,
            "TransactionEvent",
            tx_event("Started", 0, "Authorized", idToken={"idToken": "T-BLOCKED", "type": "Local"}),
        )
        assert blocked[2] == {"idTokenInfo": {"status": "Blocked"}}
        without = await rpc(ws, "TransactionEvent", tx_event("Updated", 1, "Trigger"))
        assert without[2] == {}
    finally:
        await ws.close()


async def raw(ws: ClientConnection, text: str) -> list[Any]:
    await ws.send(text)
    async with asyncio.timeout(10):
        return list(json.loads(await ws.recv()))


async def test_201_bad_input_gets_201_error_codes_and_the_station_keeps_being_served(
    gateway: Gateway, broker: EmbeddedBroker, topics: Topics
) -> None:
    cases = [
        ('[2, "m-1", "Heartbeat", {', "-1", "RpcFrameworkError"),
        ("this is not json", "-1", "RpcFrameworkError"),
        ('{"not": "an array"}', "-1", "RpcFrameworkError"),
        ('[2, 17, "Heartbeat", {}]', "-1", "RpcFrameworkError"),
        ('[2, "m-2", "Heartbeat"]', "m-2", "RpcFrameworkError"),
        ('[7, "m-3", "Heartbeat", {}]', "m-3", "MessageTypeNotSupported"),
        ('[2, "m-4", "Heartbeat", []]', "m-4", "FormatViolation"),
        ('[2, "m-5", "FlyToTheMoon", {}]', "m-5", "NotImplemented"),
        ('[2, "m-6", "Reset", {"type": "Immediate"}]', "m-6", "NotSupported"),
        ('[2, "m-7", "Authorize", {}]', "m-7", "OccurrenceConstraintViolation"),
        (
            '[2, "m-8", "StatusNotification", {"timestamp": "2026-01-05T10:00:00Z",'
            ' "connectorStatus": "Available", "evseId": "one", "connectorId": 1}]',
            "m-8",
            "TypeConstraintViolation",
        ),
        ('[2, "m-9", "Heartbeat", {"extra": 1}]', "m-9", "FormatViolation"),
        (
            '[2, "m-10", "StatusNotification", {"timestamp": "2026-01-05T10:00:00Z",'
            ' "connectorStatus": "Sleeping", "evseId": 1, "connectorId": 1}]',
            "m-10",
            "PropertyConstraintViolation",
        ),
        (
            '[2, "m-11", "SecurityEventNotification", {"type": "X", "timestamp": "now"}]',
            "m-11",
            "TypeConstraintViolation",
        ),
        (
            '[2, "m-12", "TransactionEvent", {"eventType": "Started", "timestamp":'
            ' "2026-01-05T10:00:00Z", "triggerReason": "Authorized", "seqNo": 0,'
            ' "transactionInfo": {}}]',
            "m-12",
            "OccurrenceConstraintViolation",
        ),
        (
            '[2, "m-13", "Authorize", {"idToken": {"idToken": "' + "x" * 37 + '",'
            ' "type": "Local"}}]',
            "m-13",
            "TypeConstraintViolation",
        ),
    ]
    bad = await open_v201(gateway, "CS-BAD")
    try:
        for frame, uid, code in cases:
            answer = await raw(bad, frame)
            assert answer[0] == 4, (frame, answer)
            assert answer[1:3] == [uid, code], (frame, answer)
            assert isinstance(answer[3], str)
            assert isinstance(answer[4], dict)
        assert (await rpc(bad, "Heartbeat", {}))[0] == 3
    finally:
        await bad.close()
    got = wait_for_envelopes(broker, topics.ocpp_events, 1)
    assert [e.action for e in got] == ["Heartbeat"]


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [
        (["ocpp2.0.1"], "ocpp2.0.1"),
        (["ocpp1.6"], "ocpp1.6"),
        (["ocpp1.6", "ocpp2.0.1"], "ocpp2.0.1"),
        (["ocpp2.0.1", "ocpp1.6"], "ocpp2.0.1"),
        (["ocpp2.1", "ocpp1.6"], "ocpp1.6"),
    ],
)
async def test_subprotocol_negotiation_prefers_201(
    gateway: Gateway, offered: list[str], chosen: str
) -> None:
    ws = await open_station(gateway, "CS-NEG", tuple(offered))
    try:
        assert ws.subprotocol == chosen
        # The connection speaks the chosen version: a 2.0.1-only action tells them apart.
        frame = await rpc(ws, "TransactionEvent", tx_event("Updated", 0, "Trigger"))
        assert frame[0] == (3 if chosen == "ocpp2.0.1" else 4)
        if chosen == "ocpp1.6":
            assert frame[2] == "NotImplemented"
    finally:
        await ws.close()

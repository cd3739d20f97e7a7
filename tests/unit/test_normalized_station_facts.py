"""The diagnostics facts of bus.normalized: 2.0.1 NotifyEvent entries, heartbeats, boots
and the 1.6 vendor fields of StatusNotification; every payload is checked against the
official schema first, so these are payloads a station may really send."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from bus.envelope import Envelope, Kind, decode_envelope, encode_envelope, normalized_facts
from bus.normalized import (
    ConnectorStatus,
    DeviceEvent,
    Normalized,
    StationBoot,
    StationHeartbeat,
    decode_facts,
    encode_facts,
    normalize_v16,
    normalize_v201,
)
from ingest.gateway.schemas import SchemaSet

T = datetime(2026, 1, 5, 10, tzinfo=UTC)
RECEIVED = T + timedelta(seconds=7)
V16, V201 = SchemaSet("1.6"), SchemaSet("2.0.1")


def v16(action: str, payload: dict[str, Any]) -> list[Normalized]:
    assert V16.validate(action, payload) is None, payload
    return normalize_v16("CP", action, payload, {}, RECEIVED)


def v201(action: str, payload: dict[str, Any]) -> list[Normalized]:
    assert V201.validate(action, payload) is None, payload
    return normalize_v201("CS", action, payload, {}, RECEIVED)


NOTIFY_EVENT: dict[str, Any] = {
    "generatedAt": "2026-01-05T10:00:05Z",
    "seqNo": 0,
    "eventData": [
        {
            "eventId": 17,
            "timestamp": "2026-01-05T10:00:00Z",
            "trigger": "Alerting",
            "cause": 16,
            "actualValue": "105",
            "techCode": "CX019",
            "techInfo": "cable over temperature, stopping",
            "cleared": False,
            "transactionId": "tx-9",
            "variableMonitoringId": 4,
            "eventNotificationType": "CustomMonitor",
            "component": {
                "name": "CableTemperatureSensor",
                "instance": "cable1",
                "evse": {"id": 2, "connectorId": 1},
            },
            "variable": {"name": "Temperature", "instance": "max"},
        },
        {
            "eventId": 18,
            "timestamp": "2026-01-05T10:01:00Z",
            "trigger": "Delta",
            "actualValue": "false",
            "cleared": True,
            "eventNotificationType": "HardWiredNotification",
            "component": {"name": "ChargingStation"},
            "variable": {"name": "Problem"},
        },
    ],
}


def test_notify_event_gives_one_device_event_per_entry_with_every_field() -> None:
    facts = v201("NotifyEvent", NOTIFY_EVENT)
    assert facts == [
        DeviceEvent(
            charge_point_id="CS",
            event_id=17,
            timestamp=T,
            trigger="Alerting",
            actual_value="105",
            component="CableTemperatureSensor",
            component_instance="cable1",
            evse_id=2,
            connector_id=1,
            variable="Temperature",
            variable_instance="max",
            tech_code="CX019",
            tech_info="cable over temperature, stopping",
            cleared=False,
            cause=16,
            notification_type="CustomMonitor",
            transaction_id="tx-9",
            variable_monitoring_id=4,
        ),
        DeviceEvent(
            charge_point_id="CS",
            event_id=18,
            timestamp=T + timedelta(minutes=1),
            trigger="Delta",
            actual_value="false",
            component="ChargingStation",
            evse_id=0,  # no evse: the whole station
            connector_id=None,
            variable="Problem",
            cleared=True,
            notification_type="HardWiredNotification",
        ),
    ]


def test_notify_event_evse_without_connector_and_absent_cleared() -> None:
    [event] = v201(
        "NotifyEvent",
        {
            "generatedAt": "2026-01-05T10:00:05Z",
            "seqNo": 3,
            "tbc": False,
            "eventData": [
                {
                    "eventId": 1,
                    "timestamp": "2026-01-05T10:00:00Z",
                    "trigger": "Periodic",
                    "actualValue": "41.5",
                    "eventNotificationType": "PreconfiguredMonitor",
                    "component": {"name": "TemperatureSensor", "evse": {"id": 1}},
                    "variable": {"name": "Temperature"},
                }
            ],
        },
    )
    assert isinstance(event, DeviceEvent)
    assert (event.evse_id, event.connector_id, event.cleared, event.tech_code) == (
        1,
        None,
        False,
        None,
    )


def test_notify_event_entries_that_lack_what_the_schema_requires_are_left_out() -> None:
    # The gateway validates first; the normaliser still never raises on odd input.
    payload = {
        "eventData": [
            {"eventId": 1, "component": {}, "variable": {"name": "Problem"}},
            {"eventId": "x", "component": {"name": "C"}, "variable": {"name": "Problem"}},
            "not an object",
        ]
    }
    assert normalize_v201("CS", "NotifyEvent", payload, {}, RECEIVED) == []
    assert normalize_v201("CS", "NotifyEvent", {"eventData": None}, {}, RECEIVED) == []


def test_heartbeat_of_both_versions_is_stamped_with_the_time_received() -> None:
    expected = [StationHeartbeat(charge_point_id="CP", timestamp=RECEIVED)]
    assert v16("Heartbeat", {}) == expected
    assert v201("Heartbeat", {}) == [StationHeartbeat(charge_point_id="CS", timestamp=RECEIVED)]


def test_boot_notification_of_both_versions() -> None:
    assert v16(
        "BootNotification",
        {"chargePointVendor": "Acme", "chargePointModel": "AC22", "firmwareVersion": "1.2.3"},
    ) == [
        StationBoot(
            charge_point_id="CP",
            vendor="Acme",
            model="AC22",
            firmware_version="1.2.3",
            reason=None,
            timestamp=RECEIVED,
        )
    ]
    assert v201(
        "BootNotification",
        {"reason": "Watchdog", "chargingStation": {"vendorName": "Acme", "model": "DC50"}},
    ) == [
        StationBoot(
            charge_point_id="CS",
            vendor="Acme",
            model="DC50",
            firmware_version=None,
            reason="Watchdog",
            timestamp=RECEIVED,
        )
    ]


def test_v16_status_keeps_the_vendor_fields() -> None:
    [status] = v16(
        "StatusNotification",
        {
            "connectorId": 1,
            "errorCode": "OtherError",
            "status": "Faulted",
            "timestamp": "2026-01-05T10:00:00Z",
            "info": "105C",
            "vendorId": "https://chargex.inl.gov",
            "vendorErrorCode": "CX019",
        },
    )
    assert isinstance(status, ConnectorStatus)
    assert (status.vendor_id, status.vendor_error_code, status.info) == (
        "https://chargex.inl.gov",
        "CX019",
        "105C",
    )
    [plain] = v16(
        "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Available"}
    )
    assert isinstance(plain, ConnectorStatus)
    assert (plain.vendor_id, plain.vendor_error_code, plain.info) == (None, None, None)


def test_v201_status_has_no_vendor_fields() -> None:
    [status] = v201(
        "StatusNotification",
        {
            "timestamp": "2026-01-05T10:00:00Z",
            "connectorStatus": "Faulted",
            "evseId": 1,
            "connectorId": 1,
        },
    )
    assert isinstance(status, ConnectorStatus)
    assert (status.vendor_id, status.vendor_error_code, status.info) == (None, None, None)


def test_a_status_fact_written_before_the_vendor_fields_decodes() -> None:
    old = (
        b'[{"type":"connector_status","charge_point_id":"CP","evse_id":1,"connector_id":1,'
        b'"status":"Faulted","ocpp_status":"Faulted","error_code":"GroundFailure",'
        b'"timestamp":"2026-01-05T10:00:00Z"}]'
    )
    [status] = decode_facts(old)
    assert isinstance(status, ConnectorStatus)
    assert (status.error_code, status.vendor_error_code) == ("GroundFailure", None)


def test_new_facts_round_trip_through_the_envelope() -> None:
    facts = [
        *v201("Heartbeat", {}),
        *v201(
            "BootNotification",
            {"reason": "PowerUp", "chargingStation": {"vendorName": "A", "model": "B"}},
        ),
        *v201(
            "NotifyEvent",
            {
                "generatedAt": "2026-01-05T10:00:05Z",
                "seqNo": 0,
                "eventData": [
                    {
                        "eventId": 5,
                        "timestamp": "2026-01-05T10:00:00Z",
                        "trigger": "Alerting",
                        "actualValue": "true",
                        "eventNotificationType": "HardWiredNotification",
                        "component": {"name": "RCD", "evse": {"id": 1}},
                        "variable": {"name": "Tripped"},
                    }
                ],
            },
        ),
    ]
    assert decode_facts(encode_facts(facts)) == facts
    env = Envelope(
        message_id="m",
        charge_point_id="CS",
        received_at=RECEIVED,
        measured_at=RECEIVED,
        kind=Kind.OCPP_CALL,
        ocpp_version="2.0.1",
        action="NotifyEvent",
        payload={},
        normalized=facts,
    )
    data = encode_envelope(env)
    assert b'"type":"device_event"' in data
    assert b'"type":"station_boot"' in data
    assert decode_envelope(data) == env


def test_envelopes_without_facts_are_normalised_from_the_payload() -> None:
    env = Envelope(
        message_id="m",
        charge_point_id="CP",
        received_at=RECEIVED,
        measured_at=RECEIVED,
        kind=Kind.OCPP_CALL,
        ocpp_version="1.6",
        action="Heartbeat",
        payload={},
    )
    assert normalized_facts(env) == [StationHeartbeat(charge_point_id="CP", timestamp=RECEIVED)]
    assert msgspec.json.decode(encode_facts(normalized_facts(env)))[0]["type"] == (
        "station_heartbeat"
    )


def test_the_sessions_load_and_status_flows_ignore_the_new_facts() -> None:
    """Their parsers pick facts by type: an envelope with only diagnostics facts gives
    the load and status flows nothing and the sessions flow a message without facts."""
    from flows.load.parse import decode_event as load_decode
    from flows.load.parse import parse_envelope as load_parse
    from flows.sessions.events import StationMessage
    from flows.sessions.events import decode_event as sessions_decode
    from flows.sessions.events import parse_event as sessions_parse
    from flows.status.parse import parse_envelope as status_parse

    boot = {"reason": "PowerUp", "chargingStation": {"vendorName": "A", "model": "B"}}
    for action, payload in (("Heartbeat", {}), ("BootNotification", boot)):
        env = Envelope(
            message_id="m",
            charge_point_id="CS",
            received_at=RECEIVED,
            measured_at=RECEIVED,
            kind=Kind.OCPP_CALL,
            ocpp_version="2.0.1",
            action=action,
            payload=payload,
            normalized=v201(action, payload),
        )
        assert env.normalized
        assert load_parse(env) is None
        assert load_decode(encode_envelope(env)) is None
        assert status_parse(env) is None
        for message in (sessions_parse(env), sessions_decode(encode_envelope(env))):
            assert isinstance(message, StationMessage)
            assert message.facts == ()

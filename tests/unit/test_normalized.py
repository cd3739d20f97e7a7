"""The version-independent form (bus.normalized), 2.0.1 framing/schema error codes and
the simulator's 2.0.1 payloads; pure, no I/O."""

from __future__ import annotations

import doctest
import random
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from ocpp.charge_point import remove_nones, serialize_as_dict, snake_to_camel_case

import bus.normalized
from bus.envelope import Envelope, Kind, decode_envelope, encode_envelope
from bus.normalized import (
    Authorization,
    ConnectorStatus,
    EvseStates,
    MeterSample,
    SecurityEvent,
    SignedMeterValue,
    TransactionEnd,
    TransactionStart,
    TransactionUpdate,
    decode_facts,
    encode_facts,
    normalize_v16,
    normalize_v201,
    register_wh,
    status_from_v201,
)
from ingest.gateway import framing, v16, v201
from ingest.gateway.schemas import SchemaSet
from ingest.simulator.config import FleetConfig
from ingest.simulator.dialect import Reading, Sample
from ingest.simulator.v16 import V16Dialect
from ingest.simulator.v201 import V201Dialect

T = datetime(2026, 1, 5, 10, tzinfo=UTC)
T_ISO = "2026-01-05T10:00:00Z"


def test_doctests() -> None:
    result = doctest.testmod(bus.normalized)
    assert result.attempted > 5
    assert result.failed == 0


# --------------------------------------------------------------------------- 1.6


def test_v16_status_is_the_common_set_and_keeps_the_error_code() -> None:
    [fact] = normalize_v16(
        "CP",
        "StatusNotification",
        {"connectorId": 0, "errorCode": "HighTemperature", "status": "Faulted"},
        {},
        T,
    )
    assert fact == ConnectorStatus(
        charge_point_id="CP",
        evse_id=0,
        connector_id=0,
        status="Faulted",
        ocpp_status="Faulted",
        error_code="HighTemperature",
        timestamp=T,
    )


V16_SAMPLED_VALUES: list[dict[str, Any]] = [
    {"value": "100"},
    {
        "value": "12.30",
        "measurand": "Current.Import",
        "phase": "L2",
        "unit": "A",
        "context": "Sample.Clock",
        "location": "Inlet",
    },
    {"value": "n/a", "measurand": "Voltage"},
    {"value": "ABCD", "format": "SignedData"},
    {"value": "3", "measurand": "Power.Active.Import"},
]


def _sample_of_transaction_5(**fields: Any) -> MeterSample:
    """A sample of CP's connector 1 in transaction 5 at T."""
    return MeterSample(
        charge_point_id="CP",
        evse_id=1,
        connector_id=1,
        transaction_id="5",
        timestamp=T,
        **fields,
    )


def test_v16_meter_values_fill_spec_defaults_and_skip_what_is_not_a_number() -> None:
    *facts, signed = normalize_v16(
        "CP",
        "MeterValues",
        {
            "connectorId": 1,
            "transactionId": 5,
            "meterValue": [{"timestamp": T_ISO, "sampledValue": V16_SAMPLED_VALUES}],
        },
        {},
        T,
    )
    assert facts == [
        _sample_of_transaction_5(
            measurand="Energy.Active.Import.Register",
            unit="Wh",
            context="Sample.Periodic",
            location="Outlet",
            value=Decimal("100"),
        ),
        _sample_of_transaction_5(
            measurand="Current.Import",
            phase="L2",
            unit="A",
            context="Sample.Clock",
            location="Inlet",
            value=Decimal("12.30"),
        ),
        _sample_of_transaction_5(
            measurand="Power.Active.Import",
            unit="",
            context="Sample.Periodic",
            location="Outlet",
            value=Decimal("3"),
        ),
    ]
    # The SignedData value is no sample but its own fact (test_signed_meter_values.py).
    assert isinstance(signed, SignedMeterValue)
    assert signed.signed_data == "ABCD"


def test_v16_transactions() -> None:
    [start] = normalize_v16(
        "CP",
        "StartTransaction",
        {
            "connectorId": 1,
            "idTag": "TAG",
            "meterStart": 10,
            "timestamp": T_ISO,
            "reservationId": 3,
        },
        {"transactionId": 9, "idTagInfo": {"status": "Blocked"}},
        T,
    )
    assert start == TransactionStart(
        charge_point_id="CP",
        transaction_id="9",
        evse_id=1,
        connector_id=1,
        id_tag="TAG",
        auth_status="Blocked",
        meter_start_wh=Decimal(10),
        timestamp=T,
        reservation_id=3,
    )
    assert normalize_v16("CP", "StartTransaction", {"connectorId": 1}, {}, T) == []
    [stop] = normalize_v16(
        "CP", "StopTransaction", {"transactionId": 9, "meterStop": 20, "timestamp": T_ISO}, {}, T
    )
    assert isinstance(stop, TransactionEnd)
    assert (stop.stopped_reason, stop.meter_stop_wh, stop.id_tag, stop.auth_status) == (
        "Local",
        Decimal(20),
        None,
        None,
    )


# --------------------------------------------------------------------------- 2.0.1


@pytest.mark.parametrize(
    ("status", "state", "common"),
    [
        ("Available", None, "Available"),
        ("Reserved", "Charging", "Reserved"),
        ("Unavailable", None, "Unavailable"),
        ("Faulted", None, "Faulted"),
        ("Occupied", None, "Preparing"),
        ("Occupied", "EVConnected", "Preparing"),
        ("Occupied", "Idle", "Preparing"),
        ("Occupied", "Charging", "Charging"),
        ("Occupied", "SuspendedEV", "SuspendedEV"),
        ("Occupied", "SuspendedEVSE", "SuspendedEVSE"),
        ("Occupied", "Ended", "Finishing"),
    ],
)
def test_v201_status_mapping(status: str, state: str | None, common: str) -> None:
    assert status_from_v201(status, state) == common


def _event(event: str, seq: int, **extra: Any) -> dict[str, Any]:
    return {
        "eventType": event,
        "timestamp": T_ISO,
        "triggerReason": "Trigger",
        "seqNo": seq,
        "transactionInfo": {"transactionId": "tx", **extra.pop("info", {})},
        **extra,
    }


def test_v201_transaction_lifecycle_drives_the_occupied_refinement() -> None:
    states = EvseStates()

    def feed(action: str, payload: dict[str, Any]) -> list[Any]:
        facts = normalize_v201("CS", action, payload, {}, T, states)
        states.apply(facts)
        return facts

    occupied = {"timestamp": T_ISO, "connectorStatus": "Occupied", "evseId": 2, "connectorId": 1}
    assert feed("StatusNotification", occupied)[0].status == "Preparing"
    [start] = feed(
        "TransactionEvent",
        _event(
            "Started",
            0,
            evse={"id": 2, "connectorId": 1},
            info={"chargingState": "Charging"},
            idToken={"idToken": "TOK", "type": "KeyCode"},
        ),
    )
    assert isinstance(start, TransactionStart)
    assert (start.evse_id, start.id_tag, start.id_token_type, start.meter_start_wh) == (
        2,
        "TOK",
        "KeyCode",
        None,
    )
    assert feed("StatusNotification", occupied)[0].status == "Charging"
    # Updates name no EVSE; the state follows the transaction id.
    [upd] = feed("TransactionEvent", _event("Updated", 1, info={"chargingState": "SuspendedEVSE"}))
    assert isinstance(upd, TransactionUpdate)
    assert upd.evse_id is None
    assert feed("StatusNotification", occupied)[0].status == "SuspendedEVSE"
    [end] = feed("TransactionEvent", _event("Ended", 2))
    assert isinstance(end, TransactionEnd)
    assert end.stopped_reason == "Local"
    assert feed("StatusNotification", occupied)[0].status == "Finishing"
    feed("StatusNotification", {**occupied, "connectorStatus": "Available"})
    assert feed("StatusNotification", occupied)[0].status == "Preparing"


def test_v201_registers_in_wh_from_the_transaction_contexts() -> None:
    def sv(value: Any, context: str, **more: Any) -> dict[str, Any]:
        return {"value": value, "context": context, **more}

    payload = _event(
        "Ended",
        5,
        meterValue=[
            {
                "timestamp": "2026-01-05T10:00:00Z",
                "sampledValue": [
                    sv(1, "Transaction.End", unitOfMeasure={"unit": "kWh", "multiplier": 1}),
                    sv(5, "Transaction.End", phase="L1"),
                    sv(99, "Sample.Periodic"),
                ],
            },
            {
                "timestamp": "2026-01-05T10:00:01Z",
                "sampledValue": [sv(12.5, "Transaction.End", unitOfMeasure={"unit": "kWh"})],
            },
        ],
    )
    facts = normalize_v201("CS", "TransactionEvent", payload, {}, T)
    end = facts[0]
    assert isinstance(end, TransactionEnd)
    assert end.meter_stop_wh == Decimal("12500.0")  # the latest Transaction.End register
    samples = [f for f in facts if isinstance(f, MeterSample)]
    assert len(samples) == 4
    assert register_wh(samples, "Transaction.End", last=False) == Decimal(10_000)
    assert register_wh(samples, "Transaction.Begin", last=False) is None
    assert samples[0].unit_multiplier == 1


def test_facts_round_trip_through_the_envelope_and_old_envelopes_still_decode() -> None:
    facts = normalize_v201(
        "CS",
        "TransactionEvent",
        _event(
            "Started",
            0,
            meterValue=[
                {
                    "timestamp": T_ISO,
                    "sampledValue": [{"value": 0.1, "context": "Transaction.Begin"}],
                }
            ],
        ),
        {},
        T,
    )
    env = Envelope(
        message_id="m",
        charge_point_id="CS",
        received_at=T,
        measured_at=T,
        kind=Kind.OCPP_CALL,
        ocpp_version="2.0.1",
        action="TransactionEvent",
        payload={},
        normalized=facts,
    )
    data = encode_envelope(env)
    assert b'"type":"transaction_start"' in data
    assert b'"value":"0.1"' in data  # Decimal as a JSON string
    assert decode_envelope(data) == env
    old = Envelope(
        message_id="m",
        charge_point_id="CS",
        received_at=T,
        measured_at=T,
        kind=Kind.OCPP_CALL,
        payload={},
    )
    assert decode_envelope(encode_envelope(old)).normalized is None


# --------------------------------------------------------------------------- 2.0.1 errors


@pytest.mark.parametrize(
    ("raw", "uid", "code"),
    [
        ('[2,"m-1","Heartbeat",{', "-1", "RpcFrameworkError"),
        (b"\xff", "-1", "RpcFrameworkError"),
        ("[]", "-1", "RpcFrameworkError"),
        ('[2,"' + "i" * 37 + '","A",{}]', "-1", "RpcFrameworkError"),
        ('["2","x","A",{}]', "x", "RpcFrameworkError"),
        ('[2,"x","A"]', "x", "RpcFrameworkError"),
        ('[2,"x",5,{}]', "x", "RpcFrameworkError"),
        ('[9,"x","A",{}]', "x", "MessageTypeNotSupported"),
        ('[2,"x","A",[]]', "x", "FormatViolation"),
    ],
)
def test_v201_frame_errors(raw: str | bytes, uid: str, code: str) -> None:
    frame = framing.parse_frame(raw)
    assert isinstance(frame, framing.FrameError)
    assert v201.frame_error_answer(frame) == (uid, code)


def test_v201_schema_codes() -> None:
    schemas = SchemaSet("2.0.1")
    assert schemas.warm() > 100
    ok = {"timestamp": T_ISO, "connectorStatus": "Available", "evseId": 1, "connectorId": 1}
    assert schemas.validate("StatusNotification", ok) is None
    cases = {
        "OccurrenceConstraintViolation": {k: v for k, v in ok.items() if k != "evseId"},
        "TypeConstraintViolation": {**ok, "evseId": "1"},
        "PropertyConstraintViolation": {**ok, "connectorStatus": "Occupado"},
        "FormatViolation": {**ok, "bogus": 1},
    }
    for code, payload in cases.items():
        violation = schemas.validate("StatusNotification", payload)
        assert violation is not None
        assert violation.code == code
    bad_time = schemas.validate("StatusNotification", {**ok, "timestamp": "2026-01-05"})
    assert bad_time is not None
    assert bad_time.code == "TypeConstraintViolation"


# --------------------------------------------------------------------------- simulator


def _wire(payload: Any) -> dict[str, Any]:
    return dict(snake_to_camel_case(remove_nones(serialize_as_dict(payload))))


def test_simulator_201_payloads_are_schema_valid_and_carry_the_registers() -> None:
    schemas = SchemaSet("2.0.1")
    d = V201Dialect()
    tx = d.new_transaction_id(random.Random(1).getrandbits(128))
    assert tx is not None
    assert len(tx) == 36
    sample = Sample(
        T,
        (
            Reading("Energy.Active.Import.Register", 1500, "Wh", "Outlet"),
            Reading("Power.Active.Import", 7400.04, "W", "Outlet"),
            Reading("SoC", 55.4, "Percent", "EV", decimals=0),
        ),
    )
    payloads = [
        d.boot(vendor="v", model="m", serial="s", firmware="f"),
        d.heartbeat(),
        d.status(1, "Preparing", T),
        d.authorize("TAG"),
        d.start(connector_id=1, id_tag="TAG", register_wh=1000, at=T, transaction_id=tx),
        d.meter(connector_id=1, transaction_id=tx, sample=sample, charging=True),
        d.stop(
            connector_id=1,
            transaction_id=tx,
            id_tag="TAG",
            register_wh=2000,
            at=T,
            reason="Local",
            last=sample,
        ),
    ]
    for p in payloads:
        assert schemas.validate(type(p).__name__, _wire(p)) is None, p
    assert d.status(1, "Charging", T) is None
    assert d.status(0, "Available", T) is None
    start, upd, end = (_wire(p) for p in payloads[4:])
    assert [e["seqNo"] for e in (start, upd, end)] == [0, 1, 2]
    facts = [
        f for e in (start, upd, end) for f in normalize_v201("CS", "TransactionEvent", e, {}, T)
    ]
    assert isinstance(facts[0], TransactionStart)
    assert facts[0].meter_start_wh == 1000
    [ended] = [f for f in facts if isinstance(f, TransactionEnd)]
    assert (ended.meter_stop_wh, ended.id_tag, ended.stopped_reason) == (2000, "TAG", "Local")
    soc = [f for f in facts if isinstance(f, MeterSample) and f.measurand == "SoC"]
    assert soc[0].value == 55


def test_simulator_16_payloads_are_schema_valid() -> None:
    schemas = SchemaSet("1.6")
    d = V16Dialect()
    sample = Sample(
        T,
        (
            Reading("Energy.Active.Import.Register", 1500, "Wh", "Outlet"),
            Reading("Current.Import", 10.123, "A", "Outlet", decimals=2),
        ),
    )
    for p in (
        d.status(0, "Available", T),
        d.authorize("T"),
        d.start(connector_id=1, id_tag="T", register_wh=1, at=T, transaction_id=None),
        d.meter(connector_id=1, transaction_id=4, sample=sample, charging=True),
        d.stop(
            connector_id=1,
            transaction_id=4,
            id_tag="T",
            register_wh=2,
            at=T,
            reason="Local",
            last=sample,
        ),
    ):
        assert schemas.validate(type(p).__name__, _wire(p)) is None, p
    wire = _wire(d.meter(connector_id=1, transaction_id=4, sample=sample, charging=True))
    assert [sv["value"] for sv in wire["meterValue"][0]["sampledValue"]] == ["1500", "10.12"]


def test_fleet_versions_cycle_and_are_checked() -> None:
    cfg = FleetConfig(stations=3, ocpp_versions=("2.0.1", "1.6"))
    assert list(cfg.station_versions().values()) == ["2.0.1", "1.6", "2.0.1"]
    assert set(FleetConfig(stations=2).station_versions().values()) == {"1.6"}
    with pytest.raises(ValueError, match="ocpp_versions"):
        FleetConfig(ocpp_versions=("1.5",))
    with pytest.raises(ValueError, match="ocpp_versions"):
        FleetConfig(ocpp_versions=())


# ------------------------------------------------------------- authorisations, security


@pytest.mark.parametrize(
    ("normalize", "payload", "response", "tag", "token_type"),
    [
        (normalize_v16, {"idTag": "CARD-1"}, {"idTagInfo": {"status": "Blocked"}}, "CARD-1", None),
        (
            normalize_v201,
            {"idToken": {"idToken": "CARD-2", "type": "ISO14443"}},
            {"idTokenInfo": {"status": "Blocked"}},
            "CARD-2",
            "ISO14443",
        ),
    ],
)
def test_authorize_is_one_authorization_with_the_gateways_answer_at_the_received_time(
    normalize: Any, payload: dict[str, Any], response: dict[str, Any], tag: str, token_type: Any
) -> None:
    facts = normalize("CP", "Authorize", payload, response, T)
    assert facts == [
        Authorization(
            charge_point_id="CP",
            id_tag=tag,
            id_token_type=token_type,
            auth_status="Blocked",
            timestamp=T,
        )
    ]
    assert decode_facts(encode_facts(facts)) == facts


def test_an_authorize_without_an_answer_has_no_status() -> None:
    [fact] = normalize_v16("CP", "Authorize", {"idTag": "CARD-1"}, None, T)
    assert isinstance(fact, Authorization)
    assert fact.auth_status is None


def test_a_start_transaction_answer_stays_on_the_transaction_fact_only() -> None:
    facts = normalize_v16(
        "CP",
        "StartTransaction",
        {"connectorId": 1, "idTag": "CARD-1", "meterStart": 0, "timestamp": T_ISO},
        {"transactionId": 3, "idTagInfo": {"status": "Invalid"}},
        T,
    )
    assert [type(f) for f in facts] == [TransactionStart]
    assert isinstance(facts[0], TransactionStart)
    assert facts[0].auth_status == "Invalid"


@pytest.mark.parametrize("normalize", [normalize_v16, normalize_v201])
def test_security_event_notification_in_both_versions(normalize: Any) -> None:
    payload = {"type": "InvalidTLSVersion", "timestamp": "2026-01-05T09:59:00Z", "techInfo": "1.1"}
    facts = normalize("CP", "SecurityEventNotification", payload, {}, T)
    assert facts == [
        SecurityEvent(
            charge_point_id="CP",
            event_type="InvalidTLSVersion",
            tech_info="1.1",
            timestamp=datetime(2026, 1, 5, 9, 59, tzinfo=UTC),
        )
    ]
    assert decode_facts(encode_facts(facts)) == facts
    bare = normalize("CP", "SecurityEventNotification", {"type": "X", "timestamp": "bad"}, {}, T)
    assert bare == [SecurityEvent(charge_point_id="CP", event_type="X", timestamp=T)]
    assert normalize("CP", "SecurityEventNotification", {"timestamp": T_ISO}, {}, T) == []


def test_the_1_6_gateway_takes_security_events_at_the_stations_time() -> None:
    payload = {"type": "TamperDetectionActivated", "timestamp": "2026-01-05T09:00:00Z"}
    assert v16.measured_at("SecurityEventNotification", payload, T) == datetime(
        2026, 1, 5, 9, tzinfo=UTC
    )
    assert v16.SCHEMAS.validate("SecurityEventNotification", payload) is None

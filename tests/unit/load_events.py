"""Envelope builders for the load and status tests: normalised like the gateway does it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from bus.envelope import Envelope, Kind, new_message_id
from bus.normalized import EvseStates, normalize_v16, normalize_v201

# 10:00 UTC three days ago: within every retention and refresh rule of the storage, and
# every bucket of a test's day-long series is complete before now.
T0 = (datetime.now(UTC) - timedelta(days=3)).replace(hour=10, minute=0, second=0, microsecond=0)
POWER = "Power.Active.Import"
REGISTER = "Energy.Active.Import.Register"


def iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def call16(
    cp: str,
    action: str,
    payload: dict[str, Any],
    at: datetime,
    response: dict[str, Any] | None = None,
) -> Envelope:
    response = response or {}
    return Envelope(
        message_id=new_message_id(),
        charge_point_id=cp,
        received_at=at,
        measured_at=at,
        kind=Kind.OCPP_CALL,
        ocpp_version="1.6",
        action=action,
        unique_id="u1",
        payload=payload,
        response=response,
        normalized=normalize_v16(cp, action, payload, response, at),
    )


def call201(
    cp: str, action: str, payload: dict[str, Any], at: datetime, states: EvseStates | None = None
) -> Envelope:
    facts = normalize_v201(cp, action, payload, {}, at, states)
    if states is not None:
        states.apply(facts)
    return Envelope(
        message_id=new_message_id(),
        charge_point_id=cp,
        received_at=at,
        measured_at=at,
        kind=Kind.OCPP_CALL,
        ocpp_version="2.0.1",
        action=action,
        unique_id="u1",
        payload=payload,
        response={},
        normalized=facts,
    )


def mv16(
    cp: str,
    connector: int,
    at: datetime,
    *,
    watts: str | None = None,
    kw: str | None = None,
    phases: dict[str, str] | None = None,
    register_wh: int | None = None,
    tx: int | None = None,
) -> Envelope:
    sampled: list[dict[str, Any]] = []
    if register_wh is not None:
        sampled.append({"value": str(register_wh), "unit": "Wh", "measurand": REGISTER})
    if watts is not None:
        sampled.append({"value": watts, "unit": "W", "measurand": POWER})
    if kw is not None:
        sampled.append({"value": kw, "unit": "kW", "measurand": POWER})
    for phase, value in (phases or {}).items():
        sampled.append({"value": value, "unit": "W", "measurand": POWER, "phase": phase})
    payload: dict[str, Any] = {
        "connectorId": connector,
        "meterValue": [{"timestamp": iso(at), "sampledValue": sampled}],
    }
    if tx is not None:
        payload["transactionId"] = tx
    return call16(cp, "MeterValues", payload, at)


def mv201(
    cp: str,
    evse: int,
    at: datetime,
    *,
    power: float | None = None,
    unit: str = "W",
    multiplier: int = 0,
    register_kwh: float | None = None,
) -> Envelope:
    sampled: list[dict[str, Any]] = []
    if register_kwh is not None:
        sampled.append(
            {"value": register_kwh, "measurand": REGISTER, "unitOfMeasure": {"unit": "kWh"}}
        )
    if power is not None:
        sampled.append(
            {
                "value": power,
                "measurand": POWER,
                "unitOfMeasure": {"unit": unit, "multiplier": multiplier},
            }
        )
    return call201(
        cp,
        "MeterValues",
        {"evseId": evse, "meterValue": [{"timestamp": iso(at), "sampledValue": sampled}]},
        at,
    )


def status16(
    cp: str, connector: int, status: str, at: datetime, error: str = "NoError"
) -> Envelope:
    return call16(
        cp,
        "StatusNotification",
        {"connectorId": connector, "errorCode": error, "status": status, "timestamp": iso(at)},
        at,
    )


def status201(
    cp: str,
    evse: int,
    status: str,
    at: datetime,
    *,
    connector: int = 1,
    states: EvseStates | None = None,
) -> Envelope:
    return call201(
        cp,
        "StatusNotification",
        {"timestamp": iso(at), "connectorStatus": status, "evseId": evse, "connectorId": connector},
        at,
        states,
    )


def start16(cp: str, connector: int, tx: int, meter_start: int, at: datetime) -> Envelope:
    return call16(
        cp,
        "StartTransaction",
        {
            "connectorId": connector,
            "idTag": "TAG1",
            "meterStart": meter_start,
            "timestamp": iso(at),
        },
        at,
        {"transactionId": tx, "idTagInfo": {"status": "Accepted"}},
    )


def stop16(cp: str, tx: int, meter_stop: int, at: datetime) -> Envelope:
    return call16(
        cp,
        "StopTransaction",
        {"transactionId": tx, "meterStop": meter_stop, "timestamp": iso(at), "reason": "Local"},
        at,
        {"idTagInfo": {"status": "Accepted"}},
    )


def tx201(
    cp: str,
    evse: int,
    tx: str,
    event: str,
    at: datetime,
    *,
    charging_state: str | None = None,
    states: EvseStates | None = None,
) -> Envelope:
    info: dict[str, Any] = {"transactionId": tx}
    if charging_state is not None:
        info["chargingState"] = charging_state
    return call201(
        cp,
        "TransactionEvent",
        {
            "eventType": event,
            "timestamp": iso(at),
            "triggerReason": "CablePluggedIn",
            "seqNo": 0,
            "transactionInfo": info,
            "evse": {"id": evse, "connectorId": 1},
        },
        at,
        states,
    )


def connection(
    cp: str, state: str, at: datetime, reason: str = "test", gateway_id: str = "gw-1"
) -> Envelope:
    return Envelope(
        message_id=new_message_id(),
        charge_point_id=cp,
        received_at=at,
        measured_at=at,
        kind=Kind.STATION_CONNECTION,
        payload={"state": state, "reason": reason, "gateway_id": gateway_id},
    )


def meter_reading(
    cp: str, connector: int, at: datetime, power_w: float, energy_wh: int, *, billing: bool = False
) -> Envelope:
    return Envelope(
        message_id=new_message_id(),
        charge_point_id=cp,
        received_at=at,
        measured_at=at,
        kind=Kind.METER_READING,
        payload={
            "meter_id": f"MTR-{cp}",
            "connector_id": connector,
            "energy_wh": format(Decimal(energy_wh), "f"),
            "power_w": power_w,
            "voltage_v": 230.0,
            "current_a": power_w / 230.0,
            "temperature_c": None,
            "is_billing_meter": billing,
        },
    )

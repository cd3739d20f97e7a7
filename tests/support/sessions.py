"""Builders for the sessions tests: envelopes as the gateway publishes them (OCPP 1.6 and
2.0.1 calls, smart-meter readings), the rows the sessions flow writes, and running the
pure session logic over a list of envelopes."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from bus.envelope import Envelope, Kind, new_message_id
from bus.measurands import ENERGY_REGISTER
from bus.normalized import normalize_v201
from bus.sessions import EnergySource, Quality
from flows.sessions.logic import (
    ChargePointState,
    MeterSampleRow,
    Output,
    SessionRow,
    SessionRules,
    session_id_for,
    update,
)
from tests.support.builders import iso, ocpp_call

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def envelope(
    cp: str,
    action: str,
    payload: dict[str, Any],
    *,
    at: datetime = T0,
    response: dict[str, Any] | None = None,
    message_id: str | None = None,
) -> Envelope:
    return ocpp_call(
        cp,
        action,
        payload,
        at=at,
        version="1.6",
        response=response,
        unique_id=new_message_id()[:8],
        message_id=message_id,
    )


def start(
    cp: str,
    tx: int,
    meter_start: int,
    *,
    connector: int = 1,
    id_tag: str = "TAG1",
    at: datetime = T0,
) -> Envelope:
    return envelope(
        cp,
        "StartTransaction",
        {
            "connectorId": connector,
            "idTag": id_tag,
            "meterStart": meter_start,
            "timestamp": iso(at),
        },
        at=at,
        response={"transactionId": tx, "idTagInfo": {"status": "Accepted"}},
    )


def meter(
    cp: str, tx: int | None, *samples: tuple[datetime, str, dict[str, str]], connector: int = 1
) -> Envelope:
    payload: dict[str, Any] = {
        "connectorId": connector,
        "meterValue": [
            {"timestamp": iso(t), "sampledValue": [{"value": v, **extra}]}
            for t, v, extra in samples
        ],
    }
    if tx is not None:
        payload["transactionId"] = tx
    return envelope(cp, "MeterValues", payload, at=max(t for t, _, _ in samples))


def register(t: datetime, wh: int | str, unit: str = "Wh") -> tuple[datetime, str, dict[str, str]]:
    return (t, str(wh), {"measurand": ENERGY_REGISTER, "unit": unit, "context": "Sample.Periodic"})


def stop(
    cp: str,
    tx: int,
    meter_stop: int,
    *,
    at: datetime = T0 + timedelta(hours=1),
    reason: str | None = "Local",
    transaction_data: list[Any] | None = None,
) -> Envelope:
    payload: dict[str, Any] = {"transactionId": tx, "meterStop": meter_stop, "timestamp": iso(at)}
    if reason is not None:
        payload["reason"] = reason
    if transaction_data is not None:
        payload["transactionData"] = transaction_data
    return envelope(cp, "StopTransaction", payload, at=at, response={})


M = timedelta(minutes=1)


def v201(
    cp: str,
    action: str,
    payload: dict[str, Any],
    *,
    at: datetime,
    message_id: str | None = None,
    attach: bool = True,
) -> Envelope:
    """A 2.0.1 envelope as the gateway publishes it (normalised facts attached)."""
    facts = normalize_v201(cp, action, payload, {"idTokenInfo": {"status": "Accepted"}}, at)
    return ocpp_call(
        cp,
        action,
        payload,
        at=at,
        version="2.0.1",
        response={},
        normalized=facts if attach else None,
        unique_id="u",
        message_id=message_id,
    )


def sv(
    value: float | int | str,
    *,
    context: str = "Sample.Periodic",
    unit: str | None = "Wh",
    multiplier: int | None = None,
    measurand: str | None = ENERGY_REGISTER,
    phase: str | None = None,
    location: str | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {"value": value, "context": context}
    if measurand is not None:
        out["measurand"] = measurand
    if unit is not None or multiplier is not None:
        uom: dict[str, Any] = {}
        if unit is not None:
            uom["unit"] = unit
        if multiplier is not None:
            uom["multiplier"] = multiplier
        out["unitOfMeasure"] = uom
    if phase is not None:
        out["phase"] = phase
    if location is not None:
        out["location"] = location
    return out


def tx_event(
    cp: str,
    event: str,
    tx: str,
    seq: int,
    at: datetime,
    *values: dict[str, Any],
    evse: int | None = 1,
    offline: bool = False,
    reason: str | None = None,
    message_id: str | None = None,
) -> Envelope:
    payload: dict[str, Any] = {
        "eventType": event,
        "timestamp": iso(at),
        "seqNo": seq,
        "triggerReason": {
            "Started": "Authorized",
            "Updated": "MeterValuePeriodic",
            "Ended": "EVDeparted",
        }[event],
        "transactionInfo": {"transactionId": tx},
    }
    if evse is not None:
        payload["evse"] = {"id": evse, "connectorId": 1}
    if event == "Started":
        payload["idToken"] = {"idToken": "TOKEN", "type": "ISO14443"}
    if reason is not None:
        payload["transactionInfo"]["stoppedReason"] = reason
    if offline:
        payload["offline"] = True
    if values:
        payload["meterValue"] = [{"timestamp": iso(at), "sampledValue": list(values)}]
    return v201(cp, "TransactionEvent", payload, at=at, message_id=message_id)


def reading(
    cp: str,
    at: datetime,
    wh: int | str,
    *,
    connector: int = 1,
    meter_id: str = "MTR-1",
    billing: bool = True,
) -> Envelope:
    return Envelope(
        message_id=new_message_id(),
        charge_point_id=cp,
        received_at=at,
        measured_at=at,
        kind=Kind.METER_READING,
        payload={
            "meter_id": meter_id,
            "connector_id": connector,
            "energy_wh": str(wh),
            "power_w": 7000.0,
            "voltage_v": 230.0,
            "current_a": 10.0,
            "temperature_c": None,
            "is_billing_meter": billing,
        },
    )


def run(
    events: list[Envelope], rules: SessionRules | None = None, state: ChargePointState | None = None
) -> tuple[ChargePointState, list[Output]]:
    outputs: list[Output] = []
    for env in events:
        state, out = update(state, env, rules or SessionRules())
        outputs.extend(out)
    assert state is not None
    return state, outputs


def rows(outputs: list[Output], tx: str | None = None) -> list[SessionRow]:
    return [
        o for o in outputs if isinstance(o, SessionRow) and (tx is None or o.transaction_id == tx)
    ]


def final(outputs: list[Output], tx: str | None = None) -> SessionRow:
    closed = [r for r in rows(outputs, tx) if r.status == "closed"]
    assert closed, rows(outputs, tx)
    return closed[-1]


def active(tx: str = "1", **changes: Any) -> SessionRow:
    row = SessionRow(
        session_id=session_id_for("CP1", tx),
        charge_point_id="CP1",
        connector_id=2,
        transaction_id=tx,
        id_tag="TAG",
        status="active",
        started_at=T0,
        stopped_at=None,
        meter_start_wh=1_000,
        meter_stop_wh=None,
        last_register_wh=None,
        energy_wh=0,
        energy_source=EnergySource.STATION_REGISTER,
        quality=Quality.EXACT,
        quality_reasons=(),
        stop_reason=None,
        sample_count=0,
    )
    return replace(row, **changes)


def sample(minutes: int, value: str) -> MeterSampleRow:
    return MeterSampleRow(
        measured_at=T0 + timedelta(minutes=minutes),
        charge_point_id="CP1",
        connector_id=2,
        transaction_id="1",
        measurand="Energy.Active.Import.Register",
        phase="",
        location="",
        context="",
        unit="Wh",
        value=Decimal(value),
    )

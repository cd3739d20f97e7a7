"""Telemetry of the faults flow's tests: OCPP 1.6 MeterValues and StatusNotifications of
one connector as the gateway publishes them (with normalised facts), and a station's
story: it charges, reports a ground fault while its energy register freezes under
load, then reports healthy again."""

from __future__ import annotations

from datetime import datetime, timedelta

from bus.envelope import Envelope
from bus.normalized import normalize_v16
from tests.support.builders import iso, ocpp_call


def _call(
    cp: str,
    action: str,
    payload: dict[str, object],
    at: datetime,
    response: dict[str, object] | None = None,
) -> Envelope:
    response = response or {}
    facts = normalize_v16(cp, action, payload, response, at)
    return ocpp_call(cp, action, payload, at=at, version="1.6", response=response, normalized=facts)


def meter_values(
    cp: str, connector: int, at: datetime, energy_wh: float, power_w: float
) -> Envelope:
    """One MeterValues: register, power, current and voltage, temperature."""
    sampled = [
        ("Energy.Active.Import.Register", f"{energy_wh:.0f}", "Wh", None),
        ("Power.Active.Import", f"{power_w:.0f}", "W", None),
        ("Current.Import", f"{power_w / 230 / 3:.1f}", "A", "L1"),
        ("Voltage", "230.5", "V", "L1-N"),
        ("Temperature", "30.0", "Celsius", None),
    ]
    values = [
        {"value": v, "measurand": m, "unit": u, "context": "Sample.Periodic", "location": "Outlet"}
        | ({"phase": p} if p else {})
        for m, v, u, p in sampled
    ]
    payload = {
        "connectorId": connector,
        "meterValue": [{"timestamp": iso(at), "sampledValue": values}],
    }
    return _call(cp, "MeterValues", payload, at)


def status(cp: str, connector: int, at: datetime, error_code: str, state: str) -> Envelope:
    payload = {
        "connectorId": connector,
        "errorCode": error_code,
        "status": state,
        "timestamp": iso(at),
    }
    return _call(cp, "StatusNotification", payload, at)


def start_transaction(cp: str, connector: int, at: datetime, meter_start_wh: int) -> Envelope:
    """A 1.6 StartTransaction the gateway accepted (transaction id 1)."""
    payload = {
        "connectorId": connector,
        "idTag": "TAG-1",
        "meterStart": meter_start_wh,
        "timestamp": iso(at),
    }
    response = {"transactionId": 1, "idTagInfo": {"status": "Accepted"}}
    return _call(cp, "StartTransaction", payload, at, response)


def faulty_station(cp: str, start: datetime, minutes: int = 40) -> list[Envelope]:
    """``cp`` starts a transaction and charges 11 kW on connector 1, a reading every minute
    for ``minutes``; at a quarter its
    connector 2 reports GroundFailure (Faulted) and connector 1's register stops while
    the power flows; at three quarters both are healthy again (NoError Available on
    connector 2, the register moving on connector 1)."""
    power = 11_000.0
    energy = 1_000_000.0
    out = [start_transaction(cp, 1, start - timedelta(seconds=10), int(energy))]
    freeze, heal = minutes // 4, 3 * minutes // 4
    for minute in range(minutes):
        at = start + timedelta(minutes=minute)
        if minute == freeze:
            out.append(status(cp, 2, at - timedelta(seconds=30), "GroundFailure", "Faulted"))
        if minute == heal:
            out.append(status(cp, 2, at - timedelta(seconds=30), "NoError", "Available"))
        if not freeze < minute < heal:
            energy += power / 60
        out.append(meter_values(cp, 1, at, energy, power))
    return out

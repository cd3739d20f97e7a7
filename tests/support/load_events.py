"""Envelope builders for the load and status tests (normalised like the gateway does it),
and the rows the load API tests read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from bus.envelope import Envelope, Kind, new_message_id
from bus.measurands import ENERGY_REGISTER, POWER
from bus.normalized import EvseStates, normalize_v16, normalize_v201
from store.aggregates import refresh_aggregates
from store.stations import provision_station
from tests.support.builders import iso, ocpp_call

# 10:00 UTC three days ago: within every retention and refresh rule of the storage, and
# every bucket of a test's day-long series is complete before now.
T0 = (datetime.now(UTC) - timedelta(days=3)).replace(hour=10, minute=0, second=0, microsecond=0)
M = timedelta(minutes=1)


def call16(
    cp: str,
    action: str,
    payload: dict[str, Any],
    at: datetime,
    response: dict[str, Any] | None = None,
) -> Envelope:
    response = response or {}
    facts = normalize_v16(cp, action, payload, response, at)
    return ocpp_call(cp, action, payload, at=at, version="1.6", response=response, normalized=facts)


def call201(
    cp: str, action: str, payload: dict[str, Any], at: datetime, states: EvseStates | None = None
) -> Envelope:
    facts = normalize_v201(cp, action, payload, {}, at, states)
    if states is not None:
        states.apply(facts)
    return ocpp_call(cp, action, payload, at=at, version="2.0.1", response={}, normalized=facts)


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
        sampled.append({"value": str(register_wh), "unit": "Wh", "measurand": ENERGY_REGISTER})
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
            {"value": register_kwh, "measurand": ENERGY_REGISTER, "unitOfMeasure": {"unit": "kWh"}}
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


def _insert_availability_and_status_history(cur: psycopg.Cursor[Any]) -> None:
    avail = [
        ("N1", 0, "Available", "Available", "NoError", True),
        ("N1", 1, "Charging", "Charging", "NoError", True),
        ("N1", 2, "Available", "Available", "NoError", True),
        ("N2", 1, "Offline", "Available", None, False),
        ("X1", 1, "Faulted", "Faulted", "GroundFailure", True),
    ]
    cur.executemany(
        "INSERT INTO connector_availability (charge_point_id, connector_id, status,"
        " connector_status, ocpp_status, error_code, status_at, online,"
        " connection_changed_at, updated_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        [(cp, c, s, cs, cs, e, T0, online, T0 + M, T0 + M) for cp, c, s, cs, e, online in avail],
    )
    cur.executemany(
        "INSERT INTO connector_status_history (charge_point_id, connector_id, at,"
        " status, ocpp_status, error_code) VALUES (%s, %s, %s, %s, %s, %s)",
        [
            ("N1", 1, T0 + k * M, s, s, "NoError")
            for k, s in enumerate(["Available", "Preparing", "Charging"])
        ]
        + [("N1", 2, T0, "Available", "Available", "NoError")],
    )


def _insert_90_minutes_of_n1_load(cur: psycopg.Cursor[Any]) -> None:
    cur.executemany(
        "INSERT INTO load_connector_1m (charge_point_id, connector_id, bucket,"
        " sample_count, power_sum_w, avg_power_w, max_power_w, energy_wh, register_wh,"
        " source) VALUES (%s, 1, %s, 2, %s, %s, %s, %s, %s, 'ocpp')",
        [
            (
                "N1",
                T0 + k * M,
                2 * (7000.0 + k),
                7000.0 + k,
                7100.0 + k,
                Decimal(115),
                Decimal(10_000 + 115 * k),
            )
            for k in range(90)
        ],
    )


def _insert_north_live_load(db: psycopg.Connection[Any]) -> None:
    stations = [
        {
            "charge_point_id": "N1",
            "power_w": 22000.0,
            "as_of": (T0 + M).isoformat(),
            "offline": False,
            "connectors": [{"connector_id": 1, "power_w": 22000.0}],
        },
        {
            "charge_point_id": "N2",
            "power_w": 11000.0,
            "as_of": T0.isoformat(),
            "offline": True,
            "connectors": [{"connector_id": 1, "power_w": 11000.0}],
        },
    ]
    db.execute(
        "INSERT INTO site_load_live (site_id, as_of, published_at, total_w, capacity_w,"
        " utilisation_pct, over_capacity, station_count, offline_stations, stations)"
        " VALUES ('S-NORTH', %s, %s, 33000, 30000, 110, true, 2, 1, %s)",
        (T0 + M, T0 + M, Jsonb(stations)),
    )


def seed_load_data(database_url: str) -> None:
    """Sites S-NORTH (stations N1, N2) and S-EMPTY, station X1, their availability,
    status history, 90 minutes of N1 connector 1 load and S-NORTH's live load."""
    clean_db = database_url
    with psycopg.connect(clean_db, autocommit=True) as db:
        db.execute(
            "INSERT INTO sites (site_id, name, capacity_w) VALUES"
            " ('S-NORTH', 'North', 30000), ('S-EMPTY', 'Empty', NULL)"
        )
        for cp in ("N1", "N2"):
            provision_station(clean_db, cp, "S-NORTH")
        provision_station(clean_db, "X1")
        with db.cursor() as cur:
            _insert_availability_and_status_history(cur)
            _insert_90_minutes_of_n1_load(cur)
        _insert_north_live_load(db)
        refresh_aggregates(db, force=True)  # the rows bypassed the writer

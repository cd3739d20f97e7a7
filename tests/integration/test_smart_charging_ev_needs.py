"""What a 2.0.1 EV declares over ISO 15118 (NotifyEVChargingNeeds) steers the allocation:
the messages as the gateway publishes them (tests/integration/test_gateway_v201 shows the
gateway's answer and facts), through the smart-charging flow over the topic (Bytewax,
Kafka, the registry in PostgreSQL): the single-phase car limited to 10 A gets at most that, the
capacity it leaves goes to the three-phase car beside it once that station's rate limit
lets a new profile through, and the TxProfiles in the commands table say so."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from bytewax.testing import run_main

from bus.envelope import encode_envelope
from bus.normalized import normalize_v201
from bus.topics import Topics
from chargeflow.stack import EmbeddedBroker
from flows.smart_charging.config import SmartChargingFlowConfig
from flows.smart_charging.dataflow import build_flow
from store.sites import upsert_site
from store.stations import provision_station
from tests.support.builders import ocpp_call
from tests.support.flows import publish
from tests.support.gateway import STATION_PASSWORD

pytestmark = pytest.mark.integration

SITE = "EVN-SITE"
SINGLE, THREE = "EVN-1", "EVN-3"  # the single-phase car's station, the other's
T0 = datetime(2026, 12, 1, 9, tzinfo=UTC)
LIMIT_A = 32.0  # per phase: 22 kW at 230 V
NEEDS = {
    "evseId": 1,
    "chargingNeeds": {
        "requestedEnergyTransfer": "AC_single_phase",
        "departureTime": "2026-12-01T17:00:00Z",
        "acChargingParameters": {
            "energyAmount": 20000,
            "evMinCurrent": 6,
            "evMaxCurrent": 10,
            "evMaxVoltage": 230,
        },
    },
}


def _call(cp: str, action: str, payload: dict[str, Any], at: datetime) -> tuple[bytes, bytes]:
    facts = normalize_v201(cp, action, payload, {}, at)
    envelope = ocpp_call(cp, action, payload, at=at, version="2.0.1", response={}, normalized=facts)
    return cp.encode(), encode_envelope(envelope)


def _tx_event(cp: str, tx: str, at: datetime, **fields: Any) -> tuple[bytes, bytes]:
    """A 2.0.1 TransactionEvent on EVSE 1 while the car charges."""
    payload = {
        "timestamp": at.isoformat(),
        "transactionInfo": {"transactionId": tx, "chargingState": "Charging"},
        "evse": {"id": 1, "connectorId": 1},
        **fields,
    }
    return _call(cp, "TransactionEvent", payload, at)


def _started(cp: str, tx: str, at: datetime) -> tuple[bytes, bytes]:
    return _tx_event(cp, tx, at, eventType="Started", triggerReason="CablePluggedIn", seqNo=0)


def _meter(cp: str, tx: str, at: datetime, amps: float) -> tuple[bytes, bytes]:
    current = {"value": amps, "measurand": "Current.Import", "phase": "L1"}
    sample = {"timestamp": at.isoformat(), "sampledValue": [current]}
    return _tx_event(
        cp, tx, at, eventType="Updated", triggerReason="MeterValuePeriodic", seqNo=1,
        meterValue=[sample],
    )  # fmt: skip


def _tx_limits(url: str) -> list[tuple[str, float]]:
    """(station, limit A) of every TxProfile the flow stored."""
    with psycopg.connect(url) as db:
        rows = db.execute(
            "SELECT charge_point_id, payload FROM commands WHERE requested_by = 'smart-charging'"
            " AND action = 'SetChargingProfile'"
        ).fetchall()
    limits = []
    for cp, payload in rows:
        profile = payload["chargingProfile"]
        if profile["chargingProfilePurpose"] == "TxProfile":
            [schedule] = profile["chargingSchedule"]
            limits.append((cp, float(schedule["chargingSchedulePeriod"][0]["limit"])))
    return limits


def test_the_flow_allocates_within_what_the_ev_takes(
    broker: EmbeddedBroker, clean_db: str, topics: Topics
) -> None:
    upsert_site(clean_db, SITE, "EV needs", int(LIMIT_A * 3 * 230), time_zone="UTC")
    for cp in (SINGLE, THREE):
        provision_station(clean_db, cp, SITE, password=STATION_PASSWORD)
    with psycopg.connect(clean_db, autocommit=True) as db:  # as their BootNotification does
        db.execute("UPDATE stations SET ocpp_version = '2.0.1'")
    minute = timedelta(minutes=1)
    events = [
        _started(SINGLE, "TX-1", T0),
        _started(THREE, "TX-3", T0 + 0.5 * minute),
        _call(SINGLE, "NotifyEVChargingNeeds", NEEDS, T0 + minute),
        _meter(SINGLE, "TX-1", T0 + 2 * minute, 15.5),
        # past the other station's rate limit (5 min after its first profile)
        _meter(THREE, "TX-3", T0 + 6 * minute, 15.0),
    ]
    publish(broker.bootstrap, topics.ocpp_events, events)
    config = SmartChargingFlowConfig(
        brokers=[broker.bootstrap], database_url=clean_db, topics=topics, tail=False
    )
    run_main(build_flow(config))

    limits = _tx_limits(clean_db)  # the flow has committed them when run_main returns
    single = {a for cp, a in limits if cp == SINGLE}
    three = {a for cp, a in limits if cp == THREE}
    assert min(single) <= 10.0, limits  # what the car said it takes
    assert max(three) > LIMIT_A / 2, limits  # the rest of phase 1 went to the other car
    with psycopg.connect(clean_db) as db:
        row = db.execute(
            "SELECT body FROM smart_charging_allocations WHERE site_id = %s", (SITE,)
        ).fetchone()
    assert row is not None
    allocation = {s["station_id"]: s for s in row[0]["sessions"]}
    assert allocation[SINGLE]["current_a"] <= 10.0
    assert allocation[SINGLE]["site_phases"] == [1]  # charging on one phase
    assert allocation[THREE]["current_a"] > LIMIT_A / 2
    assert allocation[SINGLE]["current_a"] + allocation[THREE]["current_a"] <= LIMIT_A

"""The smart-charging flow's edges, pure: what it reads from each topic, the commands it
builds (valid for the gateway in both OCPP versions) and the allocation it stores."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime

import pytest

from bus.commands import CommandResult, CommandStatus, encode_result
from bus.envelope import Envelope, Kind, encode_envelope
from bus.measurands import CURRENT
from bus.normalized import normalize_v201
from flows.smart_charging.dataflow import allocation_body, decode_event, profile_command
from flows.smart_charging.directory import site_rules
from flows.smart_charging.logic import (
    AllocationView,
    Connection,
    ControlPolicy,
    Drawn,
    Needs,
    NeedsDeclared,
    Outcome,
    ProfileRequest,
    RulesChanged,
    SiteControl,
    SiteRules,
    Started,
    apply,
)
from ingest.gateway.command_checks import check_command
from smart_charging.inputs import SiteLimit
from store.smart_charging import SiteRows
from tests.support.builders import ocpp_call
from tests.support.sessions import envelope, start

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def test_a_start_and_its_currents_become_events() -> None:
    started = decode_event(encode_envelope(start("CP1", 42, 1000, id_tag="TAG9")))
    assert started is not None
    assert started.events == (Started("CP1", 1, "42", "TAG9", T0),)
    values = {
        "connectorId": 1,
        "transactionId": 42,
        "meterValue": [
            {
                "timestamp": "2026-03-01T08:01:00Z",
                "sampledValue": [
                    {"value": v, "measurand": CURRENT, "unit": "A", "phase": p}
                    for v, p in (("15.2", "L1"), ("16.1", "L2"), ("15.9", "L3"))
                ],
            }
        ],
    }
    drawn = decode_event(encode_envelope(envelope("CP1", "MeterValues", values)))
    assert drawn is not None
    assert drawn.events == (Drawn("CP1", 1, "42", datetime(2026, 3, 1, 8, 1, tzinfo=UTC), 16.1),)


def test_the_evs_charging_needs_become_an_event() -> None:
    payload = {
        "evseId": 2,
        "chargingNeeds": {
            "requestedEnergyTransfer": "AC_single_phase",
            "departureTime": "2026-03-01T17:00:00Z",
            "acChargingParameters": {
                "energyAmount": 18000,
                "evMinCurrent": 6,
                "evMaxCurrent": 16,
                "evMaxVoltage": 230,
            },
        },
    }
    facts = normalize_v201("CS2", "NotifyEVChargingNeeds", payload, {"status": "Processing"}, T0)
    call = ocpp_call(
        "CS2",
        "NotifyEVChargingNeeds",
        payload,
        at=T0,
        version="2.0.1",
        response=None,
        normalized=facts,
    )
    found = decode_event(encode_envelope(call))
    assert found is not None
    departure = datetime(2026, 3, 1, 17, tzinfo=UTC)
    assert found.events == (NeedsDeclared("CS2", 2, T0, Needs(departure, 18000.0), 6.0, 16.0, 1),)


def test_only_its_own_command_results_and_site_meter_readings() -> None:
    def result(by: str) -> bytes:
        return encode_result(
            CommandResult(
                command_id=uuid.UUID(int=7),
                charge_point_id="CP1",
                action="SetChargingProfile",
                status=CommandStatus.REJECTED,
                requested_by=by,
                requested_at=T0,
                completed_at=T0,
            )
        )

    ours = decode_event(result("smart-charging"))
    assert ours is not None
    assert ours.events == (Outcome("CP1", str(uuid.UUID(int=7)), "rejected"),)
    assert decode_event(result("api key")) is None
    reading = Envelope(
        message_id="m1",
        charge_point_id="CP1",
        received_at=T0,
        measured_at=T0,
        kind=Kind.METER_READING,
        payload={"meter_id": "MTR-1", "connector_id": 0, "power_w": 900.0, "current_a": 1.3},
    )
    found = decode_event(encode_envelope(reading))
    assert found is not None
    assert found.meter_id == "MTR-1"


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
def test_every_profile_the_flow_sends_is_valid_for_the_station(version: str) -> None:
    rules = SiteRules("S", SiteLimit((40.0, 40.0, 40.0)), stations={"CP1": version})
    state = SiteControl()
    out = []
    for event in (RulesChanged(rules), Started("CP1", 1, "42", None, T0)):
        out.extend(apply(state, event, ControlPolicy()))
    requests = [o for o in out if isinstance(o, ProfileRequest)]
    assert {r.purpose for r in requests} == {"tx", "tx_default", "charge_point_max"}
    for request in requests:
        command = profile_command(request, T0, 60.0, 30.0)
        assert check_command(command, version) is None, (request, command.payload)
        assert str(command.command_id) == request.command_id
        assert command.requested_by == "smart-charging"
    views = [o for o in out if isinstance(o, AllocationView)]
    body = allocation_body(views[-1])
    assert body["sessions"][0]["transaction_id"] == "42"
    assert body["sessions"][0]["current_a"] == 32.0


def test_a_sites_rules_from_its_registry_rows() -> None:
    departure = datetime(2026, 3, 1, 18, tzinfo=UTC)
    rows = SiteRows(
        "S",
        capacity_w=100_000,
        max_current_a=None,
        stations={"CP1": "2.0.1", "CP2": "1.6"},
        connectors={("CP1", 1): (1, None, 16.0, "TRS")},
        windows=[(T0, departure, 80.0)],
        load_meters=frozenset({"MTR-9"}),
    )
    tiers = {"GOLD": "priority", "M": "member"}
    needs = {"CP1": {"42": (departure, 9000.0)}, "CP9": {"7": (departure, 1.0)}}
    found = site_rules(rows, tiers, needs)
    assert found is not None
    assert found.base_limit == SiteLimit((144.9, 144.9, 144.9))  # 100 kW over 3 x 230 V
    assert [w.limit.per_phase_a for w in found.windows] == [(80.0, 80.0, 80.0)]
    rating = found.connectors[("CP1", 1)]
    assert (rating.phases, rating.min_a, rating.max_a, rating.rotation) == (1, 6.0, 16.0, "TRS")
    assert found.tiers == {"GOLD": 3, "M": 1}
    assert set(found.needs) == {"42"}  # CP9 is not on this site
    assert found.load_meters == frozenset({"MTR-9"})
    per_phase = site_rules(dataclasses.replace(rows, max_current_a=63.0), tiers, needs)
    assert per_phase is not None
    assert per_phase.base_limit == SiteLimit((63.0, 63.0, 63.0))  # A per phase wins
    unlimited = dataclasses.replace(rows, capacity_w=None)
    assert site_rules(unlimited, tiers, needs) is None  # not controlled


def test_the_gateways_offline_and_online_become_events() -> None:
    for state, online in (("offline", False), ("online", True)):
        envelope = Envelope(
            message_id=str(uuid.uuid4()),
            charge_point_id="CP1",
            received_at=T0,
            measured_at=T0,
            kind=Kind.STATION_CONNECTION,
            payload={"state": state, "reason": "connection closed", "gateway_id": "gw-0"},
        )
        found = decode_event(encode_envelope(envelope))
        assert found is not None
        assert found.events == (Connection("CP1", T0, online),)

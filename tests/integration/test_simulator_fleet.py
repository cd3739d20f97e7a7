"""The simulator against the real gateway: the fleet's ground truth matches what is
on ocpp.events, for 1.6, 2.0.1 and mixed fleets."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from bus.envelope import Envelope
from bus.normalized import ConnectorStatus, MeterSample, TransactionEnd, TransactionStart
from bus.topics import Topics
from chargeflow.stack import EmbeddedBroker, free_port
from ingest.gateway.config import GatewayConfig
from ingest.gateway.server import Gateway
from ingest.simulator.config import FleetConfig
from ingest.simulator.fleet import run_fleet
from ingest.simulator.report import FleetReport, SessionTruth
from tests.support.gateway import STATION_PASSWORD, envelopes, gateway_config

pytestmark = pytest.mark.integration


def fast_fleet(url: str, database_url: str, **overrides: object) -> FleetConfig:
    base: dict[str, object] = dict(
        gateway_url=url,
        stations=3,
        sessions_per_station=2,
        meter_interval_s=60,
        time_scale=3000,
        mean_arrival_gap_s=120,
        mean_dwell_s=1800,
        seed=7,
        database_url=database_url,
        call_timeout_s=5,
        station_password=STATION_PASSWORD,
    )
    base.update(overrides)
    return FleetConfig(**base)  # type: ignore[arg-type]


async def test_small_fleet_ground_truth_matches_the_topic(
    broker: EmbeddedBroker, clean_db: str, topics: Topics
) -> None:
    async with Gateway(gateway_config(broker, clean_db, topics)) as gw:
        async with asyncio.timeout(120):
            report = await run_fleet(fast_fleet(gw.url, clean_db))
    assert len(report.sessions) == 6
    assert {s.charge_point_id for s in report.sessions} == {"SIM-0001", "SIM-0002", "SIM-0003"}
    assert report.failed_transaction_messages == 0
    assert report.rejected_authorizations == 0

    events = envelopes(broker, topics.ocpp_events)
    starts = {
        (e.charge_point_id, e.response["transactionId"]): e
        for e in events
        if e.action == "StartTransaction" and e.response
    }
    stops = {
        (e.charge_point_id, e.payload["transactionId"]): e
        for e in events
        if e.action == "StopTransaction"
    }
    for s in report.sessions:
        key = (s.charge_point_id, s.transaction_id)
        assert starts[key].payload["meterStart"] == s.meter_start_wh
        assert stops[key].payload["meterStop"] == s.meter_stop_wh
        assert s.energy_wh == stops[key].payload["meterStop"] - starts[key].payload["meterStart"]
        assert s.energy_wh > 0
        # Every MeterValues of the transaction carries a monotonic register.
        registers = [
            int(sv["value"])
            for e in events
            if e.action == "MeterValues"
            and e.charge_point_id == s.charge_point_id
            and e.payload.get("transactionId") == s.transaction_id
            for mv in e.payload["meterValue"]
            for sv in mv["sampledValue"]
            if sv["measurand"] == "Energy.Active.Import.Register"
        ]
        assert len(registers) == s.meter_value_messages
        assert registers == sorted(registers)
        assert registers[-1] == s.meter_stop_wh
    # Registers only increase across a station's sessions.
    for cp in report.stations:
        mine = [s for s in report.sessions if s.charge_point_id == cp]
        assert mine[1].meter_start_wh >= mine[0].meter_stop_wh
    statuses = [
        e.payload["status"]
        for e in events
        if e.action == "StatusNotification"
        and e.charge_point_id == "SIM-0001"
        and e.payload["connectorId"] == 1
    ]
    assert statuses[:5] == ["Available", "Preparing", "Charging", "Finishing", "Available"]
    assert report.to_json()


async def test_fleet_waits_for_a_gateway_that_is_not_up_yet(
    broker: EmbeddedBroker, clean_db: str, topics: Topics
) -> None:
    port = free_port()
    config = fast_fleet(f"ws://127.0.0.1:{port}/ocpp", clean_db, stations=1, sessions_per_station=1)
    report = FleetReport()
    async with asyncio.TaskGroup() as tg:
        fleet = tg.create_task(run_fleet(config, report))
        deadline = asyncio.get_running_loop().time() + 20
        while report.connect_failures < 2:  # the station keeps trying while nobody listens
            assert asyncio.get_running_loop().time() < deadline, "no connection attempts"
            assert not fleet.done()
            await asyncio.sleep(0.02)
        async with Gateway(
            GatewayConfig(
                port=port, kafka_bootstrap=broker.bootstrap, database_url=clean_db, topics=topics
            )
        ):
            async with asyncio.timeout(60):
                await fleet
    assert len(report.sessions) == 1
    assert report.connects == 1


def _check_the_normalised_truth(s: SessionTruth, mine: list[Envelope]) -> None:
    """The normalised facts give the same ground truth for both versions."""
    facts = [f for e in mine for f in e.normalized or []]
    start = next(f for f in facts if isinstance(f, TransactionStart))
    end = next(f for f in facts if isinstance(f, TransactionEnd))
    assert start.transaction_id == end.transaction_id == str(s.transaction_id)
    assert start.meter_start_wh == s.meter_start_wh
    assert end.meter_stop_wh == s.meter_stop_wh
    assert end.stopped_reason == s.stop_reason
    registers = [
        f.value
        for e in mine
        if e.action in ("MeterValues", "TransactionEvent")
        for f in e.normalized or []
        if isinstance(f, MeterSample)
        and f.measurand == "Energy.Active.Import.Register"
        and f.context == "Sample.Periodic"
    ]
    assert len(registers) == s.meter_value_messages
    assert registers == sorted(registers)


def _check_the_201_transaction_events(s: SessionTruth, mine: list[Envelope]) -> None:
    """The raw TransactionEvents carry the registers and a gapless seqNo."""
    tx_events = [e for e in mine if e.action == "TransactionEvent"]
    assert [e.payload["eventType"] for e in tx_events] == (
        ["Started"] + ["Updated"] * s.meter_value_messages + ["Ended"]
    )
    assert [e.payload["seqNo"] for e in tx_events] == list(range(len(tx_events)))
    assert {e.payload["transactionInfo"]["transactionId"] for e in tx_events} == {s.transaction_id}
    begin = tx_events[0].payload["meterValue"][0]["sampledValue"][0]
    finish = tx_events[-1].payload["meterValue"][0]["sampledValue"][0]
    assert (begin["context"], begin["value"]) == ("Transaction.Begin", s.meter_start_wh)
    assert (finish["context"], finish["value"]) == ("Transaction.End", s.meter_stop_wh)
    assert s.energy_wh == finish["value"] - begin["value"]
    assert tx_events[0].response == {"idTokenInfo": {"status": "Accepted"}}
    facts = [f for e in mine for f in e.normalized or []]
    statuses = [f.status for f in facts if isinstance(f, ConnectorStatus)]
    assert statuses == ["Available", "Preparing", "Available"]


async def test_mixed_fleet_of_16_and_201_stations_matches_the_registers_on_the_topic(
    broker: EmbeddedBroker, clean_db: str, topics: Topics
) -> None:
    config = fast_fleet(
        "", clean_db, stations=4, sessions_per_station=1, ocpp_versions=("1.6", "2.0.1")
    )
    assert config.station_versions() == {
        "SIM-0001": "1.6",
        "SIM-0002": "2.0.1",
        "SIM-0003": "1.6",
        "SIM-0004": "2.0.1",
    }
    async with Gateway(gateway_config(broker, clean_db, topics)) as gw:
        async with asyncio.timeout(120):
            report = await run_fleet(replace(config, gateway_url=gw.url))
    assert len(report.sessions) == 4
    assert report.failed_transaction_messages == 0
    assert report.rejected_authorizations == 0
    events = envelopes(broker, topics.ocpp_events)
    versions = {e.charge_point_id: e.ocpp_version for e in events if e.action == "BootNotification"}
    assert versions == config.station_versions()

    for s in report.sessions:
        assert s.ocpp_version == versions[s.charge_point_id]
        assert s.energy_wh == s.meter_stop_wh - s.meter_start_wh > 0
        mine = [e for e in events if e.charge_point_id == s.charge_point_id]
        _check_the_normalised_truth(s, mine)
        if s.ocpp_version == "1.6":
            continue
        _check_the_201_transaction_events(s, mine)

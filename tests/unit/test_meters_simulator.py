"""Simulated smart meters and the embedded broker's config (pure, no I/O)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from chargeflow.mqtt import mosquitto_config, resolve_backend
from ingest.meters.reading import parse_reading
from ingest.simulator.meters import (
    RegisterSource,
    StandaloneSource,
    meter_id_for,
    standalone_meters,
    station_sources,
    topic_template_for,
)
from ingest.simulator.physics import EnergyRegister

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class FakeClock:
    """Simulated time, advanced by the test."""

    def __init__(self) -> None:
        self.t = T0

    def now(self) -> datetime:
        return self.t


def test_register_source_follows_the_register() -> None:
    clock, register = FakeClock(), EnergyRegister(1_000_000)
    source = RegisterSource(lambda: register.wh, now=clock.now, rng=random.Random(1))
    first = source.read()
    assert (first.energy_wh, first.power_w, first.current_a) == (1_000_000, 0.0, 0.0)
    clock.t += timedelta(seconds=60)
    register.add(122.0)  # 7320 W for a minute
    second = source.read()
    assert second.energy_wh == 1_000_122
    assert second.power_w == pytest.approx(7320.0)
    assert second.current_a == pytest.approx(7320.0 / (3 * second.voltage_v))
    assert second.time == T0 + timedelta(seconds=60)


def test_station_sources_one_meter_per_connector() -> None:
    clock = FakeClock()
    station = SimpleNamespace(
        cp_id="SIM-0007",
        clock=clock,
        registers={1: EnergyRegister(10), 2: EnergyRegister(20)},
    )
    sources = station_sources(station)
    assert sorted(sources) == ["MTR-SIM-0007-1", "MTR-SIM-0007-2"]
    station.registers[2].add(5.0)
    assert sources["MTR-SIM-0007-2"].read().energy_wh == 25
    assert sources["MTR-SIM-0007-1"].read().time == T0


def test_standalone_source_charges_evs_and_never_runs_backwards() -> None:
    clock = FakeClock()
    source = StandaloneSource(
        rng=random.Random(3), now=clock.now, start_wh=5_000, mean_dwell_s=600, mean_gap_s=60
    )
    readings = []
    for _ in range(500):
        clock.t += timedelta(seconds=10)
        readings.append(source.read())
    energies = [r.energy_wh for r in readings]
    assert energies == sorted(energies)
    assert energies[-1] > 5_000
    assert any(r.power_w > 0 for r in readings)
    assert any(r.power_w == 0 for r in readings)  # idle between EVs


def test_standalone_meters_speak_the_wire_format() -> None:
    from ingest.meters.reading import encode_reading

    meters = standalone_meters(["SIM-0001", "SIM-0002"])
    assert sorted(meters) == [meter_id_for("SIM-0001"), meter_id_for("SIM-0002")]
    snap = meters["MTR-SIM-0001-1"].read()
    data = encode_reading(
        "MTR-SIM-0001-1",
        snap.time,
        snap.energy_wh,
        power_w=snap.power_w,
        voltage_v=snap.voltage_v,
        current_a=snap.current_a,
        temperature_c=snap.temperature_c,
    )
    assert parse_reading(data, "MTR-SIM-0001-1").energy_wh == snap.energy_wh


def test_mosquitto_config_listens_only_where_asked() -> None:
    text = mosquitto_config("127.0.0.1", 18830)
    assert "listener 18830 127.0.0.1" in text
    assert "allow_anonymous true" in text
    assert "persistence false" in text
    assert resolve_backend("auto") in ("mosquitto", "amqtt")


def test_topic_template_follows_the_bridge_subscription() -> None:
    assert topic_template_for("meters/+/reading") == "meters/{meter_id}/reading"
    assert topic_template_for("site-a/meters/+") == "site-a/meters/{meter_id}"
    for bad in ("meters/#", "meters/+/+/reading", "meters/reading", "m/{x}/+"):
        with pytest.raises(ValueError):
            topic_template_for(bad)

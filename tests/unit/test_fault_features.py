"""Readings gathered from normalised samples, and the physics features of a connector."""

from __future__ import annotations

import math
import pickle
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from bus.normalized import MeterSample
from models.features import FEATURES, PHYSICAL_RANGE, STATIC_LIMITS, ConnectorFeatures
from models.readings import Reading, readings_from_samples

T0 = datetime(2026, 7, 1, 12, tzinfo=UTC)


def sample(
    measurand: str,
    value: str,
    unit: str,
    *,
    phase: str | None = None,
    location: str = "Outlet",
    evse: int | None = 1,
    at: datetime = T0,
    multiplier: int = 0,
) -> MeterSample:
    return MeterSample(
        charge_point_id="CP1",
        evse_id=evse,
        connector_id=evse,
        timestamp=at,
        measurand=measurand,
        phase=phase,
        unit=unit,
        unit_multiplier=multiplier,
        context="Sample.Periodic",
        location=location,
        value=Decimal(value),
    )


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


# ----------------------------------------------------------------------------- readings


def test_samples_group_by_station_evse_and_time() -> None:
    readings = readings_from_samples(
        [
            sample("Power.Active.Import", "7000", "W"),
            sample("Power.Active.Import", "3000", "W", evse=2),
            sample("Power.Active.Import", "7100", "W", at=at(1)),
            sample("Voltage", "230", "V", evse=None),
        ]
    )
    assert [(key, r.time, r.power_w) for key, r in readings] == [
        (("CP1", 1), T0, 7000.0),
        (("CP1", 2), T0, 3000.0),
        (("CP1", 1), at(1), 7100.0),
        (("CP1", 0), T0, None),
    ]


def test_per_phase_power_is_summed_and_an_unphased_total_wins() -> None:
    phased = [
        sample("Power.Active.Import", v, "W", phase=p)
        for p, v in (("L1", "2000"), ("L2", "2100"), ("L3", "1900"))
    ]
    [(_, only_phases)] = readings_from_samples(phased)
    [(_, with_total)] = readings_from_samples([*phased, sample("Power.Active.Import", "6.1", "kW")])
    assert only_phases.power_w == 6000.0
    assert with_total.power_w == 6100.0


def test_units_and_multipliers_are_applied() -> None:
    [(_, r)] = readings_from_samples(
        [
            sample("Energy.Active.Import.Register", "125", "Wh", multiplier=2),
            sample("Power.Offered", "22", "kW"),
        ]
    )
    assert (r.energy_wh, r.offered_w) == (12500.0, 22000.0)


def test_the_hottest_phase_and_sensor_count_but_never_the_ev() -> None:
    [(_, r)] = readings_from_samples(
        [
            sample("Current.Import", "15", "A", phase="L1"),
            sample("Current.Import", "17", "A", phase="L2"),
            sample("Temperature", "35", "Celsius", location="Outlet"),
            sample("Temperature", "41", "Celcius", location="Cable"),
            sample("Temperature", "60", "Celsius", location="EV"),
            sample("Temperature", "99", "Rankine", location="Body"),
        ]
    )
    assert (r.current_a, r.temperature_c) == (17.0, 41.0)


def test_phase_voltages_keep_line_order_and_skip_line_to_line() -> None:
    [(_, r)] = readings_from_samples(
        [
            sample("Voltage", "229", "V", phase="L3-N"),
            sample("Voltage", "231", "V", phase="L1-N"),
            sample("Voltage", "400", "V", phase="L1-L2"),
        ]
    )
    assert r.voltages_v == (231.0, 229.0)


# ----------------------------------------------------------------------------- features


def idle(
    minutes: float,
    *,
    temp: float = 25.0,
    volts: tuple[float, ...] = (232.0,),
    energy: float = 1000.0,
) -> Reading:
    return Reading(
        time=at(minutes), energy_wh=energy, power_w=0.0, voltages_v=volts, temperature_c=temp
    )


def loaded(
    minutes: float,
    *,
    power: float = 11000.0,
    offered: float | None = 11000.0,
    temp: float | None = 36.0,
    volts: tuple[float, ...] = (230.0,),
    energy: float | None = 1000.0,
) -> Reading:
    return Reading(
        time=at(minutes),
        energy_wh=energy,
        power_w=power,
        offered_w=offered,
        voltages_v=volts,
        temperature_c=temp,
    )


def test_every_feature_has_a_physical_range_and_a_static_limit() -> None:
    assert set(FEATURES) == set(PHYSICAL_RANGE) == set(STATIC_LIMITS)


def test_temperature_rise_is_measured_against_the_idle_ambient() -> None:
    f = ConnectorFeatures()
    f.update(idle(0, temp=20.0))
    x = f.update(loaded(1, power=10000.0, temp=35.0))
    assert x["temperature_rise_c"] == 15.0
    assert x["temperature_rise_c_per_kw"] == 1.5


def test_ambient_follows_idle_readings_only() -> None:
    f = ConnectorFeatures(baseline_weight=0.5)
    f.update(idle(0, temp=20.0))
    f.update(loaded(1, temp=50.0))
    assert f.ambient_c == 20.0
    f.update(idle(2, temp=30.0))
    assert f.ambient_c == 25.0


def test_no_temperature_feature_before_any_idle_reading() -> None:
    x = ConnectorFeatures().update(loaded(0))
    assert "temperature_rise_c" not in x
    assert "temperature_rise_c_per_kw" not in x


def test_voltage_drop_is_against_the_idle_voltage_and_only_under_load() -> None:
    f = ConnectorFeatures()
    f.update(idle(0, volts=(230.0, 230.0, 230.0)))
    x = f.update(loaded(1, volts=(220.0, 221.0, 219.0)))
    assert x["voltage_drop_ratio"] == pytest.approx(10.0 / 230.0)
    assert x["phase_voltage_spread_ratio"] == pytest.approx(2.0 / 220.0)
    assert "voltage_drop_ratio" not in f.update(idle(2, volts=(220.0,)))


def test_a_lost_phase_shows_as_spread() -> None:
    f = ConnectorFeatures()
    x = f.update(loaded(0, volts=(230.0, 231.0, 0.0)))
    assert x["phase_voltage_spread_ratio"] > 1.0


def test_voltage_deviation_from_nominal_is_signed() -> None:
    f = ConnectorFeatures()
    assert f.update(idle(0, volts=(207.0,)))["voltage_deviation_ratio"] == pytest.approx(-0.1)
    assert f.update(idle(1, volts=(253.0,)))["voltage_deviation_ratio"] == pytest.approx(0.1)


def test_delivered_ratio_needs_load_and_an_offer() -> None:
    f = ConnectorFeatures()
    assert f.update(loaded(0, power=4000.0, offered=11000.0))["delivered_ratio"] == pytest.approx(
        4 / 11
    )
    assert "delivered_ratio" not in f.update(loaded(1, offered=None))
    assert "delivered_ratio" not in f.update(loaded(2, power=500.0))


def test_register_ratio_compares_the_register_with_the_power_integral() -> None:
    f = ConnectorFeatures()
    f.update(loaded(0, power=12000.0, energy=1000.0))
    healthy = f.update(loaded(1, power=12000.0, energy=1200.0))
    frozen = f.update(loaded(2, power=12000.0, energy=1200.0))
    jump = f.update(loaded(3, power=12000.0, energy=2200.0))
    assert healthy["register_ratio"] == pytest.approx(1.0)
    assert frozen["register_ratio"] == 0.0
    assert jump["register_ratio"] == pytest.approx(5.0)


def test_no_register_ratio_over_a_negligible_integral() -> None:
    f = ConnectorFeatures()
    f.update(idle(0))
    assert "register_ratio" not in f.update(idle(10))


def test_a_late_reading_gets_instant_features_and_leaves_the_state_alone() -> None:
    f = ConnectorFeatures()
    f.update(idle(0, temp=20.0))
    f.update(loaded(5, energy=1000.0))
    state = pickle.dumps(f)
    late = f.update(loaded(3, temp=30.0, energy=5000.0))
    assert late["temperature_rise_c"] == 10.0
    assert "register_ratio" not in late
    assert pickle.dumps(f) == state


def test_state_is_small() -> None:
    f = ConnectorFeatures()
    for i in range(100):
        f.update(idle(2 * i))
        f.update(loaded(2 * i + 1))
    assert len(pickle.dumps(f)) < 1024


def test_delivered_over_offered_is_judged_early_in_a_run_under_load_not_in_the_taper() -> None:
    """An EV above ~80 % state of charge draws less and less of the offer: that is no
    damaged cable, so the ratio is only taken in the first 20 minutes under load, and a
    new run (after an interruption or a new session) starts the window again."""
    t = datetime(2026, 7, 1, tzinfo=UTC)
    features = ConnectorFeatures()

    def at(minute: int, power_w: float) -> dict[str, float]:
        reading = Reading(
            time=t + timedelta(minutes=minute),
            energy_wh=None,
            power_w=power_w,
            offered_w=11_000.0,
        )
        return features.update(reading)

    early = [at(m, 11_000.0).get("delivered_ratio") for m in range(0, 25, 5)]
    assert early == [1.0, 1.0, 1.0, 1.0, 1.0]
    tapering = [at(m, 11_000.0 * (1 - m / 200)) for m in range(30, 120, 5)]
    assert all("delivered_ratio" not in x for x in tapering)
    assert at(120, 0.0).get("delivered_ratio") is None  # the EV is done
    assert at(125, 5_000.0)["delivered_ratio"] == pytest.approx(5_000 / 11_000)


def test_rise_per_kw_is_judged_near_the_runs_peak_power_not_in_the_taper() -> None:
    """In a taper the power falls to a tenth while the ambient estimate may be degrees
    off: per kW that error would look like an overheating contact."""
    f = ConnectorFeatures()
    f.update(idle(0, temp=20.0))
    assert f.update(loaded(1, power=10000.0, temp=32.0))["temperature_rise_c_per_kw"] == 1.2
    assert "temperature_rise_c_per_kw" in f.update(loaded(2, power=8500.0, temp=31.0))
    taper = f.update(loaded(3, power=2000.0, temp=28.0))
    assert "temperature_rise_c_per_kw" not in taper
    assert taper["temperature_rise_c"] == 8.0  # the absolute rise is still there
    f.update(idle(4, temp=20.0))  # a new run under load has its own peak
    assert f.update(loaded(5, power=3000.0, temp=24.0))["temperature_rise_c_per_kw"] == 4 / 3


def test_load_change_says_how_steady_the_register_ratios_interval_was() -> None:
    f = ConnectorFeatures()
    f.update(loaded(0, power=10000.0, energy=1000.0))
    steady = f.update(loaded(1, power=10100.0, energy=1168.0))
    taper = f.update(loaded(2, power=9000.0, energy=1326.0))
    assert steady["load_change_ratio"] == pytest.approx(100 / 10100)
    assert taper["load_change_ratio"] == pytest.approx(1100 / 10100)
    assert "register_ratio" in taper  # the register rule reads it on every pair


def test_an_idle_reading_hours_after_the_last_replaces_the_stale_ambient() -> None:
    f = ConnectorFeatures()
    f.update(idle(0, temp=15.0))
    f.update(idle(5, temp=15.4))  # minutes apart: smoothed (the sensor's noise)
    assert f.ambient_c == pytest.approx(15.0 + 0.4 * (1 - math.exp(-5 / 30)))
    f.update(idle(5 + 4 * 60, temp=24.0))  # after four hours busy: the ambient now
    assert f.ambient_c == pytest.approx(24.0, abs=0.01)


def test_the_day_profile_bridges_hours_without_an_idle_reading() -> None:
    """A connector busy every mid-morning has no 10 o'clock bin: the ambient follows the
    profile across the gap instead of falling back to the morning's idle value."""
    f = ConnectorFeatures()
    f.ambient_profile[8], f.ambient_profile[11] = 16.0, 22.0  # 08:30 and 11:30
    f.ambient_c, f.ambient_time = 16.0, T0.replace(hour=8, minute=30)
    assert f.ambient_at(T0.replace(hour=10, minute=0)) == pytest.approx(19.0)
    assert f.ambient_at(T0.replace(hour=11, minute=30)) == pytest.approx(22.0)
    assert f.ambient_at(T0.replace(hour=8, minute=30)) == pytest.approx(16.0)

"""The fault library without a network: plans and ground truth repeat under a seed,
each scenario bends its physics the way its label says, healthy stations stay in band."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bus.alerts import AlertKind
from ingest.simulator.behaviours.faults import SCENARIOS, plan_faults, scenario_for
from ingest.simulator.ground_truth import Manifest, read_ground_truth, write_ground_truth
from ingest.simulator.profiles import STATION_MODELS, Grid, Weather, measure

START = datetime(2026, 7, 1, tzinfo=UTC)
STATIONS = [f"SIM-{i:04d}" for i in range(1, 21)]


def test_every_scenario_is_labelled_with_an_alert_kind() -> None:
    assert all(isinstance(cls.label, AlertKind) for cls in SCENARIOS.values())
    assert len(SCENARIOS) >= 10


def test_plans_repeat_under_their_seed_and_differ_across_seeds() -> None:
    a = plan_faults("auto:0.5", STATIONS, START, seed=1)
    assert a == plan_faults("auto:0.5", STATIONS, START, seed=1)
    assert a != plan_faults("auto:0.5", STATIONS, START, seed=2)
    assert 3 <= len(a) <= 17
    for f in a:
        assert START + timedelta(days=2) <= f.onset <= START + timedelta(days=12)
        assert f.hard_failure is None or f.hard_failure >= f.onset
        assert f.progressive == (f.hard_failure is not None and f.hard_failure > f.onset)


def test_explicit_faults_have_their_times_and_bad_specs_say_why() -> None:
    [f] = plan_faults("contactor:SIM-0003@2h+6h", STATIONS, START, 0)
    assert (f.onset, f.hard_failure) == (START + timedelta(hours=2), START + timedelta(hours=8))
    [g] = plan_faults("ground_fault:SIM-0001@1h", STATIONS, START, 0)
    assert g.hard_failure == g.onset
    assert not g.progressive
    with pytest.raises(ValueError, match="no station"):
        plan_faults("comm:CP-9@1h", STATIONS, START, 0)
    with pytest.raises(ValueError, match="not a duration"):
        plan_faults("comm:SIM-0001@soon", STATIONS, START, 0)
    with pytest.raises(ValueError, match="no hard failure"):
        plan_faults("meter_jump:SIM-0001@1h+2h", STATIONS, START, 0)


def test_an_auto_window_takes_decimal_durations() -> None:
    faults = plan_faults("auto:1.0@2.5h..3.5h", STATIONS[:4], START, 3)
    assert len(faults) == 4
    for fault in faults:
        assert timedelta(hours=2.5) <= fault.onset - START <= timedelta(hours=3.5)


def test_the_ground_truth_file_round_trips(tmp_path: Path) -> None:
    faults = plan_faults("auto:1.0@1h..5h", STATIONS[:5], START, 3)
    path = tmp_path / "truth.jsonl"
    write_ground_truth(path, Manifest(tuple(STATIONS[:5]), START, None, 3, len(faults)), faults)
    back = read_ground_truth(path)
    assert back.faults == tuple(faults)
    assert back.manifest.faults == 5
    path.write_text(path.read_text() + "{not json\n")
    with pytest.raises(ValueError, match="ground truth line 7"):
        read_ground_truth(path)


def _rise_per_kw(name: str, at: datetime) -> float:
    [fault] = plan_faults(f"{name}:SIM-0001@1h+5h", STATIONS, START, 4)
    effect = scenario_for(fault).effect(1, at)
    model = STATION_MODELS["SIM-AC22"]
    e = measure(
        model,
        power_w=11_000.0,
        offered_w=11_000.0,
        ambient_c=20.0,
        grid_v=(230.0,) * 3,
        rng=random.Random(0),
        thermal_factor=effect.thermal_factor if effect else 1.0,
    )
    return (e.temperature_c - 20.0) / 11.0


def test_overheating_grows_the_temperature_rise_per_kw() -> None:
    rises = [_rise_per_kw("overheating", START + timedelta(hours=h)) for h in (0.5, 2, 4, 6)]
    assert rises == sorted(rises)
    assert rises[-1] > 2.5 * rises[0]


def test_contactor_wear_grows_the_drop_on_one_pole_then_starts_fail() -> None:
    [fault] = plan_faults("contactor:SIM-0001@1h+10h", STATIONS, START, 4)
    scenario = scenario_for(fault)
    drops = [scenario.effect(1, START + timedelta(hours=h)) for h in (2, 6, 10)]
    firsts = [d.pole_drops_v[0] for d in drops if d]
    assert firsts == sorted(firsts)
    assert firsts[-1] > 10
    assert drops[-1] is not None
    assert drops[-1].pole_drops_v[1] == 0
    early = [scenario.refuses_start(1, START + timedelta(hours=3, minutes=m)) for m in range(60)]
    late = [scenario.refuses_start(1, START + timedelta(hours=10, minutes=m)) for m in range(60)]
    assert not any(early)
    assert sum(late) > 20


def test_cable_damage_delivers_less_and_interrupts() -> None:
    [fault] = plan_faults("cable:SIM-0001@1h+8h", STATIONS, START, 4)
    scenario = scenario_for(fault)
    late = [scenario.effect(1, START + timedelta(hours=8, minutes=m)) for m in range(60)]
    factors = [e.delivered_factor for e in late if e]
    assert max(factors) < 0.6
    assert factors.count(0.0) > 5
    assert scenario.effect(1, START + timedelta(minutes=30)) is None


def test_meter_faults_bend_the_register() -> None:
    [frozen] = plan_faults("meter_frozen:SIM-0001@1h", STATIONS, START, 4)
    effect = scenario_for(frozen).effect(1, START + timedelta(hours=2))
    assert effect is not None
    assert effect.register_factor == 0.0
    [jump] = plan_faults("meter_jump:SIM-0001@1h", STATIONS, START, 4)
    jumper = scenario_for(jump)
    jumps = [jumper.effect(1, START + timedelta(hours=1, minutes=m)) for m in range(5)]
    assert [e.register_jump_wh > 10_000 for e in jumps if e] == [True]


def test_grid_sags_go_below_the_en50160_band() -> None:
    [fault] = plan_faults("grid_sag:SIM-0001@1h+5h", STATIONS, START, 4)
    scenario = scenario_for(fault)
    levels = [scenario.effect(1, START + timedelta(hours=5, minutes=m)) for m in range(60)]
    assert min(e.grid_factors[0] for e in levels if e) * 230 < 207
    assert fault.connector_id == 0


def test_healthy_stations_stay_in_plausible_bands_and_fool_a_static_threshold() -> None:
    weather, grid, rng = Weather(seed=3), Grid(seed=3), random.Random(3)
    rises, voltages = [], []
    for hour in range(0, 24 * 14, 1):
        at = datetime(2026, 7, 1, tzinfo=UTC) + timedelta(hours=hour)
        for model in STATION_MODELS.values():
            e = measure(
                model,
                power_w=model.max_power_w,
                offered_w=model.max_power_w,
                ambient_c=weather.ambient_c(at),
                grid_v=grid.voltages_v(at, model.phases),
                rng=rng,
            )
            rises.append(e.temperature_c - weather.ambient_c(at))
            voltages += list(e.voltages_v)
            assert -5 < weather.ambient_c(at) < 45
    assert all(207 <= v <= 253 for v in voltages)
    assert max(rises) < 20
    # A static 40-degree limit on the absolute temperature trips on a hot afternoon.
    hot = datetime(2026, 7, 15, 15, tzinfo=UTC)
    assert weather.ambient_c(hot) + STATION_MODELS["SIM-AC7"].rise_c_per_kw * 7.4 > 35

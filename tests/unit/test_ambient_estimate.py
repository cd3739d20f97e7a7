"""The ambient estimate of a busy connector: a connector charging across a change of the
weather (here an ambient that steps up at midnight, as the simulator's day offset does)
is not taken for an overheating contact, while a real overheating across the same step
still is. Two parts: an idle neighbour on the same station measures the ambient while
the connector charges, and an estimate hours old is trusted less."""

from __future__ import annotations

from datetime import datetime, timedelta

from bus.alerts import AlertKind, FaultAlert
from models.connector import ConnectorModel
from models.features import ConnectorFeatures
from models.readings import Reading
from models.rules import Finding
from models.station import StationDiagnostics
from tests.support.connectors import T0, ambient_step_station, station_envelopes

STEP_DAY = 4  # the ambient steps up at the midnight that starts July 5
STEP_NIGHT = T0 + timedelta(days=STEP_DAY - 1, hours=21)  # connector 1 charges from here


def overheating_from_the_step_night(at: datetime) -> float:
    """The contact's rise per kW grows to three times its own over the step night's
    first three hours (as the simulator's overheating does) and stays so."""
    progress = (at - STEP_NIGHT) / timedelta(hours=3)
    return 1.0 + 2.0 * min(1.0, max(0.0, progress))


def connector_findings(readings: list[tuple[int, Reading]]) -> list[Finding]:
    """Connector 1 alone (no neighbour), through its own model."""
    model = ConnectorModel.default()
    findings: list[Finding] = []
    for connector, reading in readings:
        if connector == 1:
            findings += [f for f in model.update("CP1", 1, reading) if isinstance(f, Finding)]
    return findings


def station_alerts(readings: list[tuple[int, Reading]]) -> list[FaultAlert]:
    """Both connectors as a 1.6 station reports them, through the station's diagnostics."""
    envelopes = [
        *station_envelopes("CP1", 2, [r for c, r in readings if c == 2], first_tx=1_000),
        *station_envelopes("CP1", 1, [r for c, r in readings if c == 1]),
    ]
    station = StationDiagnostics("CP1")
    alerts: list[FaultAlert] = []
    for envelope in sorted(envelopes, key=lambda e: e.measured_at):
        alerts += station.update(envelope).alerts
    return alerts


def overheating(alerts: list[FaultAlert]) -> list[FaultAlert]:
    return [a for a in alerts if a.alert_kind is AlertKind.CONNECTOR_OVERHEATING]


def test_an_idle_neighbour_measures_the_ambient_across_the_step() -> None:
    readings = ambient_step_station(6, STEP_DAY, step_c=8.0)
    assert station_alerts(readings) == []


def test_a_real_overheating_across_the_same_step_is_still_found() -> None:
    readings = ambient_step_station(
        6, STEP_DAY, step_c=8.0, thermal=overheating_from_the_step_night
    )
    found = overheating(station_alerts(readings))
    assert [(a.connector_id, a.status.value) for a in found][:1] == [(1, "open")]
    assert STEP_NIGHT <= found[0].first_seen <= STEP_NIGHT + timedelta(hours=7)


def test_without_a_neighbour_an_old_ambient_estimate_is_trusted_less() -> None:
    """Connector 1 alone: its last idle reading is from before 21:00; after midnight the
    ambient is 7 degrees warmer, 1.9 per kW at 3.7 kW, with nothing to tell it from a
    hot contact. Three hours old, the estimate's uncertainty covers that."""
    readings = ambient_step_station(6, STEP_DAY, step_c=7.0)
    assert connector_findings(readings) == []


def test_without_a_neighbour_a_real_overheating_is_still_found() -> None:
    readings = ambient_step_station(
        6, STEP_DAY, step_c=7.0, thermal=overheating_from_the_step_night
    )
    findings = connector_findings(readings)
    assert findings
    assert {f.kind for f in findings} == {AlertKind.CONNECTOR_OVERHEATING}
    # At the latest in the next session, whose ambient estimate is fresh again.
    assert STEP_NIGHT <= findings[0].at <= STEP_NIGHT + timedelta(hours=12)


def test_the_estimates_uncertainty_grows_with_its_age() -> None:
    f = ConnectorFeatures()
    f.update(Reading(time=T0, power_w=0.0, temperature_c=20.0))
    sds = [f.ambient_sd_at(T0 + timedelta(hours=h)) or 0.0 for h in (0, 1, 3, 6)]
    assert sds == sorted(sds)
    assert sds[0] > 0.0
    assert sds[-1] > 3 * sds[0]
    x = f.update(Reading(time=T0 + timedelta(hours=3), power_w=3700.0, temperature_c=25.0))
    assert x["temperature_rise_c_per_kw_sd"] == sds[2] / 3.7


def test_a_fresher_neighbour_reading_replaces_the_own_old_ambient() -> None:
    f = ConnectorFeatures()
    f.update(Reading(time=T0, power_w=0.0, temperature_c=20.0))
    later = T0 + timedelta(hours=4)
    x = f.update(
        Reading(time=later, power_w=3700.0, temperature_c=31.0),
        neighbour=(later - timedelta(minutes=5), 27.0),
    )
    assert f.ambient_at(later) == 27.0  # no day profile yet: the neighbour's value
    assert x["temperature_rise_c"] == 4.0
    sd = f.ambient_sd_at(later)
    assert sd is not None
    assert sd < 0.8  # five minutes old, not four hours
    # An older neighbour reading than the own one changes nothing.
    g = ConnectorFeatures()
    g.update(Reading(time=later, power_w=0.0, temperature_c=20.0))
    g.update(Reading(time=later + timedelta(minutes=5), power_w=0.0, temperature_c=20.0),
             neighbour=(T0, 27.0))  # fmt: skip
    assert g.ambient_at(later) == 20.0


def test_the_learned_drift_follows_the_idle_readings_misses() -> None:
    """An idle reading hours after the last that misses the estimate by degrees raises the
    drift per hour; an exact one lowers it, never below the floor."""
    f = ConnectorFeatures()
    f.update(Reading(time=T0, power_w=0.0, temperature_c=20.0))
    prior = f.ambient_drift_c2_per_h
    f.update(Reading(time=T0 + timedelta(hours=2), power_w=0.0, temperature_c=26.0))
    raised = f.ambient_drift_c2_per_h
    assert raised > prior
    for hour in range(4, 200, 2):
        f.update(Reading(time=T0 + timedelta(hours=hour), power_w=0.0, temperature_c=26.0))
    assert 0.0 < f.ambient_drift_c2_per_h < prior


def test_a_long_move_along_the_day_profile_is_trusted_less() -> None:
    """Bins learned on different days differ by those days' weather: the same age with a
    profile that moves 6 degrees is less certain than with a flat one."""
    flat, steep = ConnectorFeatures(), ConnectorFeatures()
    start = T0.replace(hour=23)
    for f, night in ((flat, 14.0), (steep, 8.0)):
        f.ambient_profile = [14.0] * 24
        f.ambient_profile[0] = night  # the 00:30 bin
        f.update(Reading(time=start, power_w=0.0, temperature_c=14.0))
    later = start + timedelta(hours=1, minutes=30)
    assert steep.ambient_at(later) == 8.0
    assert flat.ambient_at(later) == 14.0
    flat_sd, steep_sd = flat.ambient_sd_at(later), steep.ambient_sd_at(later)
    assert flat_sd is not None
    assert steep_sd is not None
    assert steep_sd > flat_sd + 1.0

"""``chargeflow simulate``'s options for how the stations treat charging profiles."""

from __future__ import annotations

import os

import pytest
from typer.testing import CliRunner

from chargeflow.cli import app
from ingest.simulator.run import Options, plan
from ingest.simulator.settings import SimulatorSettings


def options(**extra: object) -> Options:
    return Options(
        stations=3,
        gateway_url="ws://127.0.0.1:9/ocpp",
        sessions=1,
        ocpp_versions=("1.6", "2.0.1"),
        id_tags=("SIM-TAG-001",),
        **extra,  # type: ignore[arg-type]
    )


@pytest.fixture
def defaults(monkeypatch: pytest.MonkeyPatch) -> SimulatorSettings:
    for name in [n for n in os.environ if n.startswith("CHARGEFLOW_")]:
        monkeypatch.delenv(name)
    return SimulatorSettings()


def test_stations_that_ignore_or_reject_profiles_and_the_reaction_time(
    defaults: SimulatorSettings,
) -> None:
    fleet = plan(
        defaults,
        options(profile_behaviour="SIM-0002=ignore,SIM-0003=reject", profile_reaction_s=12),
    ).fleet
    assert fleet.profile_behaviour == {"SIM-0002": "ignore", "SIM-0003": "reject"}
    assert fleet.profile_reaction_s == 12
    plain = plan(defaults, options()).fleet
    assert (plain.profile_behaviour, plain.profile_reaction_s) == ({}, 5.0)


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ("SIM-0002=sulk", "is not STATION=one of"),
        ("SIM-0002", "is not STATION=one of"),
        ("SIM-0042=ignore", "no station SIM-0042 in this fleet (SIM-0001...SIM-0003)"),
    ],
)
def test_a_bad_profile_behaviour_is_refused_before_anything_runs(
    defaults: SimulatorSettings, given: str, said: str
) -> None:
    with pytest.raises(ValueError, match="--profile-behaviour") as raised:
        plan(defaults, options(profile_behaviour=given))
    assert said in str(raised.value)
    result = CliRunner().invoke(
        app, ["simulate", "--stations", "3", "--profile-behaviour", given, "--sessions", "1"]
    )
    assert result.exit_code == 2
    assert said in " ".join(result.output.replace("│", " ").split())  # rich wraps it in a box

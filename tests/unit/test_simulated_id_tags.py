"""The simulated fleet's driver cards: enough of them that the simulation never puts one
card on two stations at once."""

from __future__ import annotations

from pathlib import Path

from bench.faults.pipeline import FleetSpec, id_tag_count, simulator_argv
from chargeflow.launcher import SIMULATED_ID_TAGS, simulated_id_tags


def test_the_cards_are_numbered_and_the_first_twenty_are_make_runs() -> None:
    tags = simulated_id_tags(300)
    assert len(set(tags)) == 300
    assert tags[:20] == SIMULATED_ID_TAGS
    assert tags[-1] == "SIM-TAG-300"


def test_the_evaluation_fleet_gets_more_cards_than_connectors() -> None:
    spec = FleetSpec(stations=100)
    argv = simulator_argv(spec, "ws://127.0.0.1:1/ocpp", Path("truth.jsonl"))
    count = int(argv[argv.index("--id-tags") + 1])
    assert count == id_tag_count(100) >= 2 * 100  # at most two connectors per station

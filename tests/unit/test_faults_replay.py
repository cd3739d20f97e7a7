"""The in-process replay of the faults evaluation (bench.faults): our connector models
and the static-threshold baseline over the same synthetic fleet (MeterValues envelopes
as a 1.6 station sends them), scored against its ground truth."""

from __future__ import annotations

import heapq
import json
import pickle
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

from bench.faults.__main__ import evaluate, main
from bench.faults.pipeline import PipelineRun
from bench.faults.replay import MODELS, compare_alerts, merge_by_received, replay
from bench.faults.score import score
from bus.alerts import AlertKind, AlertStatus
from bus.envelope import Envelope
from ingest.simulator.ground_truth import GroundTruth, InjectedFault, Manifest
from models.connector import ConnectorModel
from models.features import STATIC_LIMITS
from models.rules import Finding
from models.station import StationDiagnostics
from tests.support.builders import iso
from tests.support.connectors import (
    Fault,
    cable_damage,
    fault_start,
    overheating,
    station_envelopes,
    stream,
)

# Station -> the fault it develops over its last day (None: healthy for six days).
FLEET: dict[str, tuple[Fault, AlertKind] | None] = {
    "S1": (overheating, AlertKind.CONNECTOR_OVERHEATING),
    "S2": (cable_damage, AlertKind.CABLE_DAMAGE),
    "S3": None,
}


@dataclass(frozen=True)
class Fleet:
    truth: GroundTruth
    envelopes: list[Envelope]

    def truth_lines(self) -> str:
        """The ground truth as the simulator writes it (manifest first)."""
        m = self.truth.manifest
        assert m.end is not None
        manifest = {"stations": list(m.stations), "start": iso(m.start), "end": iso(m.end)}
        records: list[dict[str, Any]] = [{**manifest, "seed": m.seed, "faults": m.faults}]
        for f in self.truth.faults:
            assert f.hard_failure is not None
            records.append(
                {
                    "station_id": f.station_id,
                    "connector_id": f.connector_id,
                    "label": f.label.value,
                    "scenario": f.scenario,
                    "onset": iso(f.onset),
                    "hard_failure": iso(f.hard_failure),
                    "progressive": f.progressive,
                    "seed": f.seed,
                }
            )
        return "".join(json.dumps(r) + "\n" for r in records)


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    streams: list[list[Envelope]] = []
    faults: list[InjectedFault] = []
    for n, (station, spec) in enumerate(FLEET.items()):
        readings = stream(6, seed=11 + n, fault=spec[0] if spec else None)
        streams.append(station_envelopes(station, 1, readings, first_tx=1000 * (n + 1)))
        if spec is not None:
            onset, hard = fault_start(readings), readings[-1].time  # full size at the end
            faults.append(InjectedFault(station, 1, spec[1], spec[0].__name__, onset, hard, True))
    start, end = streams[0][0].received_at, streams[0][-1].received_at + timedelta(minutes=1)
    manifest = Manifest(tuple(FLEET), start, end, 1, len(faults))
    envelopes = list(heapq.merge(*streams, key=lambda e: e.received_at))
    return Fleet(GroundTruth(manifest, tuple(faults)), envelopes)


def test_ours_finds_every_fault_hours_ahead_and_nothing_on_the_healthy_station(
    fleet: Fleet,
) -> None:
    result = replay(fleet.envelopes, MODELS["ours"])
    overall = score(fleet.truth, result.alerts, resamples=0)["overall"]
    assert overall["recall_progressive"] == 1.0
    assert overall["false_alerts"] == 0
    assert overall["lead_minutes"]["p10"] >= 180
    assert {a.station_id for a in result.alerts} == {"S1", "S2"}


def test_the_static_baseline_runs_on_the_same_stream_and_warns_later(fleet: Fleet) -> None:
    ours = score(fleet.truth, replay(fleet.envelopes, MODELS["ours"]).alerts, resamples=0)
    static_run = replay(fleet.envelopes, MODELS["static"])
    static = score(fleet.truth, static_run.alerts, resamples=0)
    assert {a.detector for a in static_run.alerts} <= {"model:static", "rule:frozen_register"}
    # Fixed limits see cable damage only once delivered power is below half of offered,
    # and this overheating never crosses the datasheet limits.
    assert static["by_kind"]["cable_damage"]["detected"] == 1
    assert static["by_kind"]["connector_overheating"]["detected"] == 0
    assert (
        static["by_kind"]["cable_damage"]["lead_minutes"]["p50"]
        < ours["by_kind"]["cable_damage"]["lead_minutes"]["p50"]
    )


def test_a_static_model_alerts_from_its_first_reading_past_a_limit() -> None:
    model = ConnectorModel.static(persistence=1)
    readings = stream(1, seed=3)
    idle = readings[0]
    loaded = next(r for r in readings if r.power_w and r.power_w > 3000)
    _, high = STATIC_LIMITS["temperature_rise_c"]
    assert model.update("CP1", 1, idle) == []
    assert idle.temperature_c is not None
    [finding] = model.update("CP1", 1, replace(loaded, temperature_c=idle.temperature_c + high + 5))
    assert isinstance(finding, Finding)
    assert finding.kind is AlertKind.CONNECTOR_OVERHEATING
    assert finding.detector == "model:static"
    assert finding.evidence.scores["z_temperature_rise_c"] > 0


def test_the_replay_is_deterministic_and_the_comparison_sees_a_difference(fleet: Fleet) -> None:
    first = replay(fleet.envelopes, MODELS["ours"]).alerts
    again = replay(fleet.envelopes, MODELS["ours"]).alerts
    assert compare_alerts(first, again)["same"] is True
    changed = [msgspec.structs.replace(first[0], status=AlertStatus.ACKNOWLEDGED), *first[1:]]
    diff = compare_alerts(first, changed[:-1])
    assert diff["same"] is False
    assert (diff["differing"], diff["only_in_replay"], diff["only_in_pipeline"]) == (1, 1, 0)


def test_throughput_and_state_are_measured_and_the_state_pickles(fleet: Fleet) -> None:
    result = replay(fleet.envelopes[: len(fleet.envelopes) // 2], MODELS["static"])
    report = result.report()
    assert report["envelopes"] == len(fleet.envelopes) // 2
    assert report["samples"] > report["envelopes"]  # several sampled values per MeterValues
    assert report["samples_per_s_per_worker"] > 0
    assert 500 < report["state_bytes_per_connector"] < 8192
    station = result.diagnostics["S1"]
    clone: StationDiagnostics = pickle.loads(pickle.dumps(station))
    rest = [e for e in fleet.envelopes[len(fleet.envelopes) // 2 :] if e.charge_point_id == "S1"]
    assert [station.update(e).alerts for e in rest] == [clone.update(e).alerts for e in rest]


def test_merging_topics_keeps_each_topics_order(fleet: Fleet) -> None:
    s1 = [e for e in fleet.envelopes[:50] if e.charge_point_id == "S1"]
    s2 = [e for e in fleet.envelopes[:50] if e.charge_point_id == "S2"]
    merged = merge_by_received(list(reversed(s1)), s2)  # one stream out of time order
    assert [e for e in merged if e.charge_point_id == "S1"] == list(reversed(s1))
    assert [e for e in merged if e.charge_point_id == "S2"] == s2


def test_evaluate_puts_ours_and_static_side_by_side_and_checks_the_pipeline(
    fleet: Fleet,
) -> None:
    pipeline = replay(fleet.envelopes, MODELS["ours"]).alerts  # what a correct flow writes
    result = evaluate(fleet.truth, fleet.envelopes, pipeline, resamples=50)
    assert result["determinism"]["same"] is True
    table = result["side_by_side"]
    assert table["overall"]["recall_progressive"] == {"ours": 1.0, "static": 0.5}
    assert table["connector_overheating"]["recall_progressive"]["static"] == 0.0
    assert result["targets"]["ours"]["met"]["recall_progressive"] is True
    assert result["targets"]["static"]["met"]["recall_progressive"] is False
    assert result["fleet"]["healthy_stations"] == 1
    assert result["scores"]["ours"]["overall"]["recall_progressive_ci95"] is not None
    lossy = evaluate(fleet.truth, fleet.envelopes, pipeline[1:], resamples=0)
    assert lossy["determinism"]["only_in_replay"] == 1
    open_end = replace(fleet.truth, manifest=replace(fleet.truth.manifest, end=None))
    unended = evaluate(open_end, fleet.envelopes, resamples=0)
    assert unended["fleet"]["end"] == fleet.envelopes[-1].measured_at.isoformat()
    assert "determinism" not in unended


def test_a_saved_run_is_scored_again_by_the_command(
    fleet: Fleet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    alerts = replay(fleet.envelopes, MODELS["ours"]).alerts
    PipelineRun(fleet.truth_lines(), fleet.envelopes, alerts).save(tmp_path / "run")
    loaded = PipelineRun.load(tmp_path / "run")
    assert loaded.truth == fleet.truth
    assert loaded.envelopes == fleet.envelopes
    assert loaded.alerts == alerts
    assert main(["--from", str(tmp_path / "run"), "--resamples", "0"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["determinism"]["same"] is True
    assert printed["pipeline"] == {
        "simulate_s": 0.0,
        "drain_s": 0.0,
        "envelopes": len(fleet.envelopes),
        "alerts": len(alerts),
    }
    assert printed["side_by_side"]["overall"]["recall_progressive"] == {"ours": 1.0, "static": 0.5}
    assert printed["replay"]["static"]["samples_per_s_per_worker"] > 0

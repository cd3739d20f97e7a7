"""The evaluation's ground-truth reader and event-wise scoring (bench.faults)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

from bench.faults.score import Matching, Verdict, assess, bootstrap, latest_versions, score
from bench.faults.score import recall_progressive as recall_of
from bus.alerts import AlertKind, AlertStatus, Evidence, FaultAlert, Severity, alert_id
from ingest.simulator.ground_truth import (
    GroundTruth,
    GroundTruthError,
    InjectedFault,
    Manifest,
    parse_ground_truth,
    read_ground_truth,
)

T = datetime(2026, 7, 1, tzinfo=UTC)
H = timedelta(hours=1)
HOT = AlertKind.CONNECTOR_OVERHEATING
GRID = AlertKind.GRID_IRREGULARITY
GROUND = AlertKind.GROUND_FAULT
MANIFEST = {
    "stations": ["S1", "S2", "S3", "S4"],
    "start": "2026-07-01T00:00:00Z",
    "end": "2026-07-11T00:00:00Z",
    "seed": 9,
    "faults": 1,
}
FAULT = {
    "station_id": "S1",
    "connector_id": 1,
    "label": "connector_overheating",
    "scenario": "overheating",
    "onset": "2026-07-05T00:00:00Z",
    "hard_failure": "2026-07-05T12:00:00Z",
    "progressive": True,
    "seed": 3,
}


def lines(*records: dict[str, Any]) -> list[str]:
    return [json.dumps(r) for r in records]


def alert(
    station: str,
    at: datetime,
    kind: AlertKind = HOT,
    connector: int = 1,
    status: AlertStatus = AlertStatus.OPEN,
    last_seen: datetime | None = None,
) -> FaultAlert:
    return FaultAlert(
        alert_id=alert_id(station, connector, kind, at),
        station_id=station,
        connector_id=connector,
        alert_kind=kind,
        severity=Severity.HIGH,
        status=status,
        first_seen=at,
        last_seen=last_seen or at,
        detector="model:test",
        evidence=Evidence(at=at, summary="test"),
        recommended_action="",
    )


def fault(
    station: str,
    onset: datetime,
    hard: datetime | None,
    kind: AlertKind = HOT,
    connector: int = 1,
    progressive: bool = True,
) -> InjectedFault:
    return InjectedFault(station, connector, kind, kind.value, onset, hard, progressive)


def truth(*faults: InjectedFault, stations: int = 4, days: int = 10) -> GroundTruth:
    ids = tuple(f"S{n}" for n in range(1, stations + 1))
    return GroundTruth(Manifest(ids, T, T + timedelta(days=days), 1, len(faults)), faults)


# ------------------------------------------------------------------ reading the ground truth


def test_the_ground_truth_reads_manifest_line_and_faults() -> None:
    parsed = parse_ground_truth(lines(MANIFEST, FAULT))
    assert parsed.manifest.stations == ("S1", "S2", "S3", "S4")
    assert parsed.manifest.station_days == 40.0
    [f] = parsed.faults
    assert (f.station_id, f.connector_id, f.label, f.progressive, f.seed) == ("S1", 1, HOT, True, 3)
    assert f.hard_failure is not None
    assert f.hard_failure - f.onset == 12 * H
    assert parsed.healthy_stations() == ["S2", "S3", "S4"]


def test_the_manifest_may_be_a_sidecar_and_hard_failure_null(tmp_path: Path) -> None:
    path, sidecar = tmp_path / "truth.jsonl", tmp_path / "manifest.json"
    path.write_text(
        "\n".join(lines({**FAULT, "hard_failure": None, "progressive": False})) + "\n\n"
    )
    sidecar.write_text(json.dumps(MANIFEST))
    parsed = read_ground_truth(path, sidecar)
    assert parsed.faults[0].hard_failure is None
    assert parsed.manifest.seed == 9


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ([MANIFEST, {**FAULT, "label": "overheated"}], "line 2: 'overheated' is not a valid"),
        (
            [MANIFEST, {k: v for k, v in FAULT.items() if k != "onset"}],
            "line 2: missing field 'onset'",
        ),
        ([MANIFEST, {**FAULT, "onset": "2026-07-05T00:00:00"}], "line 2: timestamp without UTC"),
        ([MANIFEST, {**FAULT, "progressive": "yes"}], "line 2: progressive must be true or false"),
        ([MANIFEST, {**FAULT, "station_id": "S9"}], "line 2: station 'S9' is not in the run"),
        ([MANIFEST, FAULT, FAULT], "announces 1 faults, the file has 2"),
        ([FAULT], "line 1: no run manifest before the first fault"),
        ([{**MANIFEST, "end": MANIFEST["start"]}], "line 1: end must be after start"),
        ([MANIFEST, MANIFEST], "line 2: a second run manifest"),
    ],
)
def test_bad_ground_truth_says_which_line_and_why(records: list[Any], message: str) -> None:
    with pytest.raises(GroundTruthError, match=message.replace("(", r"\(")):
        parse_ground_truth(lines(*records))


def test_a_line_that_is_not_json_is_a_ground_truth_error() -> None:
    with pytest.raises(GroundTruthError, match="line 2"):
        parse_ground_truth([json.dumps(MANIFEST), "{not json"])


# ------------------------------------------------------------------ matching


def test_an_alert_matches_on_station_connector_kind_and_window() -> None:
    f = fault("S1", T + 100 * H, T + 110 * H)
    m = Matching(tolerance=timedelta(minutes=10), grace=timedelta(minutes=30))
    assert m.matches(f, alert("S1", T + 100 * H - timedelta(minutes=10)))
    assert not m.matches(f, alert("S1", T + 100 * H - timedelta(minutes=11)))
    assert m.matches(f, alert("S1", T + 110 * H + timedelta(minutes=30)))
    assert not m.matches(f, alert("S1", T + 110 * H + timedelta(minutes=31)))
    assert not m.matches(f, alert("S2", T + 105 * H))
    assert not m.matches(f, alert("S1", T + 105 * H, connector=2))
    assert not m.matches(f, alert("S1", T + 105 * H, kind=GRID))


def test_a_station_level_fault_matches_any_connector_and_an_open_end_uses_the_window() -> None:
    f = fault("S1", T + 100 * H, None, kind=GRID, connector=0, progressive=False)
    m = Matching(window=timedelta(hours=6), grace=timedelta(0))
    assert m.matches(f, alert("S1", T + 101 * H, kind=GRID, connector=2))
    assert m.matches(f, alert("S1", T + 106 * H, kind=GRID, connector=0))
    assert not m.matches(f, alert("S1", T + 106 * H + timedelta(seconds=1), kind=GRID))


def test_one_episode_counts_once_and_later_alerts_are_duplicates() -> None:
    t = truth(fault("S1", T + 100 * H, T + 110 * H))
    alerts = [alert("S1", T + 104 * H), alert("S1", T + 102 * H), alert("S1", T + 108 * H)]
    judged = assess(t, alerts)
    [outcome] = judged.outcomes
    assert [a.first_seen for a in outcome.alerts] == [T + 102 * H, T + 104 * H, T + 108 * H]
    assert outcome.lead == 8 * H
    assert [v for _, v in judged.verdicts] == [Verdict.TRUE, Verdict.DUPLICATE, Verdict.DUPLICATE]
    overall = score(t, alerts, resamples=0)["overall"]
    assert (overall["true_alerts"], overall["duplicates"], overall["precision"]) == (1, 2, 1.0)


def test_an_alert_goes_to_the_fault_with_the_nearest_onset() -> None:
    early, late = fault("S1", T + 100 * H, T + 120 * H), fault("S1", T + 110 * H, T + 130 * H)
    judged = assess(truth(early, late), [alert("S1", T + 112 * H)])
    assert [len(o.alerts) for o in judged.outcomes] == [0, 1]


def test_only_the_last_version_of_an_alert_counts() -> None:
    first = alert("S1", T + 102 * H)
    resolved = msgspec.structs.replace(first, status=AlertStatus.RESOLVED, last_seen=T + 103 * H)
    later = msgspec.structs.replace(first, last_seen=T + 102.5 * H)
    assert latest_versions([resolved, first, later]) == [resolved]
    judged = assess(truth(fault("S1", T + 100 * H, T + 110 * H)), [first, later, resolved])
    assert len(judged.verdicts) == 1


# ------------------------------------------------------------------ the numbers


def test_false_alerts_split_into_healthy_and_faulty_stations() -> None:
    t = truth(fault("S1", T + 100 * H, T + 110 * H), stations=4, days=10)  # 1 faulty, 3 healthy
    alerts = [
        alert("S1", T + 10 * H),  # faulty station, long before its fault
        alert("S1", T + 105 * H, kind=GRID),  # in the window, the wrong kind
        alert("S2", T + 50 * H),
        alert("S3", T + 60 * H, kind=GROUND),
    ]
    result = score(t, alerts, resamples=0)
    false = result["overall"]["false_per_100_station_days"]
    assert false == {
        "all": 10.0,
        "healthy_stations": pytest.approx(6.6667),
        "faulty_stations": 20.0,
    }
    assert result["overall"]["precision"] == 0.0
    assert result["overall"]["recall"] == 0.0
    assert result["by_kind"]["ground_fault"]["false_alerts"] == 1
    assert result["by_kind"]["ground_fault"]["faults"] == 0
    assert result["station_days"] == {"healthy": 30.0, "faulty": 10.0}


def test_lead_times_count_undetected_faults_as_not_warned() -> None:
    faults = [fault(f"S{n}", T + 100 * H, T + 110 * H) for n in range(1, 5)]
    leads = [timedelta(minutes=m) for m in (600, 120, 20)]  # S4 undetected
    alerts = [alert(f"S{n}", T + 110 * H - lead) for n, lead in enumerate(leads, start=1)]
    overall = score(truth(*faults), alerts, resamples=0)["overall"]
    assert overall["recall_progressive"] == 0.75
    assert overall["lead_minutes"] == {"p50": 120.0, "p10": 20.0, "share_ge_30": 0.5}
    assert overall["hard_delay_s"]["p50"] is None  # no hard fault


def test_hard_fault_delay_is_from_the_hard_event() -> None:
    faults = [
        fault(f"S{n}", T + 100 * H, T + 100 * H, kind=GROUND, progressive=False)
        for n in range(1, 4)
    ]
    delays = [timedelta(seconds=s) for s in (0, 4, 30)]
    alerts = [alert(f"S{n}", T + 100 * H + d, kind=GROUND) for n, d in enumerate(delays, start=1)]
    overall = score(truth(*faults), alerts, resamples=0)["overall"]
    assert overall["hard"] == 3
    assert overall["hard_delay_s"] == {"p50": 4.0, "p90": 30.0, "max": 30.0, "share_le_10": 0.6667}
    assert overall["recall_progressive"] is None
    assert overall["lead_minutes"]["p50"] is None


def test_the_bootstrap_is_seeded_and_brackets_the_estimate() -> None:
    faults = [fault(f"S{n}", T + 100 * H, T + 110 * H) for n in range(1, 11)]
    alerts = [alert(f"S{n}", T + 105 * H) for n in range(1, 8)]
    t = truth(*faults, stations=10)
    outcomes = assess(t, alerts).outcomes
    interval = bootstrap(outcomes, recall_of, resamples=500, seed=4)
    assert interval == bootstrap(outcomes, recall_of, resamples=500, seed=4)
    assert interval is not None
    low, high = interval
    assert low < 0.7 < high
    assert low >= 0.0
    assert high <= 1.0
    assert bootstrap(outcomes, recall_of, resamples=0) is None


def test_the_simulators_manifest_marker_and_an_open_end_are_read() -> None:
    manifest = {**MANIFEST, "manifest": True, "end": None, "spec": "overheating:S1@2h"}
    fault_line = {**FAULT, "onset": "2026-07-05T00:00:00.000Z"}
    parsed = parse_ground_truth(lines(manifest, fault_line))
    assert parsed.manifest.spec == "overheating:S1@2h"
    assert parsed.faults[0].onset == T + 4 * 24 * H
    with pytest.raises(GroundTruthError, match="no end yet"):
        score(parsed, [], resamples=0)
    ended = parsed.ended(T + 10 * 24 * H)
    assert ended.manifest.station_days == 40.0
    assert ended.ended(T) is ended  # an end, once there, stays
    assert score(ended, [], resamples=0)["station_days"] == {"healthy": 30.0, "faulty": 10.0}

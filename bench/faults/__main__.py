"""Fault detection quality: ``python -m bench.faults [--stations 100 --days 14]``.

A fixed, seeded fleet with the simulator's labelled faults runs through the real
gateway -> Kafka -> faults flow -> PostgreSQL (:mod:`bench.faults.pipeline`); its alerts
are scored against the ground truth (:mod:`bench.faults.score`). The envelopes the flow
consumed are read back from Kafka and replayed in process
(:mod:`bench.faults.replay`) with our connector models and with the static-threshold
baseline, so both are scored on exactly the same telemetry; ours replayed must give
the alerts the pipeline wrote (``determinism``). The replay also gives the throughput
of the diagnostics (samples/s on one thread) and the model state per connector.

Prints one JSON document to stdout; ``side_by_side`` has the headline numbers per
fault kind for ours and static, ``targets`` says which of the issue's targets were met.
Nothing asserts quality: that is the number being measured.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import machine_info
from bench.faults.pipeline import FleetSpec, PipelineRun, run_pipeline
from bench.faults.replay import MODELS, ModelFactory, compare_alerts, replay
from bench.faults.score import Matching, score
from bench.gateway import progress
from bus.alerts import FaultAlert
from bus.envelope import Envelope
from ingest.simulator.ground_truth import GroundTruth

TARGETS = {
    "recall_progressive": 0.9,  # at least
    "median_lead_minutes": 60.0,  # at least
    "hard_delay_share_le_10s": 1.0,  # every hard fault within 10 s
    "false_per_100_station_days": 0.5,  # at most
    "samples_per_s_per_worker": 10_000.0,  # at least
}

# The headline numbers of one kind (or overall) for the side-by-side table.
HEADLINE = (
    ("precision", ("precision",)),
    ("recall_progressive", ("recall_progressive",)),
    ("recall", ("recall",)),
    ("lead_minutes_p50", ("lead_minutes", "p50")),
    ("lead_minutes_p10", ("lead_minutes", "p10")),
    ("false_per_100_station_days", ("false_per_100_station_days", "all")),
    ("hard_delay_s_p50", ("hard_delay_s", "p50")),
    ("duplicates", ("duplicates",)),
)


def _at(numbers: dict[str, Any], path: Sequence[str]) -> Any:
    for key in path:
        numbers = numbers.get(key) if isinstance(numbers, dict) else None  # type: ignore[assignment]
    return numbers


def side_by_side(scores: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``{kind: {number: {model: value}}}`` for the headline numbers, overall first."""
    kinds = ["overall", *sorted({k for s in scores.values() for k in s["by_kind"]})]
    table: dict[str, Any] = {}
    for kind in kinds:
        table[kind] = {
            name: {
                model: _at(s["overall"] if kind == "overall" else s["by_kind"].get(kind, {}), path)
                for model, s in scores.items()
            }
            for name, path in HEADLINE
        }
    return table


def targets(overall: dict[str, Any], samples_per_s: float | None) -> dict[str, Any]:
    """Which of the issue's targets ``overall`` (a score's) and the throughput meet."""
    got = {
        "recall_progressive": overall["recall_progressive"],
        "median_lead_minutes": overall["lead_minutes"]["p50"],
        "hard_delay_share_le_10s": overall["hard_delay_s"]["share_le_10"],
        "false_per_100_station_days": overall["false_per_100_station_days"]["all"],
        "samples_per_s_per_worker": samples_per_s,
    }
    met = {
        name: value is not None
        and (
            value <= TARGETS[name]
            if name == "false_per_100_station_days"
            else value >= TARGETS[name]
        )
        for name, value in got.items()
    }
    return {"target": TARGETS, "got": got, "met": met}


def evaluate(
    truth: GroundTruth,
    envelopes: Sequence[Envelope],
    pipeline_alerts: Sequence[FaultAlert] | None = None,
    models: dict[str, ModelFactory] = MODELS,
    matching: Matching = Matching(),
    resamples: int = 1000,
) -> dict[str, Any]:
    """Every model replayed over ``envelopes`` and scored; with the pipeline's alerts,
    "ours" is scored on those (what maintenance got) and checked against its replay.
    A run without an end in its manifest ends at the last telemetry time seen."""
    if truth.manifest.end is None and envelopes:
        truth = truth.ended(max(e.measured_at for e in envelopes))
    replays = {name: replay(envelopes, factory) for name, factory in models.items()}
    scores = {name: score(truth, r.alerts, matching, resamples) for name, r in replays.items()}
    result: dict[str, Any] = {
        "fleet": {
            "stations": len(truth.manifest.stations),
            "start": truth.manifest.start.isoformat(),
            "end": truth.manifest.end.isoformat() if truth.manifest.end else None,
            "spec": truth.manifest.spec,
            "seed": truth.manifest.seed,
            "faults": len(truth.faults),
            "healthy_stations": len(truth.healthy_stations()),
        },
        "replay": {name: r.report() for name, r in replays.items()},
    }
    if pipeline_alerts is not None:
        scores["ours"] = score(truth, pipeline_alerts, matching, resamples)
        result["determinism"] = compare_alerts(replays["ours"].alerts, pipeline_alerts)
    result["side_by_side"] = side_by_side(scores)
    result["targets"] = {
        name: targets(s["overall"], replays[name].samples_per_s()) for name, s in scores.items()
    }
    result["scores"] = scores
    return result


def build_parser() -> argparse.ArgumentParser:
    defaults = FleetSpec()
    parser = argparse.ArgumentParser(
        prog="python -m bench.faults",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--stations", type=int, default=defaults.stations)
    parser.add_argument("--days", type=float, default=defaults.days, help="simulated days")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--faults", default=defaults.faults, help="the simulator's --faults")
    parser.add_argument(
        "--time-scale", type=float, default=defaults.time_scale, help="simulated s per s"
    )
    parser.add_argument(
        "--meter-interval",
        type=float,
        default=defaults.meter_interval_s,
        help="simulated seconds between a station's MeterValues",
    )
    parser.add_argument(
        "--mean-dwell", type=float, default=defaults.mean_dwell_s, help="simulated s plugged in"
    )
    parser.add_argument(
        "--mean-arrival-gap",
        type=float,
        default=defaults.mean_arrival_gap_s,
        help="simulated s between sessions on a connector",
    )
    parser.add_argument("--start", default=defaults.start, help="the station clocks' start")
    parser.add_argument("--partitions", type=int, default=defaults.partitions)
    parser.add_argument("--deadline", type=float, default=defaults.deadline_s, help="seconds")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap; 0: none")
    parser.add_argument("--logs", type=Path, default=None, help="keep the run's files here")
    parser.add_argument(
        "--no-flow",
        action="store_true",
        help="simulator and gateway only: score the in-process replays (no faults flow)",
    )
    parser.add_argument(
        "--save", type=Path, default=None, help="write the run's ground truth, envelopes, alerts"
    )
    parser.add_argument(
        "--from",
        dest="source",
        type=Path,
        default=None,
        help="score a run saved with --save instead of running one",
    )
    return parser


def _run(args: argparse.Namespace) -> PipelineRun:
    if args.source is not None:
        progress(f"scoring the run saved in {args.source}")
        return PipelineRun.load(args.source)
    spec = FleetSpec(
        stations=args.stations,
        days=args.days,
        seed=args.seed,
        faults=args.faults,
        time_scale=args.time_scale,
        meter_interval_s=args.meter_interval,
        mean_dwell_s=args.mean_dwell,
        mean_arrival_gap_s=args.mean_arrival_gap,
        start=args.start,
        partitions=args.partitions,
        deadline_s=args.deadline,
        logs=args.logs,
        flow=not args.no_flow,
    )
    run = run_pipeline(spec)
    if args.save is not None:
        run.save(args.save)
    return run


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.monotonic()
    run = _run(args)
    result = {
        "machine": machine_info(),
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "pipeline": {
            "simulate_s": round(run.simulate_s, 1),
            "drain_s": round(run.drain_s, 1),
            "envelopes": len(run.envelopes),
            "alerts": None if run.alerts is None else len(run.alerts),
        },
        **evaluate(run.truth, run.envelopes, run.alerts, resamples=args.resamples),
    }
    result["wall_s"] = round(time.monotonic() - started, 1)
    json.dump(result, sys.stdout, indent=2, default=str)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())

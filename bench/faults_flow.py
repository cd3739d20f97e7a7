"""The faults flow's figures for ``python -m bench.flows`` (its ``faults`` section):

* ``state``: the model state of a station -- :class:`flows.faults.logic.FaultsLogic`'s
  snapshot, the pickled :class:`models.station.StationDiagnostics` Bytewax stores every
  epoch -- after one and after three days of telemetry (the connector models warm up
  for two telemetry days: learning starts in the second), divided by the station's
  connectors; computed in this process;
* throughput: ``python -m flows.run flows.faults.dataflow:from_env()`` with 1 worker,
  tail=False, recovery like the launcher, over a stream of its own (topics
  ``{prefix}faults.*``) whose MeterValues carry every measurand the diagnostics read
  (register, power, current and voltage per phase, SoC, temperature: 10 sampled
  values), with the StatusNotifications around each session. ``samples_per_s`` counts
  sampled values (meter samples), ``readings_per_s`` MeterValues (one reading of a
  connector each); wall time from process start to exit, CPU time of the process.
"""

from __future__ import annotations

import os
import pickle
import statistics
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg

from bench.common import (
    MEASURANDS,
    StreamSpec,
    generate,
    messages,
    produce_all,
    profile_dataflow,
)
from bus.admin import ensure_topics
from bus.envelope import Envelope
from bus.topics import Topics
from flows.faults.logic import FaultsLogic

FAULTS_FLOW = "flows.faults.dataflow:from_env()"
TARGET_SAMPLES_PER_S = 10_000
ALL_MEASURANDS = len(MEASURANDS)


def faults_spec(meter_events: int, stations: int, seed: int = 11) -> StreamSpec:
    return StreamSpec(
        stations=stations,
        meter_events=meter_events,
        values_per_event=ALL_MEASURANDS,
        seed=seed,
        status_notifications=True,
    )


def _snapshot_bytes(envelopes: Iterable[Envelope], days: Iterable[int]) -> dict[int, list[float]]:
    """Per day mark: every station's snapshot bytes per connector once its telemetry
    reached that many days after its first reading."""
    marks = sorted(days)
    logic: dict[str, FaultsLogic] = {}
    first: dict[str, Any] = {}
    next_mark: dict[str, int] = {}
    out: dict[int, list[float]] = {d: [] for d in marks}
    for env in envelopes:
        cp = env.charge_point_id
        step = logic.setdefault(cp, FaultsLogic(None))
        step.on_batch([[env]])
        start = first.setdefault(cp, env.measured_at)
        i = next_mark.setdefault(cp, 0)
        if i < len(marks) and env.measured_at - start >= timedelta(days=marks[i]):
            state = step.state
            assert state is not None
            connectors = max(1, len(state.connectors))
            out[marks[i]].append(len(step.snapshot()) / connectors)
            next_mark[cp] = i + 1
    return out


def state_figures(stations: int = 4, days: tuple[int, ...] = (1, 3)) -> dict[str, Any]:
    """Snapshot bytes per connector after ``days`` of telemetry (a bench stream: sessions
    of 50 one-minute MeterValues with a few minutes between them)."""
    per_day_events = int(24 * 60 * 50 / 53) + 1
    spec = faults_spec(per_day_events * (max(days) + 1) * stations, stations)
    sizes = _snapshot_bytes(generate(spec), days)
    return {
        f"day_{d}": {
            "stations": len(v),
            "connectors_per_station": 1,
            "bytes_per_connector_mean": round(statistics.fmean(v)) if v else None,
            "bytes_per_connector_max": round(max(v)) if v else None,
        }
        for d, v in sizes.items()
    } | {"pickle_protocol": pickle.HIGHEST_PROTOCOL}


def faults_topics(bootstrap: str, base: Topics, partitions: int) -> Topics:
    """The faults stream's own topics, beside the bench's (``{prefix}faults.*``)."""
    prefix = base.ocpp_events.removesuffix(Topics().ocpp_events) + "faults."
    topics = Topics.with_prefix(prefix)
    ensure_topics(bootstrap, topics.all(), partitions=partitions)
    return topics


def prepare_stream(
    bootstrap: str, base: Topics, partitions: int, meter_events: int, stations: int
) -> tuple[Topics, dict[str, int]]:
    """Produce the faults stream; its topics and what it holds."""
    topics = faults_topics(bootstrap, base, partitions)
    msgs = messages(faults_spec(meter_events, stations))
    produce_all(bootstrap, topics.ocpp_events, msgs)
    return topics, {
        "stations": stations,
        "messages": len(msgs),
        "meter_events": meter_events,
        "values_per_event": ALL_MEASURANDS,
        "samples": meter_events * ALL_MEASURANDS,
        "bytes": sum(len(v) for _, v in msgs),
    }


def alert_tables(url: str) -> dict[str, int]:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM alerts), (SELECT count(*) FROM alert_events),"
            " (SELECT count(*) FROM alerts_outbox), (SELECT count(*) FROM connector_health)"
        ).fetchone()
    assert row is not None
    return {
        "alerts_rows": int(row[0]),
        "alert_events_rows": int(row[1]),
        "alerts_outbox_waiting": int(row[2]),
        "connector_health_rows": int(row[3]),
    }


def throughput_figures(
    elapsed: float, cpu: float, stream: dict[str, int], load_before: float
) -> dict[str, Any]:
    samples, readings = stream["samples"], stream["meter_events"]
    return {
        "workers": 1,
        "wall_s": round(elapsed, 3),
        "samples_per_s": round(samples / elapsed),
        "readings_per_s": round(readings / elapsed),
        "messages_per_s": round(stream["messages"] / elapsed),
        "cpu_s": round(cpu, 3),
        "samples_per_cpu_s": round(samples / cpu),
        "readings_per_cpu_s": round(readings / cpu),
        "loadavg_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


def profile_in_process(bootstrap: str, topics: Topics, url: str, out: Path, batch: int) -> str:
    """The faults flow in this process under cProfile (main thread only); the top 25
    functions by own time."""
    from flows.faults.dataflow import FaultsFlowConfig, build_flow

    config = FaultsFlowConfig(
        brokers=[bootstrap], database_url=url, topics=topics, tail=False, batch_size=batch
    )
    return profile_dataflow(build_flow(config), out)

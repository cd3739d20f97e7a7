"""The faults flow's per-station work, in process: envelopes in, alerts out.

The flow keys by charge point and runs one :class:`models.station.StationDiagnostics`
per key; replaying a stream the same way here (one diagnostics object per station, the
station's envelopes in their topic order) with a chosen connector model gives

* the static-threshold baseline on exactly the telemetry the pipeline saw
  (``ConnectorModel.static``), beside ours (``ConnectorModel.default``);
* a determinism check: ours, replayed, must give the alerts the pipeline wrote
  (:func:`compare_alerts`);
* the single-threaded throughput of the diagnostics (samples per second of the
  ``update`` calls only) and the state size (pickled diagnostics per connector).

Kafka keeps order per partition, and the key (the charge point) picks the partition,
so the envelopes of one station read back from a topic are in the order the flow saw
them. Envelopes of two topics (``ocpp.events`` and the ``alerts`` topic's
``security.alert`` envelopes) are merged per station by ``received_at``
(:func:`merge_by_received`).

>>> from datetime import UTC, datetime, timedelta
>>> t = datetime(2026, 7, 1, 12, tzinfo=UTC)
>>> def status(cp, code, state, at):
...     return Envelope(message_id=f"{cp}-{at:%d}", charge_point_id=cp, received_at=at,
...         measured_at=at, kind=Kind.OCPP_CALL, ocpp_version="1.6",
...         action="StatusNotification", payload={"connectorId": 1, "errorCode": code,
...         "status": state, "timestamp": at.isoformat()})
>>> stream = [status("CP1", "GroundFailure", "Faulted", t),
...     status("CP2", "NoError", "Available", t),
...     status("CP1", "NoError", "Available", t + timedelta(days=1))]
>>> result = replay(stream, ConnectorModel.default)
>>> [(a.station_id, a.alert_kind.value, a.status.value) for a in result.alerts]
[('CP1', 'ground_fault', 'resolved')]
>>> result.stations, result.envelopes, result.versions
(2, 3, 2)
"""

from __future__ import annotations

import heapq
import pickle
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from bench.faults.score import latest_versions
from bus.alerts import FaultAlert
from bus.envelope import Envelope, Kind, normalized_facts
from bus.normalized import MeterSample
from models.connector import ConnectorModel
from models.station import StationDiagnostics

ModelFactory = Callable[[], ConnectorModel]

MODELS: dict[str, ModelFactory] = {
    "ours": ConnectorModel.default,
    "static": ConnectorModel.static,
}


@dataclass(slots=True)
class ReplayResult:
    alerts: list[FaultAlert]  # the last version of each alert, by first_seen
    versions: int  # alert versions emitted (what the flow would publish)
    envelopes: int
    samples: int  # meter samples (sampled values) in the envelopes
    seconds: float  # in StationDiagnostics.update, single-threaded
    diagnostics: dict[str, StationDiagnostics] = field(repr=False, default_factory=dict)

    @property
    def stations(self) -> int:
        return len(self.diagnostics)

    def samples_per_s(self) -> float | None:
        return None if self.seconds <= 0 else round(self.samples / self.seconds, 1)

    def state_bytes_per_connector(self) -> float | None:
        """Pickled diagnostics (what the flow snapshots per key) per connector model."""
        connectors = sum(len(d.connectors) for d in self.diagnostics.values())
        if connectors == 0:
            return None
        total = sum(len(pickle.dumps(d)) for d in self.diagnostics.values())
        return round(total / connectors, 1)

    def report(self) -> dict[str, Any]:
        return {
            "alerts": len(self.alerts),
            "alert_versions": self.versions,
            "stations": self.stations,
            "envelopes": self.envelopes,
            "samples": self.samples,
            "seconds": round(self.seconds, 3),
            "samples_per_s_per_worker": self.samples_per_s(),
            "state_bytes_per_connector": self.state_bytes_per_connector(),
        }


def _samples(envelope: Envelope) -> int:
    if envelope.kind is not Kind.OCPP_CALL or envelope.action != "MeterValues":
        return 0
    return sum(1 for fact in normalized_facts(envelope) if isinstance(fact, MeterSample))


def replay(envelopes: Iterable[Envelope], new_model: ModelFactory) -> ReplayResult:
    """Every envelope through its station's diagnostics (created on its first envelope,
    with ``new_model`` for each connector)."""
    diagnostics: dict[str, StationDiagnostics] = {}
    emitted: list[FaultAlert] = []
    count = samples = 0
    seconds = 0.0
    for envelope in envelopes:
        count += 1
        samples += _samples(envelope)
        station = diagnostics.get(envelope.charge_point_id)
        if station is None:
            station = StationDiagnostics(envelope.charge_point_id, new_model=new_model)
            diagnostics[envelope.charge_point_id] = station
        started = time.perf_counter()
        outcome = station.update(envelope)
        seconds += time.perf_counter() - started
        emitted.extend(outcome.alerts)
    return ReplayResult(
        latest_versions(emitted), len(emitted), count, samples, seconds, diagnostics
    )


def merge_by_received(*streams: Iterable[Envelope]) -> list[Envelope]:
    """Several topics' envelopes as one stream: each stream's own order is kept (a
    merge never reorders within an input), the streams interleave by ``received_at``,
    ties to the earlier stream."""
    return list(heapq.merge(*streams, key=lambda envelope: envelope.received_at))


def _identity(alert: FaultAlert) -> tuple[Any, ...]:
    return (
        alert.station_id,
        alert.connector_id,
        alert.alert_kind,
        alert.first_seen,
        alert.last_seen,
        alert.severity,
        alert.status,
        alert.detector,
    )


def compare_alerts(expected: Iterable[FaultAlert], actual: Iterable[FaultAlert]) -> dict[str, Any]:
    """How two sets of alerts (last version per id) differ: ids only in one, and ids in
    both whose last version differs in station, connector, kind, times, severity,
    status or detector. ``same`` when nothing differs.

    The database keeps a person's acknowledgement and resolution; the flow's own
    versions are what a replay reproduces, so the status compared is the flow's.
    """
    left = {a.alert_id: a for a in latest_versions(expected)}
    right = {a.alert_id: a for a in latest_versions(actual)}
    only_expected = sorted(left.keys() - right.keys())
    only_actual = sorted(right.keys() - left.keys())
    differing = sorted(
        i for i in left.keys() & right.keys() if _identity(left[i]) != _identity(right[i])
    )
    return {
        "same": not (only_expected or only_actual or differing),
        "only_in_replay": len(only_expected),
        "only_in_pipeline": len(only_actual),
        "differing": len(differing),
        "examples": (only_expected + only_actual + differing)[:5],
    }

"""What bench.faults reads back from the real pipeline's stores: the alerts table as
FaultAlert (PostgreSQL) and the envelopes the faults flow consumes (Kafka)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from bench.common import produce_all
from bench.faults.pipeline import EnvelopeRecorder, consumed_envelopes, pipeline_alerts
from bench.faults.replay import compare_alerts
from bench.faults.score import latest_versions
from bus.alerts import (
    AlertKind,
    AlertStatus,
    Evidence,
    FaultAlert,
    Severity,
    alert_id,
    encode_fault_alert,
)
from bus.envelope import Envelope, Kind, encode_envelope
from bus.topics import Topics
from chargeflow.stack import EmbeddedBroker
from models.station import StationDiagnostics
from store.alerts import write_alerts_batch
from tests.support.connectors import meter_values, stream
from tests.support.load_events import status16

T = datetime(2026, 7, 1, 12, tzinfo=UTC)


def _model_alert() -> FaultAlert:
    kind = AlertKind.CONNECTOR_OVERHEATING
    at = T + timedelta(hours=3, milliseconds=250)
    return FaultAlert(
        alert_id=alert_id("CP2", 2, kind, at),
        station_id="CP2",
        connector_id=2,
        alert_kind=kind,
        severity=Severity.HIGH,
        status=AlertStatus.OPEN,
        first_seen=at,
        last_seen=at + timedelta(minutes=20),
        detector="model:deviation",
        evidence=Evidence(
            at=at,
            summary="temperature rise is 41.2",
            features={"temperature_rise_c_per_kw": 3.75},
            scores={"score": 0.81},
        ),
        recommended_action="Inspect the connector.",
    )


def test_the_alerts_table_reads_back_as_the_versions_the_flow_wrote(
    db: psycopg.Connection[Any], clean_db: str
) -> None:
    db.execute("TRUNCATE alerts CASCADE")
    stream = [
        status16("CP1", 1, "Faulted", T, "GroundFailure"),
        status16("CP1", 1, "Available", T + timedelta(minutes=5)),
    ]
    station = StationDiagnostics("CP1")
    versions = [a for e in stream for a in station.update(e).alerts]
    assert [a.status for a in versions] == [AlertStatus.OPEN, AlertStatus.RESOLVED]
    versions.append(_model_alert())
    with psycopg.connect(clean_db) as conn:
        write_alerts_batch(conn, versions, [])
    stored = pipeline_alerts(clean_db)
    expected = latest_versions(versions)
    assert stored == expected  # evidence, times (to the millisecond) and status included
    assert compare_alerts(expected, stored)["same"] is True
    assert [a.status for a in stored] == [AlertStatus.RESOLVED, AlertStatus.OPEN]


def test_the_consumed_envelopes_are_events_and_security_alerts_not_fault_alerts(
    broker: EmbeddedBroker, topics: Topics
) -> None:
    events = [meter_values("CP1", 1, r) for r in stream(0.02, seed=1)]  # ~28 minutes
    events.append(status16("CP2", 1, "Available", T))
    security = Envelope(
        message_id="sec-1",
        charge_point_id="CP1",
        received_at=events[3].received_at + timedelta(seconds=1),
        measured_at=events[3].received_at + timedelta(seconds=1),
        kind=Kind.SECURITY_ALERT,
        payload={"alert": "failed_logins", "gateway_id": "gw-1"},
    )
    recorder = EnvelopeRecorder(broker.bootstrap, topics)
    produce_all(
        broker.bootstrap,
        topics.ocpp_events,
        [(e.charge_point_id.encode(), encode_envelope(e)) for e in events],
    )
    produce_all(
        broker.bootstrap,
        topics.alerts,
        [(b"CP1", encode_envelope(security)), (b"CP2", encode_fault_alert(_model_alert()))],
    )
    consumed = consumed_envelopes(broker.bootstrap, topics, timeout=60)
    # The recorder a long run uses, tailing while the messages were written, ends with
    # the same envelopes in the same order.
    assert recorder.finish(60) == consumed
    assert sorted(e.message_id for e in consumed) == sorted(
        [e.message_id for e in events] + ["sec-1"]
    )
    cp1 = [e.message_id for e in consumed if e.charge_point_id == "CP1"]
    assert cp1 == [e.message_id for e in events[:4]] + ["sec-1"] + [
        e.message_id for e in events[4:-1]
    ]

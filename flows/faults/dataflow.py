"""The faults dataflow: ``ocpp.events`` + ``alerts`` (security alerts) -> diagnostics per
charge point -> ``alerts``, ``alert_events``, ``connector_health`` (PostgreSQL) ->
``alerts`` (``fault.alert`` versions, through the transactional outbox).

Wiring only; the decisions live in :mod:`models.station` (rules, detectors, the alert
book) and the glue in :mod:`flows.faults.logic`::

    kafka_events (flows.source; decode.decode_event) --dead letters--> dead letter
                         |  (charge point, [its envelopes of the batch])
                         v
              stateful_batch(FaultsLogic: StationDiagnostics.update per envelope)
                         |  (charge point, [FaultAlert versions, ConnectorHealth])
                         v
              rows_output -> PostgresSink(AlertsRows) (sink.py; commit, then the
              after-commit hook publishes the alerts_outbox -> alerts)

The flow reads its own output topic: ``decode_event`` skips the ``fault.alert``
messages there and keeps the gateway's ``security.alert`` envelopes. Everything runs
on telemetry time, so a replay from offset 0 gives the same alert ids and versions;
the versions are idempotent in the database (``(alert_id, version_key)``) and
published at least once.

Run it with ``python -m flows.run "flows.faults.dataflow:from_env()"`` (plus
``-r DB_DIR -s SECS -b SECS`` for recovery). Settings: :mod:`flows.settings`.
"""

from __future__ import annotations

from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import Sink

from flows import metrics
from flows.config import FLOW_GC_YOUNG_THRESHOLD
from flows.faults.config import FaultsFlowConfig
from flows.faults.decode import decode_event
from flows.faults.logic import FaultsLogic
from flows.faults.sink import faults_sink
from flows.settings import FaultsFlowSettings
from flows.sinks.kafka import dead_letter_sink
from flows.sinks.output import rows_output
from flows.source import DeadLetter, kafka_events, kafka_source
from runtime.gc import tune_gc

FLOW_ID = "chargeflow-faults"

__all__ = ["FaultsFlowConfig", "build_flow", "build_flow_with", "from_env", "input_topics"]


def input_topics(config: FaultsFlowConfig) -> list[str]:
    return [config.topics.ocpp_events, config.topics.alerts]


def build_flow_with(
    source: Source[Any],
    rows_sink: Sink[Any],
    deadletter_sink: Sink[DeadLetter],
    flow_id: str = FLOW_ID,
) -> Dataflow:
    """The whole flow with its edges swapped in (production and tests share this):
    ``source`` gives Kafka messages and consumer errors; ``rows_sink`` gets
    ``(charge point, [rows])`` if it is a ``FixedPartitionedSink``, else single rows."""
    flow = Dataflow(flow_id)
    envelopes = kafka_events("input", flow, source, decode_event, deadletter_sink)
    rows = op.stateful_batch("diagnostics", envelopes, FaultsLogic)
    rows_output("postgres", rows, rows_sink)
    return flow


def build_flow(config: FaultsFlowConfig) -> Dataflow:
    """The production flow: Kafka in; PostgreSQL, ``alerts`` and dead letters out."""
    return build_flow_with(
        kafka_source(config, FLOW_ID, input_topics(config)),
        faults_sink(config, FLOW_ID),
        dead_letter_sink(config, FLOW_ID),
    )


def from_env() -> Dataflow:
    """Entry point for ``python -m flows.run "flows.faults.dataflow:from_env()"`` (also
    tunes the process's garbage collector: :func:`runtime.gc.tune_gc`)."""
    config = FaultsFlowSettings.load().flow_config()
    flow = build_flow(config)
    metrics.serve(FLOW_ID, config, input_topics(config))
    tune_gc(FLOW_GC_YOUNG_THRESHOLD)
    return flow

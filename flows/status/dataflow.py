"""The status dataflow: ``ocpp.events`` -> ``connector_status_history`` and
``connector_availability`` (PostgreSQL).

Wiring only; decisions live in :mod:`flows.status.logic`::

    kafka_events (flows.source: one decode per input batch) --dead letters--> dead letter
                         |  (charge point, [its events of the batch])
                         v
              stateful_batch(StatusLogic: logic.apply_batch)
                         |  (charge point, [rows])
                         v
              rows_output -> PostgresSink(StatusRows)

Run it with ``python -m flows.run "flows.status.dataflow:from_env()"`` (plus
``-r DB_DIR -s SECS -b SECS`` for recovery). Settings: :mod:`flows.settings`.
"""

from __future__ import annotations

import pickle
from typing import Any

import bytewax.operators as op
import psycopg
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.operators import StatefulBatchLogic
from bytewax.outputs import Sink

from flows import metrics
from flows.config import FLOW_GC_YOUNG_THRESHOLD, FlowConfig
from flows.settings import StatusFlowSettings
from flows.sinks.database import postgres_sink
from flows.sinks.kafka import dead_letter_sink
from flows.sinks.output import rows_output
from flows.source import DeadLetter, kafka_events, kafka_source
from flows.status import logic
from flows.status.logic import HistoryRow, Output, StationStatus, StatusEvent
from runtime.gc import tune_gc
from store.status import write_status_batch

FLOW_ID = "chargeflow-status"


class StatusLogic(StatefulBatchLogic[list[StatusEvent], list[Output], bytes]):
    """The per-charge-point state of the ``status`` step: ``on_batch`` folds the
    station's events of one Bytewax batch (:func:`logic.apply_batch`) and emits their
    rows as one list; ``snapshot`` pickles the state."""

    def __init__(self, resume: bytes | None) -> None:
        self.state: StationStatus | None = None if resume is None else pickle.loads(resume)

    def on_batch(self, values: list[list[StatusEvent]]) -> tuple[list[list[Output]], bool]:
        events = values[0] if len(values) == 1 else [e for chunk in values for e in chunk]
        self.state, rows = logic.apply_batch(self.state, events)
        return ([rows] if rows else []), StatefulBatchLogic.RETAIN

    def snapshot(self) -> bytes:
        return pickle.dumps(self.state, protocol=pickle.HIGHEST_PROTOCOL)


class StatusRows:
    """History and availability rows of a batch, in one transaction."""

    def write(self, conn: psycopg.Connection[Any], rows: list[Output]) -> None:
        history = [r for r in rows if isinstance(r, HistoryRow)]
        current = [r for r in rows if not isinstance(r, HistoryRow)]
        write_status_batch(conn, history, current)


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
    events = kafka_events("input", flow, source, logic.decode_event, deadletter_sink)
    rows = op.stateful_batch("status", events, StatusLogic)
    rows_output("postgres", rows, rows_sink)
    return flow


def build_flow(config: FlowConfig) -> Dataflow:
    """The production flow: Kafka in; PostgreSQL and dead letters out."""
    return build_flow_with(
        kafka_source(config, FLOW_ID, [config.topics.ocpp_events]),
        postgres_sink(config, StatusRows(), FLOW_ID),
        dead_letter_sink(config, FLOW_ID),
    )


def from_env() -> Dataflow:
    """Entry point for ``python -m flows.run "flows.status.dataflow:from_env()"`` (also
    tunes the process's garbage collector: :func:`runtime.gc.tune_gc`)."""
    config = StatusFlowSettings.load().flow_config()
    flow = build_flow(config)
    metrics.serve(FLOW_ID, config, [config.topics.ocpp_events])
    tune_gc(FLOW_GC_YOUNG_THRESHOLD)
    return flow

"""The sessions dataflow: ``ocpp.events`` + ``meter.readings`` -> sessions + meter_samples
(PostgreSQL) -> ``sessions.closed`` (through the transactional outbox).

Wiring only; every per-event decision lives in :mod:`flows.sessions.logic`::

    kafka_events (flows.source: one decode per input batch) --dead letters--> dead letter
                         |  (charge point, [its events of the batch])
                         v
              stateful_batch(SessionsLogic (steps.py): logic.apply_batch;
                         |   notify_at/on_notify close a silent station's sessions)
                         |  (charge point, [rows])
                         v
              rows_output -> PostgresSink(SessionsRows) (sink.py; commit, then the
              after-commit hook publishes the sessions_outbox -> sessions.closed)

Run it with ``python -m bytewax.run "flows.sessions.dataflow:from_env()"``
(add ``-r DB_DIR -s SECS -b SECS`` for recovery, ``-i/-a`` for several processes).
State per charge point is small and picklable; the Kafka offsets live in Bytewax
recovery, and both sinks are idempotent / at-least-once.

Throughput: the sessions step folds each charge point's share of a Kafka batch at
once (one session snapshot per transaction and batch), its snapshots are pickled
bytes, and the database writes run on a writer thread that Bytewax's epoch snapshot
waits for (:class:`flows.sinks.database.PostgresSink`), so computing batch N+1
overlaps writing batch N without ever committing an epoch whose rows are not in the
database. With several workers set ``CHARGEFLOW_FLOW_SINK_PARTITIONS`` to their number
(rows then go to the writer of their charge point's partition, possibly on another
worker). Recovery stores of versions before ADR 0007 do not carry over (the step ids
changed; start with a fresh recovery directory, the launcher does on every run).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.operators import KeyedStream
from bytewax.outputs import Sink

from flows import metrics
from flows.config import FLOW_GC_YOUNG_THRESHOLD
from flows.sessions import logic
from flows.sessions.config import SessionsFlowConfig
from flows.sessions.logic import DEFAULT_RULES, Event, SessionRules
from flows.sessions.sink import sessions_sink
from flows.sessions.steps import SessionsLogic, sessions_logic
from flows.settings import SessionsFlowSettings
from flows.sinks.kafka import dead_letter_sink
from flows.sinks.output import rows_output
from flows.source import DeadLetter, kafka_events, kafka_source
from runtime.gc import tune_gc

FLOW_ID = "chargeflow-sessions"

__all__ = ["SessionsFlowConfig", "SessionsLogic", "build_flow", "build_flow_with", "from_env"]


def build_flow_with(
    source: Source[Any],
    rows_sink: Sink[Any],
    deadletter_sink: Sink[DeadLetter],
    flow_id: str = FLOW_ID,
    rules: SessionRules = DEFAULT_RULES,
) -> Dataflow:
    """The whole flow with its edges swapped in (production and tests share this):
    ``source`` gives Kafka messages and consumer errors; ``rows_sink`` gets
    ``(charge point, [rows])`` if it is a ``FixedPartitionedSink``, else single rows."""
    flow = Dataflow(flow_id)
    events: KeyedStream[list[Event]] = kafka_events(
        "input", flow, source, logic.decode_event, deadletter_sink
    )
    # (charge point, [rows of its events in one batch])
    rows = op.stateful_batch("sessions", events, partial(sessions_logic, rules))
    rows_output("postgres", rows, rows_sink)
    return flow


def build_flow(config: SessionsFlowConfig) -> Dataflow:
    """The production flow: Kafka in, PostgreSQL and the dead-letter topic out."""
    return build_flow_with(
        kafka_source(config, FLOW_ID, [config.topics.ocpp_events, config.topics.meter_readings]),
        sessions_sink(config, FLOW_ID),
        dead_letter_sink(config, FLOW_ID),
        rules=config.rules,
    )


def from_env() -> Dataflow:
    """Entry point for ``python -m flows.run "flows.sessions.dataflow:from_env()"`` (also
    tunes the process's garbage collector: :func:`runtime.gc.tune_gc`)."""
    config = SessionsFlowSettings.load().flow_config()
    flow = build_flow(config)
    metrics.serve(FLOW_ID, config, [config.topics.ocpp_events, config.topics.meter_readings])
    tune_gc(FLOW_GC_YOUNG_THRESHOLD)
    return flow

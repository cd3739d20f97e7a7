"""The status dataflow: ``ocpp.events`` -> ``connector_status_history`` and
``connector_availability`` (PostgreSQL).

Wiring only; decisions live in :mod:`flows.status.logic`::

    kafka input --oks--> decode envelope --ok--> key by charge point
        |                      |                        |
        errs                invalid          stateful_map(logic.apply)
        v                      v                        v
    dead letter  <-------  dead letter        flatten -> PostgresSink

Run it with ``python -m flows.run "flows.status.dataflow:from_env()"`` (plus
``-r DB_DIR -s SECS -b SECS`` for recovery). Settings: :mod:`flows.settings`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import bytewax.operators as op
import psycopg
from bytewax.connectors.kafka import KafkaSink, KafkaSinkMessage
from bytewax.connectors.kafka.operators import KafkaOpOut
from bytewax.dataflow import Dataflow
from bytewax.outputs import Sink

from bus.admin import wait_for_broker
from flows import common, metrics
from flows.common import DeadLetter, FlowConfig, RawMessage, RetryingPostgresSink
from flows.settings import StatusFlowSettings
from flows.status import logic
from flows.status.logic import HistoryRow, Output, StationStatus, StatusEvent
from runtime.logs import with_kafka_logger
from store.load_writers import write_status_batch

log = logging.getLogger(__name__)

FLOW_ID = "chargeflow-status"
FlowInput = Callable[[Dataflow], KafkaOpOut[Any, Any]]


def decode(msg: RawMessage) -> StatusEvent | DeadLetter | None:
    return common.decode_or_dead_letter(msg, logic.parse_envelope, logic.InvalidEvent, log)


def step(state: StationStatus | None, event: StatusEvent) -> tuple[StationStatus, list[Output]]:
    return logic.apply(state, event)


def write_rows(conn: psycopg.Connection[Any], items: list[Output]) -> None:
    history = [i for i in items if isinstance(i, HistoryRow)]
    current = [i for i in items if not isinstance(i, HistoryRow)]
    write_status_batch(conn, history, current)


def build_flow_with(
    flow_input: FlowInput,
    rows_sink: Sink[Output],
    deadletter_sink: Sink[DeadLetter],
    flow_id: str = FLOW_ID,
) -> Dataflow:
    flow = Dataflow(flow_id)
    raw = flow_input(flow)
    consumer_errors = op.map("consume_errors", raw.errs, common.consume_error_dead_letter)
    decoded = op.filter_map("decode", raw.oks, decode)
    split = op.branch("split_invalid", decoded, lambda x: isinstance(x, KafkaSinkMessage))
    invalid: Any = split.trues
    events: Any = split.falses
    op.output("deadletter", op.merge("dead_letters", consumer_errors, invalid), deadletter_sink)
    keyed = op.key_on("key_by_charge_point", events, lambda e: e.charge_point_id)
    outputs = op.stateful_map("status", keyed, step)
    op.output("postgres", op.flat_map("rows", outputs, lambda kv: kv[1]), rows_sink)
    return flow


def kafka_input(config: FlowConfig) -> FlowInput:
    def build(flow: Dataflow) -> KafkaOpOut[Any, Any]:
        wait_for_broker(",".join(config.brokers))
        return metrics.kafka_input(
            "kafka_in",
            flow,
            metrics.MeasuredKafkaSource(
                FLOW_ID,
                config.brokers,
                [config.topics.ocpp_events],
                tail=config.tail,
                starting_offset=config.starting_offset,
                add_config=with_kafka_logger(config.kafka_config),
                batch_size=config.batch_size,
                raise_on_errors=False,
            ),
        )

    return build


def build_flow(config: FlowConfig) -> Dataflow:
    producer_config = with_kafka_logger({"acks": "all", **config.kafka_config})
    return build_flow_with(
        kafka_input(config),
        RetryingPostgresSink(
            config.database_url, write_rows, name=FLOW_ID, max_backoff_s=config.db_max_backoff_s
        ),
        metrics.CountingDeadLetterSink(
            KafkaSink(config.brokers, config.topics.deadletter, producer_config), FLOW_ID
        ),
    )


def from_env() -> Dataflow:
    """Entry point for ``python -m flows.run "flows.status.dataflow:from_env()"`` (also
    tunes the process's garbage collector: :func:`flows.common.tune_gc`)."""
    config = StatusFlowSettings.load().flow_config()
    flow = build_flow(config)
    metrics.serve(FLOW_ID, config, [config.topics.ocpp_events])
    common.tune_gc()
    return flow

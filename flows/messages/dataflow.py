"""The messages dataflow: ``ocpp.events`` -> ``ocpp_messages`` (PostgreSQL), the
station's OCPP message history the API shows (``GET /v1/stations/{id}/messages``).

Stateless; wiring only, the decisions in :mod:`flows.messages.logic`::

    kafka_events (flows.source; logic.decode_event) --dead letters--> dead letter
                         |  (charge point, [its CALLs of the batch, masked])
                         v
              rows_output -> PostgresSink(MessageRows) (after commit: RetentionHook)

Replays write nothing twice (``store.messages.write_messages``). The flow owns the
table's retention: :class:`RetentionHook` runs ``store.messages.apply_retention``
when the sink starts and then every ``retention_check_s`` after a commit.

Run it with ``python -m flows.run "flows.messages.dataflow:from_env()"`` (plus
``-r DB_DIR -s SECS -b SECS`` for recovery). Settings: :mod:`flows.settings`.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from functools import partial
from typing import Any

import psycopg
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import Sink

from flows import metrics
from flows.config import FLOW_GC_YOUNG_THRESHOLD
from flows.messages.config import MessagesFlowConfig
from flows.messages.logic import RetentionClock, decode_event
from flows.settings import MessagesFlowSettings
from flows.sinks.database import DATABASE_UNAVAILABLE, PostgresSink, postgres_sink
from flows.sinks.kafka import dead_letter_sink
from flows.sinks.output import rows_output
from flows.source import DeadLetter, kafka_events, kafka_source
from runtime.gc import tune_gc
from store.messages import MessageRow, apply_retention, write_messages

FLOW_ID = "chargeflow-messages"
log = logging.getLogger(__name__)


class MessageRows:
    """The CALLs of a batch, in one transaction."""

    def write(self, conn: psycopg.Connection[Any], rows: list[MessageRow]) -> None:
        write_messages(conn, rows)


class RetentionHook:
    """The sink's after-commit hook: the history's retention, when due."""

    def __init__(self, keep: timedelta, interval_s: float) -> None:
        self.keep = keep
        self.clock = RetentionClock(interval_s)

    def after_commit(self, conn: psycopg.Connection[Any]) -> None:
        if not self.clock.due(time.monotonic()):
            return
        try:
            deleted = apply_retention(conn, self.keep)
        except DATABASE_UNAVAILABLE:
            raise
        except psycopg.Error as exc:
            log.warning(
                "messages retention failed (next try in %.0f s): %s", self.clock.interval_s, exc
            )
            return
        if deleted:
            log.info("messages retention deleted %d rows older than %s", deleted, self.keep)

    def close(self) -> None:
        return None


def messages_sink(config: MessagesFlowConfig, name: str) -> PostgresSink[MessageRow]:
    hook = partial(RetentionHook, timedelta(days=config.retention_days), config.retention_check_s)
    return postgres_sink(config, MessageRows(), name, after_commit=hook)


def build_flow_with(
    source: Source[Any],
    rows_sink: Sink[Any],
    deadletter_sink: Sink[DeadLetter],
    flow_id: str = FLOW_ID,
) -> Dataflow:
    """The whole flow with its edges swapped in (production and tests share this)."""
    flow = Dataflow(flow_id)
    rows = kafka_events("input", flow, source, decode_event, deadletter_sink)
    rows_output("postgres", rows, rows_sink)
    return flow


def build_flow(config: MessagesFlowConfig) -> Dataflow:
    """The production flow: Kafka in; PostgreSQL and dead letters out."""
    return build_flow_with(
        kafka_source(config, FLOW_ID, [config.topics.ocpp_events]),
        messages_sink(config, FLOW_ID),
        dead_letter_sink(config, FLOW_ID),
    )


def from_env() -> Dataflow:
    """Entry point for ``python -m flows.run "flows.messages.dataflow:from_env()"``."""
    config = MessagesFlowSettings.load().flow_config()
    flow = build_flow(config)
    metrics.serve(FLOW_ID, config, [config.topics.ocpp_events])
    tune_gc(FLOW_GC_YOUNG_THRESHOLD)
    return flow

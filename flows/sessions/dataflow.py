"""The sessions dataflow: ``ocpp.events`` -> sessions + meter_samples (PostgreSQL).

Wiring only; every per-event decision lives in :mod:`flows.sessions.logic`::

    kafka input --oks--> decode envelope + parse event --ok--> key by charge point
        |                       |                                  |
        errs                    invalid                    stateful_map(logic.apply)
        v                       v                                  v
    dead letter  <-------  dead letter                 flatten -> PostgresSink

Run it with ``python -m bytewax.run "flows.sessions.dataflow:from_env()"``
(add ``-r DB_DIR -s SECS -b SECS`` for recovery, ``-i/-a`` for several processes).
State per charge point is small and picklable; the Kafka offsets live in Bytewax
recovery, and both sinks are idempotent / at-least-once.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import bytewax.operators as op
import psycopg
from bytewax.connectors.kafka import KafkaSink, KafkaSinkMessage, KafkaSourceMessage
from bytewax.connectors.kafka import operators as kop
from bytewax.connectors.kafka.operators import KafkaOpOut
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, Sink, StatelessSinkPartition
from confluent_kafka import OFFSET_BEGINNING
from tenacity import (
    Retrying,
    before_sleep_log,
    retry_if_exception_type,
    wait_exponential,
)

from bus.envelope import EnvelopeError, decode_envelope
from bus.topics import Topics
from flows.sessions import logic
from flows.sessions.logic import ChargePointState, Event, InvalidEvent, Output
from store.writers import write_sessions_batch

log = logging.getLogger(__name__)

FLOW_ID = "chargeflow-sessions"

RawMessage = KafkaSourceMessage[bytes | None, bytes | None]
DeadLetter = KafkaSinkMessage[bytes | None, bytes | None]
FlowInput = Callable[[Dataflow], KafkaOpOut[Any, Any]]


@dataclass(frozen=True)
class SessionsFlowConfig:
    """Where the sessions flow reads from and writes to."""

    brokers: list[str]
    database_url: str
    topics: Topics = field(default_factory=Topics)
    tail: bool = True
    batch_size: int = 1000
    starting_offset: int = OFFSET_BEGINNING
    kafka_config: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------- pure steps


def dead_letter(
    msg: RawMessage, reason: str, stage: str
) -> DeadLetter:
    """The original message (bytes and key unchanged) with the dead-letter headers."""
    headers = [
        ("deadletter.reason", reason.encode()),
        ("deadletter.stage", stage.encode()),
        ("deadletter.source.topic", (msg.topic or "").encode()),
        ("deadletter.source.partition", str(msg.partition).encode()),
        ("deadletter.source.offset", str(msg.offset).encode()),
    ]
    return KafkaSinkMessage(key=msg.key, value=msg.value, headers=headers)


def decode(msg: RawMessage) -> Event | DeadLetter | None:
    """A session event, a dead letter (with reason), or None (not about sessions)."""
    try:
        return logic.parse_event(decode_envelope(msg.value))
    except EnvelopeError as exc:
        return dead_letter(msg, str(exc), "decode")
    except InvalidEvent as exc:
        return dead_letter(msg, str(exc), "validate")
    except Exception as exc:  # a parser bug must not stop the flow for everyone
        log.exception("unexpected error decoding %s[%s]@%s", msg.topic, msg.partition,
                      msg.offset)
        return dead_letter(msg, f"unexpected {type(exc).__name__}: {exc}", "validate")


def consume_error_dead_letter(err: Any) -> DeadLetter:
    """A consumer error from the Kafka input, as a dead letter."""
    return dead_letter(err.msg, f"kafka consumer error: {err.err.str()}", "consume")


def step(
    state: ChargePointState | None, event: Event
) -> tuple[ChargePointState, list[Output]]:
    """The stateful_map mapper (module-level so recovery snapshots stay picklable)."""
    return logic.apply(state, event)


# --------------------------------------------------------------------------- sink


class _PostgresPartition(StatelessSinkPartition[Output]):
    def __init__(self, database_url: str, max_backoff_s: float) -> None:
        self._url = database_url
        self._conn: psycopg.Connection[Any] | None = None
        self._retrying = Retrying(
            retry=retry_if_exception_type((psycopg.OperationalError, psycopg.InterfaceError)),
            wait=wait_exponential(multiplier=0.1, max=max_backoff_s),
            before_sleep=before_sleep_log(log, logging.WARNING),
            reraise=True,
        )

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self._url, autocommit=True)
        return self._conn

    def _write(self, items: list[Output]) -> None:
        sessions = [i for i in items if isinstance(i, logic.SessionRow)]
        samples = [i for i in items if isinstance(i, logic.MeterSampleRow)]
        try:
            write_sessions_batch(self._connection(), sessions, samples)
        except (psycopg.OperationalError, psycopg.InterfaceError):
            self._close_conn()
            raise

    def write_batch(self, items: list[Output]) -> None:
        # Blocks (backpressure) until the database takes the batch; connection
        # problems are retried forever, anything else crashes the flow loudly
        # (recovery then replays the batch) - rows are never dropped.
        self._retrying(self._write, items)

    def _close_conn(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def close(self) -> None:
        self._close_conn()


class PostgresSessionsSink(DynamicSink[Output]):
    """Writes SessionRow/MeterSampleRow batches through ``store.writers``."""

    def __init__(self, database_url: str, *, max_backoff_s: float = 10.0) -> None:
        self._url = database_url
        self._max_backoff_s = max_backoff_s

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _PostgresPartition:
        return _PostgresPartition(self._url, self._max_backoff_s)


# --------------------------------------------------------------------------- wiring


def build_flow_with(
    flow_input: FlowInput,
    rows_sink: Sink[Output],
    deadletter_sink: Sink[DeadLetter],
    flow_id: str = FLOW_ID,
) -> Dataflow:
    """The whole flow with its edges swapped in (production and tests share this)."""
    flow = Dataflow(flow_id)
    raw = flow_input(flow)
    consumer_errors = op.map("consume_errors", raw.errs, consume_error_dead_letter)

    decoded = op.filter_map("decode", raw.oks, decode)
    split = op.branch("split_invalid", decoded, lambda x: isinstance(x, KafkaSinkMessage))
    invalid: Any = split.trues
    events: Any = split.falses
    op.output("deadletter", op.merge("dead_letters", consumer_errors, invalid), deadletter_sink)

    keyed = op.key_on("key_by_charge_point", events, lambda e: e.charge_point_id)
    outputs = op.stateful_map("sessions", keyed, step)
    rows = op.flat_map("rows", outputs, lambda kv: kv[1])
    op.output("postgres", rows, rows_sink)
    return flow


def kafka_input(config: SessionsFlowConfig) -> FlowInput:
    """The production input: Bytewax's Kafka operator (offsets in recovery)."""

    def build(flow: Dataflow) -> KafkaOpOut[Any, Any]:
        return kop.input(
            "kafka_in", flow, brokers=config.brokers, topics=[config.topics.ocpp_events],
            tail=config.tail, starting_offset=config.starting_offset,
            add_config=config.kafka_config or None, batch_size=config.batch_size,
        )

    return build


def build_flow(config: SessionsFlowConfig) -> Dataflow:
    """The production flow: Kafka in, PostgreSQL and the dead-letter topic out."""
    producer_config = {"acks": "all", **config.kafka_config}
    return build_flow_with(
        kafka_input(config),
        PostgresSessionsSink(config.database_url),
        KafkaSink(config.brokers, config.topics.deadletter, producer_config),
    )


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be true or false, got {raw!r}")


def config_from_env() -> SessionsFlowConfig:
    """Read CHARGEFLOW_KAFKA_BOOTSTRAP, CHARGEFLOW_DATABASE_URL,
    CHARGEFLOW_TOPIC_PREFIX (default "") and CHARGEFLOW_FLOW_TAIL (default true)."""
    try:
        bootstrap = os.environ["CHARGEFLOW_KAFKA_BOOTSTRAP"]
        database_url = os.environ["CHARGEFLOW_DATABASE_URL"]
    except KeyError as exc:
        raise RuntimeError(f"environment variable {exc.args[0]} is required") from None
    return SessionsFlowConfig(
        brokers=[b.strip() for b in bootstrap.split(",") if b.strip()],
        database_url=database_url,
        topics=Topics.with_prefix(os.environ.get("CHARGEFLOW_TOPIC_PREFIX", "")),
        tail=_env_bool("CHARGEFLOW_FLOW_TAIL", True),
    )


def from_env() -> Dataflow:
    """Entry point for ``python -m bytewax.run "flows.sessions.dataflow:from_env()"``."""
    return build_flow(config_from_env())

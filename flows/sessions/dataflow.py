"""The sessions dataflow: ``ocpp.events`` + ``meter.readings`` -> sessions + meter_samples
(PostgreSQL) -> ``sessions.closed`` (through the transactional outbox).

Wiring only; every per-event decision lives in :mod:`flows.sessions.logic`::

    kafka source --> decode_batch (one call per input batch) --dead letters--> dead letter
                         |  (charge point, [its events of the batch])
                         v
              stateful_batch(SessionsLogic: logic.apply_batch; notify_at/on_notify
                         |   close a silent station's sessions by the wall clock)
                         |  (charge point, [rows])
                         v
              OverlappedPostgresSessionsSink (writer thread; commit, then publish
              the sessions_outbox -> sessions.closed)

Run it with ``python -m bytewax.run "flows.sessions.dataflow:from_env()"``
(add ``-r DB_DIR -s SECS -b SECS`` for recovery, ``-i/-a`` for several processes).
State per charge point is small and picklable; the Kafka offsets live in Bytewax
recovery, and both sinks are idempotent / at-least-once.

Throughput: the sessions step folds each charge point's share of a
Kafka batch at once (one session snapshot per transaction and batch), its
snapshots are pickled bytes, and the database writes run on a writer thread
that Bytewax's epoch snapshot waits for (:class:`flows.common.OverlappedSink`), so
computing batch N+1 overlaps writing batch N without ever committing an epoch
whose rows are not in the database. With several workers set
``CHARGEFLOW_FLOW_SINK_PARTITIONS`` to their number (rows then go to the writer
of their charge point's partition, possibly on another worker).
Upgrading: the state moved from a ``stateful_map`` to this ``stateful_batch``
step, so recovery stores of earlier versions do not carry over (start with a
fresh recovery directory, the launcher does on every run).
"""

from __future__ import annotations

import logging
import pickle
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, cast

import bytewax.operators as op
import psycopg
from bytewax.connectors.kafka import (
    KafkaSink,
)
from bytewax.dataflow import Dataflow, Stream
from bytewax.operators import KeyedStream, StatefulBatchLogic
from bytewax.outputs import (
    DynamicSink,
    FixedPartitionedSink,
    Sink,
    StatelessSinkPartition,
)

from flows import metrics
from flows.common import (
    DeadLetter,
    OverlappedSink,
    RawMessage,
    RetryingConnection,
    consume_error_dead_letter,
    dead_letter,
    decode_and_group,
    event_or_dead_letter,
    is_dead_letter,
    kafka_events_input,
    tune_gc,
)
from flows.sessions import logic
from flows.sessions.config import SessionsFlowConfig
from flows.sessions.logic import (
    DEFAULT_RULES,
    ChargePointState,
    Event,
    InvalidEvent,
    Output,
    SessionRules,
)
from flows.sessions.outbox import OutboxPublisher
from flows.settings import SessionsFlowSettings
from runtime.logs import with_kafka_logger
from store.writers import write_sessions_batch

log = logging.getLogger(__name__)

FLOW_ID = "chargeflow-sessions"

__all__ = [
    "DeadLetter",
    "RawMessage",
    "SessionsFlowConfig",
    "consume_error_dead_letter",
    "dead_letter",
]

# The input: Kafka messages and consumer errors (KafkaSource(raise_on_errors=False)).
FlowInput = Callable[[Dataflow], "Stream[Any]"]


# --------------------------------------------------------------------------- pure steps


def decode(msg: RawMessage) -> Event | DeadLetter | None:
    """A session event, a dead letter (with reason), or None (not about sessions)."""
    return event_or_dead_letter(msg, logic.decode_event, InvalidEvent, log)


def decode_batch(items: list[Any]) -> list[tuple[str, list[Event]] | DeadLetter]:
    """Dead letters, and per charge point its events of the input batch in order
    (:func:`flows.common.decode_and_group` with :func:`logic.decode_event`)."""
    return decode_and_group(items, logic.decode_event, InvalidEvent, log)


def step(
    state: ChargePointState | None,
    event: Event,
    rules: SessionRules = DEFAULT_RULES,
) -> tuple[ChargePointState, list[Output]]:
    """One event through :func:`logic.apply` (:class:`SessionsLogic` folds batches)."""
    return logic.apply(state, event, rules)


_NOTIFY_SLACK = timedelta(milliseconds=10)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class SessionsLogic(StatefulBatchLogic[list[Event], list[Output], bytes]):
    """The per-charge-point state of the ``sessions`` step.

    ``on_batch`` folds the charge point's events of one Bytewax batch through
    :func:`logic.apply_batch` (one session snapshot per transaction and batch) and
    emits their rows as one list (fewer items through Bytewax than one per row).
    ``snapshot`` (end of every epoch, for the charge points seen in it) pickles the
    state: an independent copy like ``stateful_map``'s deep copy, but several times
    cheaper.

    A station that goes silent (offline, powered off) sends no more events, so
    its event time stands still: ``notify_at``/``on_notify`` close its idle
    sessions by the wall clock instead (:func:`logic.expire_silent`).
    """

    def __init__(
        self, rules: SessionRules, resume: bytes | None, clock: Callable[[], datetime] = _utcnow
    ) -> None:
        self.rules = rules
        self.state: ChargePointState | None = None if resume is None else pickle.loads(resume)
        self._clock = clock
        # Wall clock of the last message of this charge point. Not in the snapshot:
        # after a restart the silence is counted from the restart, so a flow that
        # was down (or is catching up) never closes sessions whose messages are
        # still waiting in Kafka.
        self._last_heard = clock()
        self._expired_for = timedelta(-1)  # silence already expired since then

    def on_batch(self, values: list[list[Event]]) -> tuple[list[list[Output]], bool]:
        events = values[0] if len(values) == 1 else [e for chunk in values for e in chunk]
        self.state, rows = logic.apply_batch(self.state, events, self.rules)
        self._last_heard = self._clock()
        self._expired_for = timedelta(-1)
        return ([rows] if rows else []), StatefulBatchLogic.RETAIN

    def notify_at(self) -> datetime | None:
        """When a silent station's waiting session must close (wall clock):
        :func:`logic.next_deadline` of event time after the last message heard."""
        if self.state is None:
            return None
        wait = logic.next_deadline(self.state, self.rules)
        if wait is None or wait <= self._expired_for:
            return None  # nothing waits, or expiring that far settled all it could
        # Just past the deadline: the idle rule is "more than idle_timeout".
        return self._last_heard + wait + _NOTIFY_SLACK

    def on_notify(self) -> tuple[list[list[Output]], bool]:
        if self.state is None:
            return [], StatefulBatchLogic.RETAIN
        silent_for = self._clock() - self._last_heard
        self.state, rows = logic.expire_silent(self.state, silent_for, self.rules)
        self._expired_for = silent_for
        return ([rows] if rows else []), StatefulBatchLogic.RETAIN

    def snapshot(self) -> bytes:
        return pickle.dumps(self.state, protocol=pickle.HIGHEST_PROTOCOL)


def sessions_logic(rules: SessionRules, resume: bytes | None) -> SessionsLogic:
    return SessionsLogic(rules, resume)


# --------------------------------------------------------------------------- sink


class _SessionsWriter:
    """Writes each batch of rows in one transaction; waits out database outages.

    The writes go through :class:`flows.common.RetryingConnection`: while the
    database is unreachable ``write`` keeps retrying with exponential backoff
    (``initial_backoff_s`` doubling up to ``max_backoff_s``, with jitter), logging
    every retry and the recovery. Blocking here is the backpressure: the worker
    stops reading Kafka, the input offsets in the recovery store stay behind the
    last written batch, so nothing read is lost even if the process dies during
    the outage. Errors other than connection/operational ones crash the flow
    loudly (recovery then replays the batch). After every commit (and once at
    start, for what a previous run committed but did not publish) the sessions
    outbox is published.
    """

    def __init__(
        self,
        database_url: str,
        max_backoff_s: float,
        initial_backoff_s: float,
        connect_timeout_s: int,
        publisher: OutboxPublisher | None = None,
    ) -> None:
        self._db = RetryingConnection(
            database_url, FLOW_ID, max_backoff_s, initial_backoff_s, connect_timeout_s
        )
        self._publisher = publisher
        self._publish()  # what a previous run committed but did not get to publish

    def _publish(self) -> None:
        if self._publisher is None:
            return
        try:
            self._publisher.publish(self._db.connection())
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            self._db.close()
            log.warning("outbox not published yet (database: %s)", exc)

    def write(self, items: list[Output]) -> None:
        sessions: list[logic.SessionRow] = []
        samples: list[logic.MeterSampleRow] = []
        for item in items:
            if isinstance(item, logic.MeterSampleRow):
                samples.append(item)
            else:
                sessions.append(item)
        self._db.run(lambda conn: write_sessions_batch(conn, sessions, samples), len(items))
        self._publish()  # after the commit: new outbox rows and earlier leftovers

    def close(self) -> None:
        if self._publisher is not None:
            self._publisher.close()
        self._db.close()


class _PostgresPartition(StatelessSinkPartition[Output]):
    """Writes each batch before returning (see :class:`_SessionsWriter`)."""

    def __init__(self, writer: _SessionsWriter) -> None:
        self._writer = writer
        self._metrics = metrics.SinkMetrics(FLOW_ID)

    def write_batch(self, items: list[Output]) -> None:
        started = time.perf_counter()
        self._writer.write(items)
        self._metrics.observe(len(items), time.perf_counter() - started)

    def close(self) -> None:
        self._writer.close()


class PostgresSessionsSink(DynamicSink[Output]):
    """Writes SessionRow/MeterSampleRow batches through ``store.writers``, in the step."""

    def __init__(
        self,
        database_url: str,
        *,
        max_backoff_s: float = 10.0,
        initial_backoff_s: float = 0.1,
        connect_timeout_s: int = 5,
        publisher: Callable[[], OutboxPublisher] | None = None,
    ) -> None:
        if max_backoff_s <= 0 or initial_backoff_s <= 0:
            raise ValueError("backoff must be positive")
        self._url = database_url
        self._max_backoff_s = max_backoff_s
        self._initial_backoff_s = initial_backoff_s
        self._connect_timeout_s = connect_timeout_s
        self._publisher = publisher

    def writer(self) -> _SessionsWriter:
        return _SessionsWriter(
            self._url,
            self._max_backoff_s,
            self._initial_backoff_s,
            self._connect_timeout_s,
            self._publisher() if self._publisher else None,
        )

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _PostgresPartition:
        return _PostgresPartition(self.writer())


class _RowListsWriter:
    """A :class:`_SessionsWriter` fed the ``[rows]`` lists of the sessions step."""

    def __init__(self, writer: _SessionsWriter) -> None:
        self._writer = writer

    def write(self, items: list[list[Output]]) -> None:
        self._writer.write([row for rows in items for row in rows])

    def close(self) -> None:
        self._writer.close()


class OverlappedPostgresSessionsSink(OverlappedSink[list[Output]]):
    """Like :class:`PostgresSessionsSink`, but writes overlap with processing
    (:class:`flows.common.OverlappedSink`: a writer thread that Bytewax's epoch
    snapshot drains, so a committed epoch never has rows that are not in the
    database; ``write_batch`` blocks while ``max_pending_rows`` rows wait). Items are
    ``(charge point, [rows])``; ``partitions`` writers (one DB connection each), rows
    go to them by charge point (with several workers, set it to the number of
    workers)."""

    def __init__(
        self,
        database_url: str,
        *,
        partitions: int = 1,
        max_pending_rows: int = 50_000,
        max_backoff_s: float = 10.0,
        initial_backoff_s: float = 0.1,
        connect_timeout_s: int = 5,
        publisher: Callable[[], OutboxPublisher] | None = None,
    ) -> None:
        writers = PostgresSessionsSink(
            database_url,
            max_backoff_s=max_backoff_s,
            initial_backoff_s=initial_backoff_s,
            connect_timeout_s=connect_timeout_s,
            publisher=publisher,
        )
        super().__init__(
            lambda: _RowListsWriter(writers.writer()),
            name=FLOW_ID,
            partitions=partitions,
            max_pending=max_pending_rows,
            weight=len,
        )


# --------------------------------------------------------------------------- wiring


def build_flow_with(
    flow_input: FlowInput,
    rows_sink: Sink[Output],
    deadletter_sink: Sink[DeadLetter],
    flow_id: str = FLOW_ID,
    rules: SessionRules = DEFAULT_RULES,
) -> Dataflow:
    """The whole flow with its edges swapped in (production and tests share this)."""
    flow = Dataflow(flow_id)
    raw = flow_input(flow)
    # One Python call per input batch: decode, dead letters, group by charge point.
    decoded = op.flat_map_batch("decode", raw, decode_batch)
    split = op.branch("split_invalid", decoded, is_dead_letter)
    invalid: Any = split.trues
    op.output("deadletter", invalid, deadletter_sink)
    # (charge point, [its events of the batch]): already keyed.
    grouped = cast("KeyedStream[list[Event]]", split.falses)
    # (charge point, [rows of its events in one batch])
    batches = op.stateful_batch("sessions", grouped, partial(sessions_logic, rules))
    if isinstance(rows_sink, FixedPartitionedSink):
        op.output("postgres", batches, rows_sink)
    else:
        rows = op.flat_map("rows", batches, lambda kv: kv[1])
        op.output("postgres", rows, rows_sink)
    return flow


def kafka_input(config: SessionsFlowConfig) -> FlowInput:
    """The production input (:func:`flows.common.kafka_events_input`)."""
    return kafka_events_input(config, FLOW_ID)


def build_flow(config: SessionsFlowConfig) -> Dataflow:
    """The production flow: Kafka in, PostgreSQL and the dead-letter topic out."""
    producer_config = with_kafka_logger({"acks": "all", **config.kafka_config})
    publisher = (
        partial(OutboxPublisher, config.brokers, config.topics.sessions_closed, config.kafka_config)
        if config.publish_closed
        else None
    )
    rows_sink: Sink[Any] = (
        OverlappedPostgresSessionsSink(
            config.database_url,
            partitions=config.sink_partitions,
            max_backoff_s=config.db_max_backoff_s,
            publisher=publisher,
        )
        if config.overlap_writes
        else PostgresSessionsSink(
            config.database_url, max_backoff_s=config.db_max_backoff_s, publisher=publisher
        )
    )
    return build_flow_with(
        kafka_input(config),
        rows_sink,
        metrics.CountingDeadLetterSink(
            KafkaSink(config.brokers, config.topics.deadletter, producer_config), FLOW_ID
        ),
        rules=config.rules,
    )


def from_env() -> Dataflow:
    """Entry point for ``python -m flows.run "flows.sessions.dataflow:from_env()"`` (also
    tunes the process's garbage collector: :func:`flows.common.tune_gc`)."""
    config = SessionsFlowSettings.load().flow_config()
    flow = build_flow(config)
    metrics.serve(FLOW_ID, config, [config.topics.ocpp_events, config.topics.meter_readings])
    tune_gc()
    return flow

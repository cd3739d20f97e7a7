"""Wiring shared by the flows: dead letters, the flow config, a PostgreSQL connection
that waits out database outages (:class:`RetryingConnection`) and sinks built on it:
:class:`RetryingPostgresSink` (writes in the step; the status flow) and
:class:`OverlappedPostgresSink` (writes on a thread while the flow computes on; the
load flow; the sessions flow has its own overlapped sink on the same connection).
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Generic, Protocol, TypeVar, cast

import bytewax.operators as op
import psycopg
from bytewax.connectors.kafka import KafkaSinkMessage, KafkaSourceMessage
from bytewax.dataflow import Dataflow, Stream
from bytewax.outputs import (
    DynamicSink,
    FixedPartitionedSink,
    StatefulSinkPartition,
    StatelessSinkPartition,
)
from confluent_kafka import OFFSET_BEGINNING
from pydantic import Field
from tenacity import RetryCallState

from bus.admin import wait_for_broker
from bus.envelope import Envelope, EnvelopeError, decode_envelope
from bus.topics import Topics
from flows.metrics import MeasuredKafkaSource, SinkMetrics
from runtime.logs import with_kafka_logger
from runtime.retry import DATABASE, failure, next_wait, retrying
from runtime.settings import OptionalPort

log = logging.getLogger(__name__)

# What a write raises while the database is away (down, restarting, unreachable).
DATABASE_UNAVAILABLE = (psycopg.OperationalError, psycopg.InterfaceError)
RawMessage = KafkaSourceMessage[bytes | None, bytes | None]
DeadLetter = KafkaSinkMessage[bytes | None, bytes | None]
T = TypeVar("T")


@dataclass(frozen=True)
class FlowConfig:
    """Where a flow reads from and writes to (``flows.settings`` builds it from
    ``CHARGEFLOW_FLOW_*``)."""

    brokers: list[str]
    database_url: str = field(repr=False)  # may hold a password
    topics: Topics = field(default_factory=Topics)
    # Keep reading at the end of the topics (false: stop there, for batch runs).
    tail: bool = True
    # Kafka messages the input hands the flow at once.
    batch_size: Annotated[int, Field(ge=1)] = 1000
    starting_offset: int = OFFSET_BEGINNING
    # Extra librdkafka settings; every client also gets runtime.logs.kafka_logger().
    kafka_config: dict[str, Any] = field(default_factory=dict)
    # Longest wait between tries of a sink write while the database is down.
    db_max_backoff_s: Annotated[float, Field(gt=0)] = 10.0
    # Write to PostgreSQL on a background thread while the flow computes the next
    # batch (the sessions and load flows); false writes inside the step.
    overlap_writes: bool = True
    # Database writers (connections) of the overlapped sink; rows go to them by key.
    # With several workers, set it to their number.
    sink_partitions: Annotated[int, Field(ge=1)] = 1
    # Health/metrics endpoint (flows.metrics.serve): unset or "off" = none, 0 = a free
    # port, N = port N + the Bytewax process id.
    metrics_port: OptionalPort = None
    # Address the health/metrics endpoint listens on.
    metrics_host: str = "127.0.0.1"


def dead_letter(msg: RawMessage, reason: str, stage: str) -> DeadLetter:
    """The original message (bytes and key unchanged) with the dead-letter headers."""
    headers = [
        ("deadletter.reason", reason.encode()),
        ("deadletter.stage", stage.encode()),
        ("deadletter.source.topic", (msg.topic or "").encode()),
        ("deadletter.source.partition", str(msg.partition).encode()),
        ("deadletter.source.offset", str(msg.offset).encode()),
    ]
    return KafkaSinkMessage(key=msg.key, value=msg.value, headers=headers)


def consume_error_dead_letter(err: Any) -> DeadLetter:
    """A consumer error from the Kafka input, as a dead letter."""
    return dead_letter(err.msg, f"kafka consumer error: {err.err.str()}", "consume")


def tune_gc(gen0: int = 10_000) -> None:
    """Garbage collection for a flow process, once its modules are loaded: what
    exists now moves to the permanent generation (``gc.freeze``: full collections no
    longer walk the imported modules), and young objects are collected every
    ``gen0`` allocations instead of Python's 700. A flow allocates a few objects per
    message, nearly all freed by reference counting, so the default makes the
    collector a tenth of its CPU time; reference cycles are still collected."""
    gc.collect()
    gc.freeze()
    young, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(max(young, gen0), gen1, gen2)


E = TypeVar("E")


def decode_or_dead_letter(
    msg: KafkaSourceMessage[Any, Any],
    parse: Callable[[Envelope], E],
    invalid: type[Exception],
    log: logging.Logger,
) -> E | KafkaSinkMessage[Any, Any]:
    """``parse`` the message's envelope, or the dead letter saying why not: stage
    ``decode`` (not an envelope), ``validate`` (``invalid`` raised, or a parser bug,
    which must not stop the flow for everyone)."""
    return event_or_dead_letter(msg, lambda data: parse(decode_envelope(data)), invalid, log)


def event_or_dead_letter(
    msg: KafkaSourceMessage[Any, Any],
    decode_event: Callable[[bytes | None], E],
    invalid: type[Exception],
    log: logging.Logger,
) -> E | KafkaSinkMessage[Any, Any]:
    """``decode_event`` the message's value (raising :class:`EnvelopeError` or
    ``invalid`` like :func:`bus.envelope.decode_envelope` and a parser do), or the
    dead letter saying why not (as :func:`decode_or_dead_letter`)."""
    try:
        return decode_event(msg.value)
    except EnvelopeError as exc:
        return dead_letter(msg, str(exc), "decode")
    except invalid as exc:
        return dead_letter(msg, str(exc), "validate")
    except Exception as exc:
        log.exception("unexpected error decoding %s[%s]@%s", msg.topic, msg.partition, msg.offset)
        return dead_letter(msg, f"unexpected {type(exc).__name__}: {exc}", "validate")


class _ByStation(Protocol):
    @property
    def charge_point_id(self) -> str: ...


S = TypeVar("S", bound=_ByStation)


def decode_and_group(
    items: list[Any],
    decode_event: Callable[[bytes | None], S | None],
    invalid: type[Exception],
    log: logging.Logger,
) -> list[tuple[str, list[S]] | DeadLetter]:
    """One Kafka input batch (messages and consumer errors, ``KafkaSource(...,
    raise_on_errors=False)``) as its dead letters plus, per charge point, its events
    in input order: one Python call per batch and fewer, bigger items downstream
    than one per message. ``decode_event`` returns None for messages the flow does
    not use; what it raises becomes a dead letter (:func:`event_or_dead_letter`)."""
    out: list[tuple[str, list[S]] | DeadLetter] = []
    by_cp: dict[str, list[S]] = {}
    for item in items:
        if type(item) is not KafkaSourceMessage:
            out.append(consume_error_dead_letter(item))
            continue
        try:
            event = decode_event(item.value)
        except Exception:  # say why, as a dead letter (logging parser bugs)
            out.append(cast(DeadLetter, event_or_dead_letter(item, decode_event, invalid, log)))
            continue
        if event is None:
            continue
        cp = event.charge_point_id
        events = by_cp.get(cp)
        if events is None:
            by_cp[cp] = [event]
        else:
            events.append(event)
    out.extend(by_cp.items())
    return out


def is_dead_letter(item: object) -> bool:
    return type(item) is KafkaSinkMessage


def kafka_events_input(
    config: FlowConfig, flow_id: str = "flow"
) -> Callable[[Dataflow], Stream[Any]]:
    """The production input of the flows that read ``ocpp.events`` and
    ``meter.readings``: Bytewax's Kafka source (offsets in recovery; measured,
    :class:`flows.metrics.MeasuredKafkaSource`), consumer errors left in the stream
    for :func:`decode_and_group` to dead-letter."""

    def build(flow: Dataflow) -> Stream[Any]:
        wait_for_broker(",".join(config.brokers))
        return op.input(
            "kafka_in",
            flow,
            MeasuredKafkaSource(
                flow_id,
                config.brokers,
                [config.topics.ocpp_events, config.topics.meter_readings],
                tail=config.tail,
                starting_offset=config.starting_offset,
                add_config=with_kafka_logger(config.kafka_config),
                batch_size=config.batch_size,
                raise_on_errors=False,
            ),
        )

    return build


# --------------------------------------------------------------------------- sink

WriteBatch = Callable[["psycopg.Connection[Any]", list[T]], None]


class RetryingConnection:
    """One autocommit connection, (re)opened on demand; :meth:`run` retries a write
    while the database is unreachable (:data:`runtime.retry.DATABASE` capped at
    ``max_backoff_s``), logging every retry and the recovery. Blocking is the
    backpressure: the input offsets stay behind. Other errors propagate (the flow
    crashes loudly; recovery replays the batch)."""

    def __init__(
        self,
        url: str,
        name: str,
        max_backoff_s: float,
        initial_backoff_s: float,
        connect_timeout_s: int,
    ) -> None:
        self._url = url
        self._name = name
        self.max_backoff_s = max_backoff_s
        self._backoff = DATABASE.capped(max_backoff_s, initial_s=initial_backoff_s)
        self._connect_timeout_s = connect_timeout_s
        self._conn: psycopg.Connection[Any] | None = None

    def connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(
                self._url,
                autocommit=True,
                connect_timeout=self._connect_timeout_s,
                application_name=self._name,
            )
        return self._conn

    def run(self, write: Callable[[psycopg.Connection[Any]], None], rows: int) -> None:
        """``write(conn)`` until it gets through (``rows``: for the log only)."""

        def before_sleep(state: RetryCallState) -> None:
            self.close()
            exc = failure(state)
            text = str(exc).strip()
            reason = text.splitlines()[0] if text else repr(exc)
            log.warning(
                "%s: database unavailable (%s: %s); %d rows waiting, retry %d "
                "in %.2fs (max backoff %.1fs)",
                self._name,
                type(exc).__name__,
                reason,
                rows,
                state.attempt_number,
                next_wait(state),
                self.max_backoff_s,
            )

        for attempt in retrying(self._backoff, DATABASE_UNAVAILABLE, before_sleep=before_sleep):
            with attempt:
                write(self.connection())
        state = attempt.retry_state
        if state.attempt_number > 1:
            log.warning(
                "%s: database available again after %d retries (%.1fs); wrote %d rows",
                self._name,
                state.attempt_number - 1,
                time.monotonic() - state.start_time,
                rows,
            )

    def close(self) -> None:
        """Close the connection (the next use opens a new one)."""
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:
                pass
            finally:
                self._conn = None


class _RetryingPartition(StatelessSinkPartition[T], Generic[T]):
    """Writes each batch with ``write`` through a :class:`RetryingConnection`."""

    def __init__(self, db: RetryingConnection, write: WriteBatch[T], name: str) -> None:
        self._db = db
        self._write = write
        self._metrics = SinkMetrics(name)

    def write_batch(self, items: list[T]) -> None:
        write = self._write
        started = time.perf_counter()
        self._db.run(lambda conn: write(conn, items), len(items))
        self._metrics.observe(len(items), time.perf_counter() - started)

    def close(self) -> None:
        self._db.close()


class RetryingPostgresSink(DynamicSink[T], Generic[T]):
    """A sink that hands each batch to ``write(conn, items)`` (one transaction there)."""

    def __init__(
        self,
        database_url: str,
        write: WriteBatch[T],
        *,
        name: str,
        max_backoff_s: float = 10.0,
        initial_backoff_s: float = 0.1,
        connect_timeout_s: int = 5,
    ) -> None:
        if max_backoff_s <= 0 or initial_backoff_s <= 0:
            raise ValueError("backoff must be positive")
        self._url = database_url
        self._write = write
        self._name = name
        self._max_backoff_s = max_backoff_s
        self._initial_backoff_s = initial_backoff_s
        self._connect_timeout_s = connect_timeout_s

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _RetryingPartition[T]:
        return _RetryingPartition(
            RetryingConnection(
                self._url,
                self._name,
                self._max_backoff_s,
                self._initial_backoff_s,
                self._connect_timeout_s,
            ),
            self._write,
            self._name,
        )


class BatchWriter(Protocol[T]):
    """What an overlapped sink's thread writes through: one batch per call (one
    transaction, outages waited out), then ``close``."""

    def write(self, items: list[T]) -> None: ...
    def close(self) -> None: ...


class _DbBatchWriter(Generic[T]):
    """``write(conn, items)`` through a :class:`RetryingConnection`."""

    def __init__(self, db: RetryingConnection, write: WriteBatch[T]) -> None:
        self._db = db
        self._write = write

    def write(self, items: list[T]) -> None:
        write = self._write
        self._db.run(lambda conn: write(conn, items), len(items))

    def close(self) -> None:
        self._db.close()


class _OverlappedPartition(StatefulSinkPartition[T, None], Generic[T]):
    """Writes on a background thread while the flow computes the next batches.

    ``write_batch`` hands the items to the writer thread and returns; items that
    arrive while it is busy are written together in its next transaction (through a
    :class:`RetryingConnection`, so an outage is waited out). Safe under a crash
    because ``snapshot`` -- which Bytewax calls at the end of every epoch, after the
    epoch's last ``write_batch`` and before it commits the epoch (input offsets and
    state) to the recovery store -- returns only once everything handed over so far
    is committed: a committed epoch never has rows that are not in the database;
    rows of an epoch that was not committed are written again after a restart, which
    the writers absorb (idempotent). Backpressure: ``write_batch`` blocks while
    ``max_pending`` (by ``weight``) waits, so a database outage stops the flow from
    reading on. A write that fails with anything but an outage is raised from the
    next ``write_batch``/``snapshot``/``close``, crashing the flow before the epoch
    commits.
    """

    def __init__(
        self, writer: BatchWriter[T], name: str, max_pending: int, weight: Callable[[T], int]
    ) -> None:
        self._writer = writer
        self._max_pending = max_pending
        self._weight = weight
        self._cond = threading.Condition()
        self._pending: list[T] = []
        self._pending_weight = 0
        self._busy = False
        self._error: BaseException | None = None
        self._reported = False  # the error was raised to Bytewax
        self._closed = False
        self._metrics = SinkMetrics(name)
        self._thread = threading.Thread(target=self._run, name=f"{name}-db-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        cond = self._cond
        write = self._writer.write
        while True:
            with cond:
                while not self._pending and not self._closed:
                    cond.wait()
                if not self._pending:
                    return  # closed and drained
                batch, size = self._pending, self._pending_weight
                self._pending, self._pending_weight = [], 0
                self._busy = True
                cond.notify_all()  # room for write_batch again
            try:
                started = time.perf_counter()
                write(batch)
                self._metrics.observe(size, time.perf_counter() - started)
            except BaseException as exc:
                log.exception("writing %d items failed", len(batch))
                with cond:
                    self._error = exc
                    self._busy = False
                    cond.notify_all()
                return
            with cond:
                self._busy = False
                cond.notify_all()

    def _raise_failure(self) -> None:
        if self._error is not None:
            self._reported = True
            raise RuntimeError("the sink could not write to PostgreSQL") from self._error

    def write_batch(self, values: list[T]) -> None:
        weight = self._weight
        with self._cond:
            self._raise_failure()
            while self._pending_weight >= self._max_pending:
                self._cond.wait()
                self._raise_failure()
            self._pending.extend(values)
            self._pending_weight += sum(weight(v) for v in values)
            self._cond.notify_all()

    def _drain(self) -> None:
        with self._cond:
            while (self._pending or self._busy) and self._error is None:
                self._cond.wait()
            self._raise_failure()

    def snapshot(self) -> None:
        self._drain()  # the epoch's rows are committed before Bytewax commits the epoch

    def close(self) -> None:
        # Bytewax also closes the partition while it unwinds from an error raised
        # here before: raising again then would abort the process.
        try:
            if not self._reported:
                self._drain()
        finally:
            with self._cond:
                self._closed = True
                self._cond.notify_all()
            self._thread.join()
            self._writer.close()


def _one(item: Any) -> int:
    return 1


class OverlappedSink(FixedPartitionedSink[T, None], Generic[T]):
    """Writes overlap with processing (:class:`_OverlappedPartition`): each of
    ``partitions`` parts writes through its own ``make_writer()`` (one database
    connection each; with several workers, set it to their number). Items are
    ``(key, value)``; values go to the parts by key."""

    def __init__(
        self,
        make_writer: Callable[[], BatchWriter[T]],
        *,
        name: str,
        partitions: int = 1,
        max_pending: int = 50_000,
        weight: Callable[[T], int] = _one,
    ) -> None:
        if partitions < 1 or max_pending < 1:
            raise ValueError("partitions and max_pending must be >= 1")
        self._make_writer = make_writer
        self._name = name
        self._partitions = partitions
        self._max_pending = max_pending
        self._weight = weight

    def list_parts(self) -> list[str]:
        return [f"writer-{i}" for i in range(self._partitions)]

    def build_part(
        self, step_id: str, for_part: str, resume_state: None
    ) -> _OverlappedPartition[T]:
        return _OverlappedPartition(
            self._make_writer(), self._name, self._max_pending, self._weight
        )


class OverlappedPostgresSink(OverlappedSink[T]):
    """Like :class:`RetryingPostgresSink`, but the writes overlap with processing
    (:class:`OverlappedSink`); ``write(conn, values)`` gets the values (one
    transaction there)."""

    def __init__(
        self,
        database_url: str,
        write: WriteBatch[T],
        *,
        name: str,
        partitions: int = 1,
        max_pending: int = 50_000,
        weight: Callable[[T], int] = _one,
        max_backoff_s: float = 10.0,
        initial_backoff_s: float = 0.1,
        connect_timeout_s: int = 5,
    ) -> None:
        if max_backoff_s <= 0 or initial_backoff_s <= 0:
            raise ValueError("backoff must be positive")

        def make_writer() -> BatchWriter[T]:
            return _DbBatchWriter(
                RetryingConnection(
                    database_url, name, max_backoff_s, initial_backoff_s, connect_timeout_s
                ),
                write,
            )

        super().__init__(
            make_writer, name=name, partitions=partitions, max_pending=max_pending, weight=weight
        )

"""Wiring shared by the flows: dead letters, env settings, a PostgreSQL connection
that waits out database outages (:class:`RetryingConnection`) and a sink built on it
(:class:`RetryingPostgresSink`, the load and status flows; the sessions flow has
its own overlapped sink on the same connection).
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import psycopg
from bytewax.connectors.kafka import KafkaSinkMessage, KafkaSourceMessage
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import OFFSET_BEGINNING

from bus.envelope import Envelope, EnvelopeError, decode_envelope
from bus.topics import Topics

log = logging.getLogger(__name__)

RawMessage = KafkaSourceMessage[bytes | None, bytes | None]
DeadLetter = KafkaSinkMessage[bytes | None, bytes | None]
T = TypeVar("T")


@dataclass(frozen=True)
class FlowConfig:
    """Where a flow reads from and writes to (see :func:`config_from_env`)."""

    brokers: list[str]
    database_url: str
    topics: Topics = field(default_factory=Topics)
    tail: bool = True
    batch_size: int = 1000
    starting_offset: int = OFFSET_BEGINNING
    kafka_config: dict[str, str] = field(default_factory=dict)
    db_max_backoff_s: float = 10.0


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


# --------------------------------------------------------------------------- env


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be true or false, got {raw!r}")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    return value


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
    try:
        return parse(decode_envelope(msg.value))
    except EnvelopeError as exc:
        return dead_letter(msg, str(exc), "decode")
    except invalid as exc:
        return dead_letter(msg, str(exc), "validate")
    except Exception as exc:
        log.exception("unexpected error decoding %s[%s]@%s", msg.topic, msg.partition,
                      msg.offset)
        return dead_letter(msg, f"unexpected {type(exc).__name__}: {exc}", "validate")


def config_from_env() -> FlowConfig:
    """CHARGEFLOW_KAFKA_BOOTSTRAP, CHARGEFLOW_DATABASE_URL (required),
    CHARGEFLOW_TOPIC_PREFIX (default ""), CHARGEFLOW_FLOW_TAIL (default true),
    CHARGEFLOW_FLOW_BATCH_SIZE (default 1000), CHARGEFLOW_FLOW_DB_MAX_BACKOFF_S (10)."""
    try:
        bootstrap = os.environ["CHARGEFLOW_KAFKA_BOOTSTRAP"]
        database_url = os.environ["CHARGEFLOW_DATABASE_URL"]
    except KeyError as exc:
        raise RuntimeError(f"environment variable {exc.args[0]} is required") from None
    return FlowConfig(
        brokers=[b.strip() for b in bootstrap.split(",") if b.strip()],
        database_url=database_url,
        topics=Topics.with_prefix(os.environ.get("CHARGEFLOW_TOPIC_PREFIX", "")),
        tail=env_bool("CHARGEFLOW_FLOW_TAIL", True),
        batch_size=env_int("CHARGEFLOW_FLOW_BATCH_SIZE", 1000),
        db_max_backoff_s=env_float("CHARGEFLOW_FLOW_DB_MAX_BACKOFF_S", 10.0),
    )


# --------------------------------------------------------------------------- sink

WriteBatch = Callable[["psycopg.Connection[Any]", list[T]], None]


class RetryingConnection:
    """One autocommit connection, (re)opened on demand; :meth:`run` retries a write
    with capped exponential backoff (jittered) while the database is unreachable,
    logging every retry and the recovery. Blocking is the backpressure: the input
    offsets stay behind. Other errors propagate (the flow crashes loudly; recovery
    replays the batch)."""

    def __init__(self, url: str, name: str, max_backoff_s: float, initial_backoff_s: float,
                 connect_timeout_s: int) -> None:
        self._url = url
        self._name = name
        self.max_backoff_s = max_backoff_s
        self._initial_backoff_s = min(initial_backoff_s, max_backoff_s)
        self._connect_timeout_s = connect_timeout_s
        self._conn: psycopg.Connection[Any] | None = None

    def connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(
                self._url, autocommit=True, connect_timeout=self._connect_timeout_s,
                application_name=self._name,
            )
        return self._conn

    def run(self, write: Callable[[psycopg.Connection[Any]], None], rows: int) -> None:
        """``write(conn)`` until it gets through (``rows``: for the log only)."""
        retries = 0
        delay = self._initial_backoff_s
        started = 0.0
        while True:
            try:
                write(self.connection())
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                self.close()
                if retries == 0:
                    started = time.monotonic()
                retries += 1
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
                wait = delay * (0.5 + random.random() / 2)
                log.warning("%s: database unavailable (%s: %s); %d rows waiting, retry %d "
                            "in %.2fs (max backoff %.1fs)", self._name, type(exc).__name__,
                            reason, rows, retries, wait, self.max_backoff_s)
                time.sleep(wait)  # backoff between attempts, not synchronisation
                delay = min(delay * 2, self.max_backoff_s)
                continue
            if retries:
                log.warning("%s: database available again after %d retries (%.1fs); "
                            "wrote %d rows", self._name, retries,
                            time.monotonic() - started, rows)
            return

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

    def __init__(self, db: RetryingConnection, write: WriteBatch[T]) -> None:
        self._db = db
        self._write = write

    def write_batch(self, items: list[T]) -> None:
        write = self._write
        self._db.run(lambda conn: write(conn, items), len(items))

    def close(self) -> None:
        self._db.close()


class RetryingPostgresSink(DynamicSink[T], Generic[T]):
    """A sink that hands each batch to ``write(conn, items)`` (one transaction there)."""

    def __init__(self, database_url: str, write: WriteBatch[T], *, name: str,
                 max_backoff_s: float = 10.0, initial_backoff_s: float = 0.1,
                 connect_timeout_s: int = 5) -> None:
        if max_backoff_s <= 0 or initial_backoff_s <= 0:
            raise ValueError("backoff must be positive")
        self._url = database_url
        self._write = write
        self._name = name
        self._max_backoff_s = max_backoff_s
        self._initial_backoff_s = initial_backoff_s
        self._connect_timeout_s = connect_timeout_s

    def build(self, step_id: str, worker_index: int, worker_count: int
              ) -> _RetryingPartition[T]:
        return _RetryingPartition(
            RetryingConnection(self._url, self._name, self._max_backoff_s,
                               self._initial_backoff_s, self._connect_timeout_s),
            self._write)

"""The flows' PostgreSQL sink: a flow declares what to write (a :class:`DatabaseSink`,
``write(conn, rows)`` in one transaction, idempotent under replay) and optionally what
to do once rows are committed (an :class:`AfterCommit` hook); :class:`PostgresSink`
does the rest, the same for every flow:

* batching: items are ``(key, [rows])``; the rows of every item handed over together
  (or, overlapped, that waited while the previous write ran) go in one transaction;
* retries: :class:`RetryingConnection` waits out a database outage
  (:data:`runtime.retry.DATABASE`, capped by the flow's ``db_max_backoff_s``), which
  is the backpressure: the input offsets stay behind. Other errors crash the flow
  before its epoch commits (recovery replays the batch);
* overlap: with ``overlap=True`` a writer thread per partition writes while the flow
  computes on, and the epoch snapshot waits until everything handed over is
  committed (:class:`_OverlappedPartition`);
* after commit: the hook runs after every committed batch and once when the
  partition starts (what an earlier run committed but did not get to hand on).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any, Generic, Protocol, TypeVar

import psycopg
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition
from tenacity import RetryCallState

from flows.config import FlowConfig
from flows.metrics import SinkMetrics
from runtime.retry import DATABASE, failure, next_wait, retrying

log = logging.getLogger(__name__)

# What a write raises while the database is away (down, restarting, unreachable).
DATABASE_UNAVAILABLE = (psycopg.OperationalError, psycopg.InterfaceError)
T = TypeVar("T")
Connection = psycopg.Connection[Any]


class DatabaseSink(Protocol[T]):
    """What a flow writes: ``rows`` in one transaction on ``conn`` (autocommit: the
    writer opens it), idempotent under replay."""

    def write(self, conn: Connection, rows: list[T]) -> None: ...


class AfterCommit(Protocol):
    """Runs on the sink's connection after each committed batch (and once at start);
    handles its own failures, except that the database went away."""

    def after_commit(self, conn: Connection) -> None: ...
    def close(self) -> None: ...


class RetryingConnection:
    """One autocommit connection, (re)opened on demand; :meth:`run` retries a write
    while the database is unreachable (:data:`runtime.retry.DATABASE` capped at
    ``max_backoff_s``), logging every retry and the recovery."""

    def __init__(
        self,
        url: str,
        name: str,
        max_backoff_s: float,
        initial_backoff_s: float = 0.1,
        connect_timeout_s: int = 5,
    ) -> None:
        self._url = url
        self._name = name
        self.max_backoff_s = max_backoff_s
        self._backoff = DATABASE.capped(max_backoff_s, initial_s=initial_backoff_s)
        self._connect_timeout_s = connect_timeout_s
        self._conn: Connection | None = None

    def connection(self) -> Connection:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(
                self._url,
                autocommit=True,
                connect_timeout=self._connect_timeout_s,
                application_name=self._name,
            )
        return self._conn

    def _log_retry(self, rows: int, state: RetryCallState) -> None:
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

    def run(self, write: Callable[[Connection], None], rows: int) -> None:
        """``write(conn)`` until it gets through (``rows``: for the log only)."""
        before_sleep = partial(self._log_retry, rows)
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


class BatchWriter(Generic[T]):
    """Writes batches of row lists through a :class:`RetryingConnection`: one
    transaction per batch (``rows.write``), then the ``after_commit`` hook."""

    def __init__(
        self,
        db: RetryingConnection,
        rows: DatabaseSink[T],
        name: str,
        after_commit: AfterCommit | None = None,
    ) -> None:
        self._db = db
        self._rows = rows
        self._after_commit = after_commit
        self._metrics = SinkMetrics(name)
        self._run_after_commit()  # what an earlier run committed but did not hand on

    def _run_after_commit(self) -> None:
        if self._after_commit is None:
            return
        try:
            self._after_commit.after_commit(self._db.connection())
        except DATABASE_UNAVAILABLE as exc:
            self._db.close()
            log.warning("after-commit step postponed (database: %s)", exc)

    def write(self, batch: list[list[T]]) -> None:
        rows = batch[0] if len(batch) == 1 else [row for chunk in batch for row in chunk]
        write = self._rows.write
        started = time.perf_counter()
        self._db.run(lambda conn: write(conn, rows), len(rows))
        self._metrics.observe(len(rows), time.perf_counter() - started)
        self._run_after_commit()

    def close(self) -> None:
        if self._after_commit is not None:
            self._after_commit.close()
        self._db.close()


class _InStepPartition(StatefulSinkPartition[list[T], None], Generic[T]):
    """Writes each batch before returning (``overlap=False``)."""

    def __init__(self, writer: BatchWriter[T]) -> None:
        self._writer = writer

    def write_batch(self, values: list[list[T]]) -> None:
        self._writer.write(values)

    def snapshot(self) -> None:
        return None

    def close(self) -> None:
        self._writer.close()


class _OverlappedPartition(StatefulSinkPartition[list[T], None], Generic[T]):
    """Writes on a background thread while the flow computes the next batches.

    ``write_batch`` hands the row lists to the writer thread and returns; lists that
    arrive while it is busy are written together in its next transaction. Safe under
    a crash because ``snapshot`` -- which Bytewax calls at the end of every epoch,
    after the epoch's last ``write_batch`` and before it commits the epoch (input
    offsets and state) to the recovery store -- returns only once everything handed
    over so far is committed: a committed epoch never has rows that are not in the
    database; rows of an epoch that was not committed are written again after a
    restart, which the writers absorb (idempotent). Backpressure: ``write_batch``
    blocks while ``max_pending`` rows wait, so a database outage stops the flow from
    reading on. A write that fails with anything but an outage is raised from the
    next ``write_batch``/``snapshot``/``close``, crashing the flow before the epoch
    commits.
    """

    def __init__(self, writer: BatchWriter[T], name: str, max_pending: int) -> None:
        self._writer = writer
        self._max_pending = max_pending
        self._cond = threading.Condition()
        self._pending: list[list[T]] = []
        self._pending_rows = 0
        self._busy = False
        self._error: BaseException | None = None
        self._reported = False  # the error was raised to Bytewax
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"{name}-db-writer", daemon=True)
        self._thread.start()

    def _next_batch(self) -> list[list[T]] | None:
        """The waiting row lists (None: closed and drained), once there are any."""
        with self._cond:
            while not self._pending and not self._closed:
                self._cond.wait()
            if not self._pending:
                return None
            batch = self._pending
            self._pending, self._pending_rows = [], 0
            self._busy = True
            self._cond.notify_all()  # room for write_batch again
            return batch

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            try:
                self._writer.write(batch)
            except BaseException as exc:
                log.exception("writing %d row lists failed", len(batch))
                with self._cond:
                    self._error = exc
                    self._busy = False
                    self._cond.notify_all()
                return
            with self._cond:
                self._busy = False
                self._cond.notify_all()

    def _raise_failure(self) -> None:
        if self._error is not None:
            self._reported = True
            raise RuntimeError("the sink could not write to PostgreSQL") from self._error

    def write_batch(self, values: list[list[T]]) -> None:
        with self._cond:
            self._raise_failure()
            while self._pending_rows >= self._max_pending:
                self._cond.wait()
                self._raise_failure()
            self._pending.extend(values)
            self._pending_rows += sum(len(v) for v in values)
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


class PostgresSink(FixedPartitionedSink[list[T], None], Generic[T]):
    """The flows' database sink (module docstring). Items are ``(key, [rows])``; each
    of ``partitions`` parts writes through its own connection (with several workers,
    set it to their number) and gets the items of its keys."""

    def __init__(
        self,
        rows: DatabaseSink[T],
        database_url: str,
        *,
        name: str,
        overlap: bool = True,
        partitions: int = 1,
        max_pending: int = 50_000,
        max_backoff_s: float = 10.0,
        initial_backoff_s: float = 0.1,
        connect_timeout_s: int = 5,
        after_commit: Callable[[], AfterCommit] | None = None,
    ) -> None:
        if partitions < 1 or max_pending < 1:
            raise ValueError("partitions and max_pending must be >= 1")
        if max_backoff_s <= 0 or initial_backoff_s <= 0:
            raise ValueError("backoff must be positive")
        self._rows = rows
        self._url = database_url
        self._name = name
        self._overlap = overlap
        self._partitions = partitions
        self._max_pending = max_pending
        self._backoff = (max_backoff_s, initial_backoff_s)
        self._connect_timeout_s = connect_timeout_s
        self._after_commit = after_commit

    def writer(self) -> BatchWriter[T]:
        """A writer of its own (own connection, own after-commit hook)."""
        db = RetryingConnection(self._url, self._name, *self._backoff, self._connect_timeout_s)
        hook = self._after_commit() if self._after_commit is not None else None
        return BatchWriter(db, self._rows, self._name, hook)

    def list_parts(self) -> list[str]:
        return [f"writer-{i}" for i in range(self._partitions)]

    def build_part(
        self, step_id: str, for_part: str, resume_state: None
    ) -> StatefulSinkPartition[list[T], None]:
        if self._overlap:
            return _OverlappedPartition(self.writer(), self._name, self._max_pending)
        return _InStepPartition(self.writer())


def postgres_sink(
    config: FlowConfig,
    rows: DatabaseSink[T],
    name: str,
    after_commit: Callable[[], AfterCommit] | None = None,
) -> PostgresSink[T]:
    """The :class:`PostgresSink` a flow's ``config`` asks for (overlap, partitions,
    backoff)."""
    return PostgresSink(
        rows,
        config.database_url,
        name=name,
        overlap=config.overlap_writes,
        partitions=config.sink_partitions,
        max_backoff_s=config.db_max_backoff_s,
        after_commit=after_commit,
    )

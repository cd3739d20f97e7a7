"""flows.sinks.database.PostgresSink on the real database: batching of the row lists
handed over while a write runs, retries after losing the connection, and the
after-commit hook (after each commit and once at start, never after a failed write)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from flows.sinks.database import PostgresSink

pytestmark = pytest.mark.integration

TABLE = "flow_sink_test"


@pytest.fixture
def table(db: psycopg.Connection[Any]) -> Iterator[str]:
    db.execute(f"CREATE TABLE {TABLE} (k int PRIMARY KEY)")
    try:
        yield TABLE
    finally:
        db.execute(f"DROP TABLE {TABLE}")


def stored(db: psycopg.Connection[Any]) -> list[int]:
    return [k for (k,) in db.execute(f"SELECT k FROM {TABLE} ORDER BY k")]


class Keys:
    """Inserts its rows (ints) in one transaction, idempotently; records every batch.
    ``gate``: the first write waits for it (a slow database); ``fail``: raise after
    inserting (the transaction rolls back)."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.batches: list[list[int]] = []
        self.started = threading.Event()
        self.gate = gate
        self.fail = False

    def write(self, conn: psycopg.Connection[Any], rows: list[int]) -> None:
        self.batches.append(list(rows))
        self.started.set()
        if self.gate is not None:
            assert self.gate.wait(30)
            self.gate = None
        with conn.transaction(), conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {TABLE} (k) VALUES (%s) ON CONFLICT DO NOTHING",
                [(k,) for k in rows],
            )
            if self.fail:
                raise ValueError("not an outage")


class Seen:
    """An after-commit hook that records what another connection sees at that moment."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.calls: list[list[int]] = []
        self.closed = False

    def after_commit(self, conn: psycopg.Connection[Any]) -> None:
        with psycopg.connect(self.url, autocommit=True) as other:
            self.calls.append(stored(other))

    def close(self) -> None:
        self.closed = True


def test_row_lists_handed_over_during_a_write_go_in_one_transaction(
    db: psycopg.Connection[Any], clean_db: str, table: str
) -> None:
    gate = threading.Event()
    keys = Keys(gate)
    part = PostgresSink(keys, clean_db, name="test-sink").build_part("out", "writer-0", None)
    try:
        part.write_batch([[1, 2]])
        assert keys.started.wait(30)  # the writer thread holds [1, 2]
        part.write_batch([[3], [4, 5]])
        part.write_batch([[6]])
        gate.set()
        part.snapshot()  # returns once everything handed over is committed
        assert stored(db) == [1, 2, 3, 4, 5, 6]
        assert keys.batches == [[1, 2], [3, 4, 5, 6]]
    finally:
        part.close()


@pytest.mark.parametrize("overlap", [False, True])
def test_a_write_is_retried_after_the_connection_was_lost(
    db: psycopg.Connection[Any], clean_db: str, table: str, overlap: bool
) -> None:
    keys = Keys()
    sink = PostgresSink(keys, clean_db, name="test-sink", overlap=overlap, max_backoff_s=0.2)
    part = sink.build_part("out", "writer-0", None)
    try:
        part.write_batch([[1]])
        part.snapshot()
        # Kill the sink's connection behind its back (a database restart / failover).
        killed = db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
        assert killed
        part.write_batch([[2, 3]])
        part.snapshot()
    finally:
        part.close()
    assert stored(db) == [1, 2, 3]
    assert keys.batches[0] == [1]
    assert keys.batches[-1] == [2, 3]  # the failed try and the retry
    assert len(keys.batches) == 3


@pytest.mark.parametrize("overlap", [False, True])
def test_the_after_commit_hook_runs_after_each_commit_and_never_after_a_failure(
    db: psycopg.Connection[Any], clean_db: str, table: str, overlap: bool
) -> None:
    keys = Keys()
    hook = Seen(clean_db)
    sink = PostgresSink(
        keys, clean_db, name="test-sink", overlap=overlap, after_commit=lambda: hook
    )
    part = sink.build_part("out", "writer-0", None)
    assert hook.calls == [[]]  # once at start: what an earlier run left
    part.write_batch([[1, 2]])
    part.snapshot()
    assert hook.calls == [[], [1, 2]]  # the rows were committed when it ran
    keys.fail = True
    try:
        if overlap:
            part.write_batch([[3]])
            with pytest.raises(RuntimeError, match="could not write"):
                part.snapshot()  # the epoch must not commit
        else:
            with pytest.raises(ValueError, match="not an outage"):
                part.write_batch([[3]])
    finally:
        part.close()
    assert stored(db) == [1, 2]
    assert hook.calls == [[], [1, 2]]
    assert hook.closed

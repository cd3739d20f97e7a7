"""Real components for every test run: one embedded Kafka-compatible broker and a
fresh, migrated PostgreSQL database (127.0.0.1:5432, else an embedded server).

Tests isolate themselves with their own topic prefix (``topics``) and by
truncating the data tables (``clean_db``); nothing is mocked.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest

from bus.admin import ensure_topics
from bus.topics import Topics
from chargeflow.stack import DatabaseServer, EmbeddedBroker, database_server
from store.aggregates import AGGREGATE_VIEWS
from store.schema import StorageMode, migrate, storage_mode

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")

DATA_TABLES = (
    "meter_samples",
    "sessions",
    "connectors",
    "stations",
    "sites",
    "id_tags",
    "api_keys",
    "load_connector_1m",
    "site_load_live",
    "connector_status_history",
    "connector_availability",
    "sessions_outbox",
    "commands",
    "command_deadletters",
    "gateway_offsets",
    "gateways",
    "load_aggregate_invalidations",
)


def poll_until(
    fetch: Callable[[], T],
    done: Callable[[T], bool],
    timeout: float,
    what: str,
    interval: float = 0.1,
) -> T:
    """Call ``fetch`` until ``done(result)``; fail with the last result after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {value!r}")
        time.sleep(interval)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    with EmbeddedBroker(log_path=log) as embedded:
        yield embedded


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DatabaseServer]:
    server = database_server(
        os.environ.get("CHARGEFLOW_TEST_DATABASE_URL"), tmp_path_factory.mktemp("pg")
    )
    yield server
    server.stop()


@pytest.fixture(scope="session")
def database_url(pg_server: DatabaseServer) -> Iterator[str]:
    name = f"chargeflow_test_{uuid.uuid4().hex[:10]}"
    url = pg_server.create_database(name, exist_ok=False)
    if migrate(url) is StorageMode.TIMESCALEDB:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(TIMESCALE_PAUSE_RETENTION)
    yield url
    pg_server.drop_database(name)


# TimescaleDB only. The test database's retention jobs never drop rows mid-test (tests
# that need retention delete the rows themselves), and cleaning empties the continuous
# aggregates, which keep materialised rows after their hypertable is truncated until a
# refresh over the whole range. Checked by tests/unit/test_timescale_sql.py.
TIMESCALE_PAUSE_RETENTION = (
    "SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs"
    " WHERE proc_name = 'policy_retention'"
)
TIMESCALE_EMPTY_AGGREGATES = tuple(
    f"CALL refresh_continuous_aggregate('{name}', NULL, NULL)" for name in AGGREGATE_VIEWS
)


def clear_data(database_url: str) -> None:
    """Empty every data table and the load aggregates, in either storage mode."""
    timescale = storage_mode(database_url) is StorageMode.TIMESCALEDB
    # Plain PostgreSQL: the aggregates are tables.
    tables = DATA_TABLES if timescale else (*DATA_TABLES, *AGGREGATE_VIEWS)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("TRUNCATE " + ", ".join(tables) + " CASCADE")
        if timescale:
            for statement in TIMESCALE_EMPTY_AGGREGATES:
                conn.execute(statement)


@pytest.fixture
def clean_db(database_url: str) -> str:
    clear_data(database_url)
    return database_url


@pytest.fixture
def topics(broker: EmbeddedBroker) -> Topics:
    """Fresh topic names for one test (2 partitions each) on the shared broker."""
    named = Topics.with_prefix(f"t{uuid.uuid4().hex[:8]}.")
    ensure_topics(broker.bootstrap, named.all(), partitions=2)
    return named


@pytest.fixture
def db(clean_db: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(clean_db, autocommit=True) as conn:
        yield conn

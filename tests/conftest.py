"""Real components for every test run: one embedded Kafka-compatible broker and a
fresh, migrated PostgreSQL database (127.0.0.1:5432, else an embedded server).

Tests isolate themselves with their own topic prefix (``topics``) and by
truncating the data tables (``clean_db``); nothing is mocked.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from bus.admin import ensure_topics
from bus.topics import Topics
from chargeflow.stack import DatabaseServer, EmbeddedBroker, database_server
from store.db import StorageMode, migrate
from tests.support.database import TIMESCALE_PAUSE_RETENTION, clear_data


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

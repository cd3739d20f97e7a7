"""Connections and the schema: the async executor every gateway-side query uses, the
per-connection staging tables of the batch writers, migrations (Alembic) and the storage
mode the schema uses."""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator, Callable, Hashable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).with_name("migrations")

# A pool (the gateway, the meter bridge) or one connection (tests, the API's request).
AsyncDb = AsyncConnectionPool | psycopg.AsyncConnection[Any]

T = TypeVar("T")


def worker_pool(database_url: str, name: str, max_size: int = 4) -> AsyncConnectionPool:
    """The small autocommit pool of a worker process (the webhooks and billing workers),
    opened with ``async with``; a connection is waited for at most 10 s."""
    return AsyncConnectionPool(
        database_url,
        min_size=1,
        max_size=max_size,
        open=False,
        timeout=10.0,
        kwargs={"autocommit": True},
        name=name,
    )


async def answers(pool: AsyncConnectionPool[Any]) -> bool:
    """True when a connection of ``pool`` runs a statement (a worker's readiness check;
    failing raises, which the health server reports)."""
    async with pool.connection() as conn:
        await conn.execute("SELECT 1")
    return True


async def execute(
    db: AsyncDb, query: str, params: tuple[Any, ...] | dict[str, Any]
) -> list[tuple[Any, ...]]:
    """Run one statement on ``db`` (a connection of the pool, if a pool) and return its
    rows ([] for a statement without a result)."""
    if isinstance(db, AsyncConnectionPool):
        async with db.connection() as conn:
            cur = await conn.execute(query, params)
            rows = await cur.fetchall() if cur.description else []
            return list(rows)
    cur = await db.execute(query, params)
    return list(await cur.fetchall()) if cur.description else []


@asynccontextmanager
async def connection(db: AsyncDb) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """One connection of ``db`` (taken from the pool, if a pool) for a transaction or a
    server-side cursor."""
    if isinstance(db, AsyncConnectionPool):
        async with db.connection() as conn:
            yield conn
    else:
        yield db


def last_per_key(rows: Iterable[T], key: Callable[[T], Hashable]) -> list[T]:
    """One row per key, the last one given; ordered by each key's last row.

    >>> last_per_key([("a", 1), ("b", 2), ("a", 3)], key=lambda r: r[0])
    [('b', 2), ('a', 3)]
    """
    latest: dict[Hashable, T] = {}
    for row in rows:
        k = key(row)
        latest.pop(k, None)
        latest[k] = row
    return list(latest.values())


@dataclass
class Where:
    """The conditions of a query's WHERE clause and their parameters, in order.

    >>> where = Where()
    >>> where.add_given("site_id = %s", None)
    >>> where.add_given("status = %s", "Available")
    >>> where.add("connector_id > 0")
    >>> where.sql, where.params
    ('status = %s AND connector_id > 0', ['Available'])
    >>> Where().sql
    'TRUE'
    """

    conditions: list[str] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)

    def add(self, condition: str, *params: Any) -> None:
        """``condition``, its ``%s`` placeholders bound to ``params``."""
        self.conditions.append(condition)
        self.params.extend(params)

    def add_given(self, condition: str, value: Any) -> None:
        """``condition`` bound to ``value``, unless ``value`` is None (a filter not asked for)."""
        if value is not None:
            self.add(condition, value)

    @property
    def sql(self) -> str:
        """The conditions joined by AND; ``TRUE`` when there is none."""
        return " AND ".join(self.conditions) or "TRUE"


@dataclass(frozen=True, eq=False)
class StagingTable:
    """A temporary table a batch writer COPYs into before one set-based merge.

    Created once per connection (``ON COMMIT DELETE ROWS``): :meth:`missing_on` says
    whether this connection still needs :attr:`create`, and :meth:`created_on` records
    it once the creating transaction committed (a rolled-back CREATE TEMP TABLE leaves
    nothing behind, and inside a caller's transaction it is only a savepoint).
    """

    name: str
    columns: tuple[tuple[str, str], ...]  # (column, type)
    _created: weakref.WeakSet[psycopg.Connection[Any]] = field(
        default_factory=weakref.WeakSet, repr=False
    )

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c for c, _ in self.columns)

    @property
    def types(self) -> tuple[str, ...]:
        return tuple(t for _, t in self.columns)

    @property
    def create(self) -> str:
        body = ", ".join(f"{c} {t}" for c, t in self.columns)
        return f"CREATE TEMP TABLE IF NOT EXISTS {self.name} ({body}) ON COMMIT DELETE ROWS"

    @property
    def copy(self) -> str:
        return f"COPY {self.name} ({', '.join(self.column_names)}) FROM STDIN (FORMAT BINARY)"

    def copy_rows(
        self, cur: psycopg.Cursor[Any], rows: Iterable[Sequence[Any]], statement: str = ""
    ) -> None:
        """Binary COPY of ``rows`` (values in column order) into this table, or with its
        columns and types by ``statement`` (a COPY into the real table)."""
        with cur.copy(statement or self.copy) as copy:
            copy.set_types(self.types)
            write = copy.write_row
            for row in rows:
                write(row)

    def missing_on(self, conn: psycopg.Connection[Any]) -> bool:
        return conn not in self._created

    def created_on(self, conn: psycopg.Connection[Any]) -> None:
        if conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            self._created.add(conn)


# --------------------------------------------------------------------------- schema


class StorageMode(StrEnum):
    TIMESCALEDB = "timescaledb"
    POSTGRESQL = "postgresql"


def sqlalchemy_url(database_url: str) -> str:
    """The psycopg-3 SQLAlchemy URL for a libpq URL (postgresql://...)."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if database_url.startswith(prefix):
            return "postgresql+psycopg://" + database_url[len(prefix) :]
    raise ValueError(f"not a PostgreSQL URL: {database_url.split('@')[-1]!r}")


# Alembic (and SQLAlchemy under it) is imported where migrations run, not with this
# module: the gateway, the flows and the API read and write through psycopg only, and the
# two libraries cost every process ~20 MiB of memory.
def alembic_config(database_url: str) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # '%' would be read as interpolation by configparser.
    config.set_main_option("sqlalchemy.url", sqlalchemy_url(database_url).replace("%", "%%"))
    return config


def migrate(database_url: str, revision: str = "head") -> StorageMode:
    """Upgrade to ``revision`` (idempotent) and return the storage mode in use."""
    from alembic import command

    command.upgrade(alembic_config(database_url), revision)
    return storage_mode(database_url)


def current_revision(database_url: str) -> str | None:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    return None if row is None else str(row[0])


def storage_mode(database_url: str) -> StorageMode:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT value FROM chargeflow_meta WHERE key = 'storage_mode'"
        ).fetchone()
    if row is None:
        raise RuntimeError("schema is not migrated: chargeflow_meta.storage_mode is missing")
    return StorageMode(row[0])


def available_storage_mode(database_url: str) -> StorageMode:
    """The mode migrating a fresh database on this server picks: TimescaleDB when the
    server can install the extension, plain PostgreSQL otherwise."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
        ).fetchone()
    return StorageMode.POSTGRESQL if row is None else StorageMode.TIMESCALEDB

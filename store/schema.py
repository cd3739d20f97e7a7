"""Apply migrations (Alembic) and report which storage mode the schema uses."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import psycopg
from alembic import command
from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


class StorageMode(StrEnum):
    TIMESCALEDB = "timescaledb"
    POSTGRESQL = "postgresql"


def sqlalchemy_url(database_url: str) -> str:
    """The psycopg-3 SQLAlchemy URL for a libpq URL (postgresql://...)."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if database_url.startswith(prefix):
            return "postgresql+psycopg://" + database_url[len(prefix) :]
    raise ValueError(f"not a PostgreSQL URL: {database_url.split('@')[-1]!r}")


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # '%' would be read as interpolation by configparser.
    config.set_main_option("sqlalchemy.url", sqlalchemy_url(database_url).replace("%", "%%"))
    return config


def migrate(database_url: str, revision: str = "head") -> StorageMode:
    """Upgrade to ``revision`` (idempotent) and return the storage mode in use."""
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

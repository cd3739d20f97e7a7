"""Alembic environment: plain SQL migrations over psycopg 3, no ORM models."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

config = context.config
_url = config.get_main_option("sqlalchemy.url")
if not _url:
    raise RuntimeError("sqlalchemy.url is not set (use store.db.migrate)")
url: str = _url


def run_migrations_online() -> None:
    connectable = config.attributes.get("connection")
    if connectable is not None:
        context.configure(connection=connectable, transaction_per_migration=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, transaction_per_migration=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    context.configure(url=url, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()

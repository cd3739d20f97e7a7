"""The station's OCPP message history: ``ocpp_messages``.

One row per CALL a station sent (an ``ocpp.call`` envelope on ``ocpp.events``), with
the answer the gateway gave; written by ``flows.messages``. Secrets are masked before
the row is written (``bus.redaction``). Idempotent on the envelope's id:
``message_key`` is the id as a UUID (``store.messages.message_key``) and, with
``received_at`` (the same on every replay of the envelope), the primary key.

The commands the CSMS sent are not copied here: the API reads them from ``commands``
(``store.messages.list_messages``, a UNION).

TimescaleDB: a hypertable on ``received_at`` (1-day chunks); the flow sets its
retention policy from ``CHARGEFLOW_MESSAGES_RETENTION_DAYS``. Plain PostgreSQL: the
flow deletes the rows past retention periodically (``store.messages.apply_retention``).

Revision ID: 0024
Revises: 0027
Create Date: 2026-12-07
"""

from alembic import op
from sqlalchemy import text

revision = "0024"
down_revision = "0027"
branch_labels = None
depends_on = None


def _storage_mode() -> str:
    row = (
        op.get_bind()
        .execute(text("SELECT value FROM chargeflow_meta WHERE key = 'storage_mode'"))
        .first()
    )
    return "postgresql" if row is None else str(row[0])


def timescale_statements() -> tuple[str, ...]:
    """What the TimescaleDB branch of :func:`upgrade` executes (checked without a server
    by tests/unit/test_timescale_sql.py). The retention policy is the flow's
    (``store.messages.apply_retention``: it follows the setting)."""
    return ("SELECT create_hypertable('ocpp_messages', by_range('received_at', INTERVAL '1 day'))",)


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE ocpp_messages (
            message_id text NOT NULL,
            message_key uuid NOT NULL,
            charge_point_id text NOT NULL,
            received_at timestamptz NOT NULL,
            action text,
            ocpp_version text,
            unique_id text,
            payload jsonb NOT NULL,
            response jsonb,
            PRIMARY KEY (message_key, received_at)
        );
        CREATE INDEX ocpp_messages_station_idx
            ON ocpp_messages (charge_point_id, received_at DESC, message_key DESC);
        """
    )
    if _storage_mode() == "timescaledb":
        for statement in timescale_statements():
            op.execute(statement)
    else:
        op.execute("CREATE INDEX ocpp_messages_received_idx ON ocpp_messages (received_at)")


def downgrade() -> None:
    op.execute("DROP TABLE ocpp_messages")

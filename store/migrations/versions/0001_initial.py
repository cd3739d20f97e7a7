"""Initial schema: stations, connectors, id tags, sessions, meter samples, API keys.

Uses TimescaleDB hypertables when the extension can be had, plain tables
otherwise, and records which in ``chargeflow_meta.storage_mode``.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

# upgrade() is longer than 60 lines on purpose: an applied migration is history and
# keeps the statements in the order they ran; splitting it would only invite edits.

from alembic import op
from sqlalchemy import text

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# What the TimescaleDB branch runs, one statement each, in this order (the first
# before the tables, the rest after them). Collected without a server by
# tests/unit/test_timescale_sql.py, which parses and checks them.
TIMESCALE_EXTENSION = "CREATE EXTENSION IF NOT EXISTS timescaledb"
TIMESCALE_HYPERTABLES = (
    "SELECT create_hypertable('meter_samples', by_range('measured_at', INTERVAL '1 day'))",
)


def timescale_statements() -> tuple[str, ...]:
    """Every statement the TimescaleDB branch of :func:`upgrade` executes, in order."""
    return (TIMESCALE_EXTENSION, *TIMESCALE_HYPERTABLES)


def _timescaledb_available() -> bool:
    bind = op.get_bind()
    row = bind.execute(
        text("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'")
    ).first()
    return row is not None


def upgrade() -> None:
    timescale = _timescaledb_available()
    if timescale:
        op.execute(TIMESCALE_EXTENSION)

    op.execute(
        """
        CREATE TABLE chargeflow_meta (
            key text PRIMARY KEY,
            value text NOT NULL
        );

        CREATE TABLE sites (
            site_id text PRIMARY KEY,
            name text NOT NULL,
            capacity_w bigint CHECK (capacity_w IS NULL OR capacity_w > 0),
            created_at timestamptz NOT NULL DEFAULT now()
        );

        CREATE TABLE stations (
            charge_point_id text PRIMARY KEY CHECK (length(charge_point_id) BETWEEN 1 AND 64),
            site_id text REFERENCES sites (site_id),
            vendor text,
            model text,
            serial_number text,
            firmware_version text,
            ocpp_version text,
            password_hash text,
            created_at timestamptz NOT NULL DEFAULT now(),
            last_boot_at timestamptz,
            last_seen_at timestamptz
        );

        CREATE TABLE connectors (
            charge_point_id text NOT NULL REFERENCES stations (charge_point_id) ON DELETE CASCADE,
            connector_id integer NOT NULL CHECK (connector_id >= 0),
            status text,
            error_code text,
            status_at timestamptz,
            PRIMARY KEY (charge_point_id, connector_id)
        );

        CREATE TABLE id_tags (
            id_tag text PRIMARY KEY CHECK (length(id_tag) BETWEEN 1 AND 36),
            status text NOT NULL DEFAULT 'Accepted'
                CHECK (status IN ('Accepted', 'Blocked', 'Expired', 'Invalid')),
            expiry_date timestamptz,
            parent_id_tag text,
            description text,
            created_at timestamptz NOT NULL DEFAULT now()
        );

        -- OCPP 1.6 transaction ids are JSON integers that many stations keep in
        -- an int32: one sequence for every gateway replica, never reused.
        CREATE SEQUENCE ocpp_transaction_id_seq AS integer MINVALUE 1 MAXVALUE 2147483647 NO CYCLE;

        CREATE TABLE sessions (
            session_id uuid PRIMARY KEY,
            charge_point_id text NOT NULL,
            connector_id integer NOT NULL,
            transaction_id text NOT NULL,
            id_tag text,
            status text NOT NULL CHECK (status IN ('active', 'closed')),
            started_at timestamptz NOT NULL,
            stopped_at timestamptz,
            meter_start_wh bigint NOT NULL,
            meter_stop_wh bigint,
            last_register_wh bigint,
            energy_wh bigint,
            energy_source text,
            quality text NOT NULL DEFAULT 'exact'
                CHECK (quality IN ('exact', 'corrected', 'estimated')),
            quality_reasons text[] NOT NULL DEFAULT '{}',
            stop_reason text,
            sample_count integer NOT NULL DEFAULT 0,
            UNIQUE (charge_point_id, transaction_id)
        );
        CREATE INDEX sessions_started_idx ON sessions (started_at DESC, session_id DESC);
        CREATE INDEX sessions_station_started_idx
            ON sessions (charge_point_id, started_at DESC, session_id DESC);

        -- One row per sampled value. Absent phase/location/context are '' so the
        -- natural key can be a plain unique constraint (replays insert nothing).
        CREATE TABLE meter_samples (
            measured_at timestamptz NOT NULL,
            charge_point_id text NOT NULL,
            connector_id integer NOT NULL,
            transaction_id text,
            measurand text NOT NULL,
            phase text NOT NULL DEFAULT '',
            location text NOT NULL DEFAULT '',
            context text NOT NULL DEFAULT '',
            unit text NOT NULL DEFAULT '',
            value numeric NOT NULL,
            PRIMARY KEY (charge_point_id, connector_id, measurand, phase, location, context, measured_at)
        );
        CREATE INDEX meter_samples_tx_idx ON meter_samples (charge_point_id, transaction_id)
            WHERE transaction_id IS NOT NULL;

        CREATE TABLE api_keys (
            key_id text PRIMARY KEY,
            name text NOT NULL,
            role text NOT NULL
                CHECK (role IN ('admin', 'operator', 'maintenance', 'billing', 'public')),
            key_hash bytea NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            revoked_at timestamptz
        );
        """
    )
    if timescale:
        for statement in TIMESCALE_HYPERTABLES:
            op.execute(statement)
    op.execute(
        text("INSERT INTO chargeflow_meta (key, value) VALUES ('storage_mode', :mode)").bindparams(
            mode="timescaledb" if timescale else "postgresql"
        )
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE api_keys, meter_samples, sessions, id_tags, connectors, stations, sites,
            chargeflow_meta;
        DROP SEQUENCE ocpp_transaction_id_seq;
        """
    )

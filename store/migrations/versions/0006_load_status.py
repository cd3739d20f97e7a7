"""Live load aggregates, connector status history and availability.

Tables (both storage modes):

- ``load_connector_1m``: one row per connector (1.6 connector = 2.0.1 EVSE) and UTC
  minute, upserted by ``flows.load`` on ``(charge_point_id, connector_id, bucket)``:
  power samples (count, sum, avg, max, W) and the energy register delta attributed to
  the minute (Wh; sums to last - first register over any range).
- ``site_load_live``: the latest site total against capacity (what ``flows.load``
  also publishes on ``load.sites``), one row per site.
- ``connector_status_history``: every ConnectorStatus fact, idempotent on
  ``(charge_point_id, connector_id, at, status)`` (``flows.status``).
- ``connector_availability``: current availability per connector; ``status`` is the
  connector status, or ``Offline`` while the station's connection is down.

Aggregates with one query surface in both modes (same names and columns):

- ``load_station_1m``: station load per minute (sum over its connectors).
- ``load_connector_1h``: connector load per hour.
- ``energy_connector_1d``: connector energy (and load) per UTC day.

TimescaleDB: ``load_connector_1m`` and ``connector_status_history`` are hypertables;
the three aggregates are continuous aggregates (real-time: ``materialized_only =
false``) with refresh policies; compression and retention policies on the
hypertables and aggregates. Plain PostgreSQL: the same aggregates are materialised
views over ``date_bin`` with unique indexes, refreshed ``CONCURRENTLY`` by
``store.aggregates`` (the launcher runs its loop).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-21
"""

# upgrade() is longer than 60 lines on purpose: an applied migration is history and
# keeps the statements in the order they ran; splitting it would only invite edits.

from alembic import op
from sqlalchemy import text

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

STATUSES = (
    "'Available', 'Preparing', 'Charging', 'SuspendedEV', 'SuspendedEVSE', 'Finishing', "
    "'Reserved', 'Unavailable', 'Faulted'"
)

# name -> (bucket width, group-by columns, select list over load_connector_1m)
AGGREGATES: dict[str, tuple[str, str, str]] = {
    "load_station_1m": (
        "1 minute",
        "charge_point_id",
        """count(*)::int AS connector_count,
           sum(sample_count)::int AS sample_count,
           sum(avg_power_w) AS avg_power_w,
           max(max_power_w) AS max_connector_power_w,
           sum(energy_wh) AS energy_wh""",
    ),
    "load_connector_1h": (
        "1 hour",
        "charge_point_id, connector_id",
        """count(*)::int AS minutes,
           sum(sample_count)::int AS sample_count,
           sum(power_sum_w) / NULLIF(sum(sample_count), 0) AS avg_power_w,
           max(max_power_w) AS max_power_w,
           sum(energy_wh) AS energy_wh""",
    ),
    "energy_connector_1d": (
        "1 day",
        "charge_point_id, connector_id",
        """count(*)::int AS minutes,
           sum(sample_count)::int AS sample_count,
           sum(power_sum_w) / NULLIF(sum(sample_count), 0) AS avg_power_w,
           max(max_power_w) AS max_power_w,
           sum(energy_wh) AS energy_wh""",
    ),
}

# TimescaleDB policies: (refresh start_offset, end_offset, schedule, retention or None)
CAGG_POLICIES = {
    "load_station_1m": ("2 hours", "1 minute", "1 minute", "90 days"),
    "load_connector_1h": ("2 days", "1 hour", "15 minutes", "2 years"),
    "energy_connector_1d": ("7 days", "1 day", "1 hour", None),
}


# TimescaleDB: hypertables, compression and retention, one statement each. Every column
# of a hypertable's primary key is a segmentby or orderby column (TimescaleDB warns
# otherwise: the key cannot be checked cheaply against compressed rows), hence
# ``status`` after ``at`` for the status history. 0008 repeats these settings.
TIMESCALE_TABLES = (
    "SELECT create_hypertable('load_connector_1m', by_range('bucket', INTERVAL '1 day'))",
    "SELECT create_hypertable('connector_status_history', by_range('at', INTERVAL '7 days'))",
    """ALTER TABLE load_connector_1m SET (
        timescaledb.compress,
        timescaledb.compress_segmentby = 'charge_point_id, connector_id',
        timescaledb.compress_orderby = 'bucket DESC')""",
    """ALTER TABLE connector_status_history SET (
        timescaledb.compress,
        timescaledb.compress_segmentby = 'charge_point_id, connector_id',
        timescaledb.compress_orderby = 'at DESC, status')""",
    "SELECT add_compression_policy('load_connector_1m', INTERVAL '7 days')",
    "SELECT add_compression_policy('connector_status_history', INTERVAL '30 days')",
    "SELECT add_retention_policy('load_connector_1m', INTERVAL '90 days')",
    "SELECT add_retention_policy('connector_status_history', INTERVAL '2 years')",
)


def _storage_mode() -> str:
    row = (
        op.get_bind()
        .execute(text("SELECT value FROM chargeflow_meta WHERE key = 'storage_mode'"))
        .first()
    )
    return "postgresql" if row is None else str(row[0])


def _aggregate_sql(name: str, timescale: bool) -> str:
    width, keys, columns = AGGREGATES[name]
    if timescale:
        bucket = f"time_bucket(INTERVAL '{width}', bucket)"
        options = " WITH (timescaledb.continuous, timescaledb.materialized_only = false)"
        tail = " WITH NO DATA"
    else:
        bucket = f"date_bin(INTERVAL '{width}', bucket, TIMESTAMPTZ '2000-01-01 00:00:00+00')"
        options = ""
        tail = " WITH DATA"
    return (
        f"CREATE MATERIALIZED VIEW {name}{options} AS "
        f"SELECT {keys}, {bucket} AS bucket, {columns} "
        f"FROM load_connector_1m GROUP BY {keys}, {bucket}{tail}"
    )


def _timescale_aggregate_statements(name: str) -> tuple[str, ...]:
    """The continuous aggregate ``name``: view, refresh policy, retention, index."""
    keys = AGGREGATES[name][1]
    start, end, every, keep = CAGG_POLICIES[name]
    retention = (
        () if keep is None else (f"SELECT add_retention_policy('{name}', INTERVAL '{keep}')",)
    )
    return (
        _aggregate_sql(name, True),
        f"SELECT add_continuous_aggregate_policy('{name}', "
        f"start_offset => INTERVAL '{start}', end_offset => INTERVAL '{end}', "
        f"schedule_interval => INTERVAL '{every}')",
        *retention,
        f"CREATE INDEX {name}_key_idx ON {name} ({keys}, bucket)",
    )


def timescale_statements() -> tuple[str, ...]:
    """Every statement the TimescaleDB branch of :func:`upgrade` executes (after the
    tables), in order; tests/unit/test_timescale_sql.py parses and checks them without
    a TimescaleDB server."""
    return (
        *TIMESCALE_TABLES,
        *(statement for name in AGGREGATES for statement in _timescale_aggregate_statements(name)),
    )


def upgrade() -> None:
    timescale = _storage_mode() == "timescaledb"
    op.execute(
        f"""
        CREATE TABLE load_connector_1m (
            charge_point_id text NOT NULL,
            connector_id integer NOT NULL CHECK (connector_id >= 0),
            bucket timestamptz NOT NULL,
            sample_count integer NOT NULL CHECK (sample_count >= 0),
            power_sum_w double precision NOT NULL DEFAULT 0,
            avg_power_w double precision,
            max_power_w double precision,
            energy_wh numeric CHECK (energy_wh IS NULL OR energy_wh >= 0),
            register_wh numeric,
            source text NOT NULL,
            PRIMARY KEY (charge_point_id, connector_id, bucket)
        );

        CREATE TABLE site_load_live (
            site_id text PRIMARY KEY,
            as_of timestamptz NOT NULL,
            published_at timestamptz NOT NULL,
            total_w double precision NOT NULL,
            capacity_w bigint,
            utilisation_pct double precision,
            over_capacity boolean NOT NULL,
            station_count integer NOT NULL,
            offline_stations integer NOT NULL,
            stations jsonb NOT NULL
        );

        CREATE TABLE connector_status_history (
            charge_point_id text NOT NULL,
            connector_id integer NOT NULL CHECK (connector_id >= 0),
            at timestamptz NOT NULL,
            status text NOT NULL CHECK (status IN ({STATUSES})),
            ocpp_status text NOT NULL,
            ocpp_connector_id integer,
            error_code text,
            PRIMARY KEY (charge_point_id, connector_id, at, status)
        );

        CREATE TABLE connector_availability (
            charge_point_id text NOT NULL,
            connector_id integer NOT NULL CHECK (connector_id >= 0),
            status text NOT NULL CHECK (status IN ({STATUSES}, 'Offline')),
            connector_status text NOT NULL CHECK (connector_status IN ({STATUSES})),
            ocpp_status text NOT NULL,
            ocpp_connector_id integer,
            error_code text,
            status_at timestamptz NOT NULL,
            online boolean NOT NULL,
            connection_changed_at timestamptz,
            updated_at timestamptz NOT NULL,
            PRIMARY KEY (charge_point_id, connector_id)
        );
        CREATE INDEX connector_availability_status_idx ON connector_availability (status);
        """
    )
    if timescale:
        for statement in timescale_statements():
            op.execute(statement)
    else:
        op.execute(
            """
            CREATE INDEX load_connector_1m_bucket_idx ON load_connector_1m (bucket);
            CREATE INDEX connector_status_history_at_idx ON connector_status_history (at);
            """
        )
        for name in AGGREGATES:
            op.execute(_aggregate_sql(name, timescale))
            keys = AGGREGATES[name][1]
            # REFRESH ... CONCURRENTLY needs a unique index on plain columns.
            op.execute(f"CREATE UNIQUE INDEX {name}_key_idx ON {name} ({keys}, bucket)")


def downgrade() -> None:
    for name in reversed(list(AGGREGATES)):
        op.execute(f"DROP MATERIALIZED VIEW IF EXISTS {name}")
    op.execute(
        "DROP TABLE connector_availability, connector_status_history, site_load_live, "
        "load_connector_1m"
    )

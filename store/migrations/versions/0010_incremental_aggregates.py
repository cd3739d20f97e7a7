"""Load aggregates maintained per bucket range; late rows recorded for the refresher.

* ``load_aggregate_invalidations (id, bucket_start, bucket_end, recorded_at)``: the
  time ranges of ``load_connector_1m`` whose aggregates are stale. ``store.load``
  adds one row per UTC hour its batch inserted or changed, in the batch's transaction;
  ``store.aggregates`` refreshes exactly those buckets and deletes the rows (both
  storage modes: TimescaleDB's refresh policies only look back 2 and 7 days, and
  buffered station data can be older).
* Plain PostgreSQL: ``load_station_1m``, ``load_connector_1h`` and
  ``energy_connector_1d`` become tables with the same columns (and a primary key on
  their group-by columns and ``bucket``) instead of materialised views. A materialised
  view is recomputed whole from the raw rows, so any raw row deleted (by retention or
  by hand) took its aggregates with it; the tables are refreshed per bucket range
  (upsert of the recomputed buckets, delete of buckets without raw rows, both limited
  to the range). Their rows are computed from the raw table once here.

TimescaleDB: nothing changes for the continuous aggregates (the refresher calls
``refresh_continuous_aggregate`` over the recorded ranges).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from alembic import op
from sqlalchemy import text

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

ORIGIN = "TIMESTAMPTZ '2000-01-01 00:00:00+00'"

# name -> (bucket width, group-by columns, select list over load_connector_1m): the
# definitions of 0006, for the tables' first rows and for the downgrade.
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


def _storage_mode() -> str:
    row = (
        op.get_bind()
        .execute(text("SELECT value FROM chargeflow_meta WHERE key = 'storage_mode'"))
        .first()
    )
    return "postgresql" if row is None else str(row[0])


def _select(name: str) -> str:
    width, keys, columns = AGGREGATES[name]
    bucket = f"date_bin(INTERVAL '{width}', bucket, {ORIGIN})"
    return (
        f"SELECT {keys}, {bucket} AS bucket, {columns} "
        f"FROM load_connector_1m GROUP BY {keys}, {bucket}"
    )


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE load_aggregate_invalidations (
            id bigserial PRIMARY KEY,
            bucket_start timestamptz NOT NULL,
            bucket_end timestamptz NOT NULL,
            recorded_at timestamptz NOT NULL DEFAULT now(),
            CHECK (bucket_end > bucket_start)
        )
        """
    )
    if _storage_mode() == "timescaledb":
        return
    for name, (_, keys, _) in AGGREGATES.items():
        op.execute(f"DROP MATERIALIZED VIEW {name}")
        op.execute(f"CREATE TABLE {name} AS {_select(name)}")
        op.execute(f"ALTER TABLE {name} ADD CONSTRAINT {name}_pkey PRIMARY KEY ({keys}, bucket)")
        op.execute(f"CREATE INDEX {name}_bucket_idx ON {name} (bucket)")


def downgrade() -> None:
    if _storage_mode() != "timescaledb":
        for name, (_, keys, _) in AGGREGATES.items():
            op.execute(f"DROP TABLE {name}")
            op.execute(f"CREATE MATERIALIZED VIEW {name} AS {_select(name)} WITH DATA")
            op.execute(f"CREATE UNIQUE INDEX {name}_key_idx ON {name} ({keys}, bucket)")
    op.execute("DROP TABLE load_aggregate_invalidations")

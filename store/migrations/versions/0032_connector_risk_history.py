"""Risk history per connector and minute: ``connector_risk_1m`` (the maintenance
dashboard's "risk per station over time").

``connector_health`` keeps only the latest score per connector. A trigger on it
(``AFTER INSERT OR UPDATE``) folds every new score into the row of its connector and
UTC minute of telemetry time (``at``): the maximum, the latest score and its time, and
the count of scores. The faults flow's writer is unchanged; a replayed batch upserts the
same scores (the maximum and the count may count a replayed score twice: it is a view
for people, not billing), and the snapshot the writer refuses as older (``WHERE
EXCLUDED.at >= h.at``) fires no trigger.

TimescaleDB: a hypertable on ``bucket`` (7-day chunks) with a 2-year retention policy
(as ``connector_status_history``). Plain PostgreSQL: a plain table, no retention (one
row per connector and minute with scores).

Revision ID: 0032
Revises: 0025
Create Date: 2026-12-07
"""

from alembic import op
from sqlalchemy import text

revision = "0032"
down_revision = "0025"
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
    """What the TimescaleDB branch of :func:`upgrade` executes."""
    return (
        "SELECT create_hypertable('connector_risk_1m', by_range('bucket', INTERVAL '7 days'))",
        "SELECT add_retention_policy('connector_risk_1m', INTERVAL '2 years')",
    )


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE connector_risk_1m (
            station_id text NOT NULL,
            connector_id integer NOT NULL,
            bucket timestamptz NOT NULL,
            max_risk double precision NOT NULL,
            last_risk double precision NOT NULL,
            last_at timestamptz NOT NULL,
            scores integer NOT NULL,
            PRIMARY KEY (station_id, connector_id, bucket)
        );

        CREATE FUNCTION connector_risk_fold() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO connector_risk_1m AS r (station_id, connector_id, bucket, max_risk,
                last_risk, last_at, scores)
            VALUES (NEW.station_id, NEW.connector_id, date_trunc('minute', NEW.at), NEW.risk,
                NEW.risk, NEW.at, 1)
            ON CONFLICT (station_id, connector_id, bucket) DO UPDATE SET
                max_risk = greatest(r.max_risk, EXCLUDED.max_risk),
                last_risk = CASE WHEN EXCLUDED.last_at >= r.last_at
                    THEN EXCLUDED.last_risk ELSE r.last_risk END,
                last_at = greatest(r.last_at, EXCLUDED.last_at),
                scores = r.scores + 1;
            RETURN NULL;
        END
        $$;

        CREATE TRIGGER connector_health_risk_history
            AFTER INSERT OR UPDATE ON connector_health
            FOR EACH ROW EXECUTE FUNCTION connector_risk_fold();
        """
    )
    if _storage_mode() == "timescaledb":
        for statement in timescale_statements():
            op.execute(statement)
    else:
        op.execute("CREATE INDEX connector_risk_1m_bucket_idx ON connector_risk_1m (bucket)")


def downgrade() -> None:
    op.execute(
        """
        DROP TRIGGER connector_health_risk_history ON connector_health;
        DROP FUNCTION connector_risk_fold();
        DROP TABLE connector_risk_1m;
        """
    )

"""Sessions: ``missing`` energy, ``reconciled`` closes, one active session per connector.

* ``quality`` may be ``missing``: a closed session without any energy figure
  (``energy_wh`` NULL), never to be taken for a ``corrected`` one. Closed rows that
  have no figure are relabelled (their source cleared); the early source name
  ``register`` becomes ``station_register`` (the API's energy source vocabulary).
* ``closed_by`` may be ``reconciled``: closed because the sessions flow started
  without its state and nothing would replay its events (store.session_reconcile).
* ``sessions_one_active_per_connector``: a partial unique index, at most one
  ``active`` session per (charge point, connector) -- connector 0, the placeholder of
  stops whose start is unknown, excepted. Connectors holding several active rows
  keep the latest started; the others close by ``next_start`` (quality not exact,
  reasons ``state_lost`` and ``stop_missing``, as store.session_reconcile does).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE sessions
            DROP CONSTRAINT sessions_quality_check,
            ADD CONSTRAINT sessions_quality_check
                CHECK (quality IN ('exact', 'corrected', 'estimated', 'missing')),
            DROP CONSTRAINT sessions_closed_by_check,
            ADD CONSTRAINT sessions_closed_by_check CHECK (
                closed_by IS NULL
                OR closed_by IN ('stop', 'next_start', 'timeout', 'reconciled'));

        UPDATE sessions SET quality = 'missing', energy_source = NULL
            WHERE status = 'closed' AND energy_wh IS NULL AND quality <> 'estimated';
        UPDATE sessions SET energy_source = 'station_register'
            WHERE energy_source = 'register';

        WITH ranked AS (
            SELECT session_id, row_number() OVER (
                PARTITION BY charge_point_id, connector_id
                ORDER BY started_at DESC, session_id DESC) AS n
            FROM sessions WHERE status = 'active' AND connector_id <> 0
        )
        UPDATE sessions AS s SET
            status = 'closed',
            closed_by = CASE WHEN s.stopped_at IS NOT NULL THEN 'stop' ELSE 'next_start' END,
            stopped_at = COALESCE(s.stopped_at, s.started_at),
            quality = CASE WHEN s.quality = 'estimated' THEN 'estimated' ELSE 'corrected' END,
            quality_reasons = s.quality_reasons || ARRAY(
                SELECT r FROM unnest(ARRAY['state_lost', CASE WHEN s.stopped_at IS NULL
                                                         THEN 'stop_missing' END]) AS r
                WHERE r IS NOT NULL AND r <> ALL(s.quality_reasons))
        FROM ranked WHERE s.session_id = ranked.session_id AND ranked.n > 1;

        CREATE UNIQUE INDEX sessions_one_active_per_connector
            ON sessions (charge_point_id, connector_id)
            WHERE status = 'active' AND connector_id <> 0;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP INDEX sessions_one_active_per_connector;
        UPDATE sessions SET closed_by = 'timeout' WHERE closed_by = 'reconciled';
        UPDATE sessions SET quality = 'corrected' WHERE quality = 'missing';
        ALTER TABLE sessions
            DROP CONSTRAINT sessions_quality_check,
            ADD CONSTRAINT sessions_quality_check
                CHECK (quality IN ('exact', 'corrected', 'estimated')),
            DROP CONSTRAINT sessions_closed_by_check,
            ADD CONSTRAINT sessions_closed_by_check
                CHECK (closed_by IS NULL OR closed_by IN ('stop', 'next_start', 'timeout'));
        """
    )

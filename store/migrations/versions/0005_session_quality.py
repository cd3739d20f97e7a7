"""Session energy quality: sources, corrections and closed-session publication.

* sessions: ``meter_start_wh`` may be NULL (a 2.0.1 transaction without any
  register, energy from power integration); ``closed_by`` (stop | next_start |
  timeout), ``station_energy_wh`` (the station register's figure, kept next to
  the billed ``energy_wh``), ``smart_meter_energy_wh``/``smart_meter_id`` (the
  smart meter's figure used for billing or the cross-check), ``ocpp_version``.
* meter_samples: ``unit_multiplier`` (OCPP 2.0.1 ``unitOfMeasure.multiplier``:
  ``value`` is in ``unit`` x 10^multiplier).
* sessions_outbox: one row per session, written in the transaction that first
  stores the session as closed; the flow publishes unpublished rows to
  ``sessions.closed`` and sets ``published_at`` after the broker confirmed them.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE sessions
            ALTER COLUMN meter_start_wh DROP NOT NULL,
            ADD COLUMN closed_by text
                CHECK (closed_by IS NULL OR closed_by IN ('stop', 'next_start', 'timeout')),
            ADD COLUMN station_energy_wh bigint,
            ADD COLUMN smart_meter_energy_wh bigint,
            ADD COLUMN smart_meter_id text,
            ADD COLUMN ocpp_version text;

        ALTER TABLE meter_samples ADD COLUMN unit_multiplier smallint NOT NULL DEFAULT 0;

        CREATE TABLE sessions_outbox (
            session_id uuid PRIMARY KEY REFERENCES sessions (session_id) ON DELETE CASCADE,
            charge_point_id text NOT NULL,
            payload jsonb NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            published_at timestamptz
        );
        CREATE INDEX sessions_outbox_unpublished_idx ON sessions_outbox (created_at, session_id)
            WHERE published_at IS NULL;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE sessions_outbox;
        ALTER TABLE meter_samples DROP COLUMN unit_multiplier;
        ALTER TABLE sessions
            DROP COLUMN closed_by, DROP COLUMN station_energy_wh,
            DROP COLUMN smart_meter_energy_wh, DROP COLUMN smart_meter_id,
            DROP COLUMN ocpp_version;
        """
    )

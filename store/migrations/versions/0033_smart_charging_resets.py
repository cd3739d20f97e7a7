"""Smart-charging marks an operator clears (docs/smart-charging.md): once a station that
ignored or rejected profiles is fixed (firmware, configuration), the operator resets it
(``POST /v1/stations/{id}/smart-charging/reset``) and the flow controls it again.

- ``stations.smart_charging_resets``: how many times the station was reset; the flow
  clears its marks when the count rises.
- ``station_compliance.cleared_at`` / ``cleared_by``: the marking the reset ended (kept
  for the record; the flow records a new one if the station ignores a limit again).

Revision ID: 0033
Revises: 0031
Create Date: 2026-12-08
"""

from alembic import op

revision = "0033"
down_revision = "0031"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE stations
            ADD COLUMN smart_charging_resets integer NOT NULL DEFAULT 0;
        ALTER TABLE station_compliance
            ADD COLUMN cleared_at timestamptz,
            ADD COLUMN cleared_by text,
            DROP CONSTRAINT station_compliance_pkey,
            ADD COLUMN marking_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY;
        CREATE UNIQUE INDEX station_compliance_open_idx
            ON station_compliance (charge_point_id) WHERE cleared_at IS NULL;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DELETE FROM station_compliance WHERE cleared_at IS NOT NULL;
        DROP INDEX station_compliance_open_idx;
        ALTER TABLE station_compliance
            DROP COLUMN marking_id,
            DROP COLUMN cleared_by,
            DROP COLUMN cleared_at,
            ADD PRIMARY KEY (charge_point_id);
        ALTER TABLE stations DROP COLUMN smart_charging_resets;
        """
    )

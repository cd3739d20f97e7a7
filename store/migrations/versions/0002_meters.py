"""Smart meters: which meter measures which station connector.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE meters (
            meter_id text PRIMARY KEY
                CHECK (meter_id ~ '^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$'),
            charge_point_id text NOT NULL
                REFERENCES stations (charge_point_id) ON DELETE CASCADE,
            connector_id integer NOT NULL CHECK (connector_id >= 0),
            is_billing_meter boolean NOT NULL DEFAULT false,
            created_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX meters_station_idx ON meters (charge_point_id, connector_id);
        -- At most one billing meter per connector: billed energy has one source.
        CREATE UNIQUE INDEX meters_one_billing_meter_idx ON meters (charge_point_id, connector_id)
            WHERE is_billing_meter;
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE meters")

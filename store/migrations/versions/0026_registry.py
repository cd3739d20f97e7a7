"""The operator registry behind ``/v1/stations``, ``/v1/sites``, ``/v1/id-tokens`` and
``/v1/meters`` (docs/registry.md):

- ``stations.decommissioned_at``: a decommissioned station keeps its row (sessions,
  CDRs, alerts keep naming it) but the gateway refuses its logins from then on.
- ``connectors``: what the smart-charging allocator needs per connector
  (``smart_charging.inputs.SessionDemand``): ``phases`` (1 or 3), ``min_current_a`` and
  ``max_current_a`` (A per phase), ``max_power_w``, ``phase_rotation`` (OCPP
  PhaseRotation, e.g. RST) and the plug ``connector_type``.
- ``sites.max_current_a``: the grid connection's limit per phase (A), beside the
  existing ``capacity_w``; time-varying limits are not here.
- ``id_tags``: ``token_type`` (RFID, app, PIN, central), ``customer_ref`` (who the
  driver is in the operator's CRM), ``membership_tier`` (standard, member, fleet,
  priority: the allocator's ``tier``), ``updated_at``.
- ``meters.role``: ``connector`` (measures a connector), ``station`` (the station as a
  whole, connector 0) or ``non_controllable_load`` (other load behind the station's
  supply, budgeted as fixed by the allocator).

Plain columns in both storage modes.

Revision ID: 0026
Revises: 0029
Create Date: 2026-12-07
"""

from alembic import op

revision = "0026"
down_revision = "0029"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE stations ADD COLUMN decommissioned_at timestamptz;
        ALTER TABLE connectors
            ADD COLUMN connector_type text,
            ADD COLUMN phases smallint CHECK (phases IN (1, 3)),
            ADD COLUMN min_current_a numeric(6, 1) CHECK (min_current_a >= 0),
            ADD COLUMN max_current_a numeric(6, 1) CHECK (max_current_a > 0),
            ADD COLUMN max_power_w integer CHECK (max_power_w > 0),
            ADD COLUMN phase_rotation text,
            ADD CONSTRAINT connectors_current_range
                CHECK (min_current_a IS NULL OR max_current_a IS NULL
                       OR min_current_a <= max_current_a);
        ALTER TABLE sites ADD COLUMN max_current_a numeric(7, 1) CHECK (max_current_a > 0);
        ALTER TABLE id_tags
            ADD COLUMN token_type text NOT NULL DEFAULT 'RFID'
                CHECK (token_type IN ('RFID', 'app', 'PIN', 'central')),
            ADD COLUMN customer_ref text,
            ADD COLUMN membership_tier text NOT NULL DEFAULT 'standard'
                CHECK (membership_tier IN ('standard', 'member', 'fleet', 'priority')),
            ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();
        ALTER TABLE meters ADD COLUMN role text NOT NULL DEFAULT 'connector'
            CHECK (role IN ('connector', 'station', 'non_controllable_load'));
        """
    )


def downgrade() -> None:
    op.execute(
        """
        ALTER TABLE meters DROP COLUMN role;
        ALTER TABLE id_tags DROP COLUMN token_type, DROP COLUMN customer_ref,
            DROP COLUMN membership_tier, DROP COLUMN updated_at;
        ALTER TABLE sites DROP COLUMN max_current_a;
        ALTER TABLE connectors DROP CONSTRAINT connectors_current_range,
            DROP COLUMN connector_type, DROP COLUMN phases, DROP COLUMN min_current_a,
            DROP COLUMN max_current_a, DROP COLUMN max_power_w, DROP COLUMN phase_rotation;
        ALTER TABLE stations DROP COLUMN decommissioned_at;
        """
    )

"""Smart charging (docs/smart-charging.md, ADR 0013):

- ``site_limit_windows``: time-varying limits of a site (a peak window, a grid operator's
  or an energy manager's limit), A per phase from ``starts_at`` (included) to
  ``ends_at`` (excluded); a window only lowers the site's own limit. Replaced as a whole
  by ``PUT /v1/sites/{id}/limits``.
- ``session_charging_needs``: a driver's departure time and energy need per
  transaction (``PUT /v1/sessions/{id}/charging-needs``).
- ``smart_charging_allocations``: the smart-charging flow's latest allocation per site,
  per session with its reason (``GET /v1/sites/{id}/allocation``).
- ``station_compliance``: stations the flow found drawing above an accepted limit
  (non-compliant: budgeted at full draw).

Plain tables in both storage modes.

Revision ID: 0031
Revises: 0032
Create Date: 2026-12-07
"""

from alembic import op

revision = "0031"
down_revision = "0032"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE site_limit_windows (
            site_id text NOT NULL REFERENCES sites (site_id) ON DELETE CASCADE,
            starts_at timestamptz NOT NULL,
            ends_at timestamptz NOT NULL,
            max_current_a numeric(7, 1) NOT NULL CHECK (max_current_a >= 0),
            reason text,
            set_by text,
            set_at timestamptz NOT NULL DEFAULT now(),
            CHECK (ends_at > starts_at),
            PRIMARY KEY (site_id, starts_at, ends_at)
        );
        CREATE TABLE session_charging_needs (
            charge_point_id text NOT NULL,
            transaction_id text NOT NULL,
            departure_at timestamptz,
            energy_wh bigint CHECK (energy_wh IS NULL OR energy_wh >= 0),
            set_by text,
            set_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (charge_point_id, transaction_id)
        );
        CREATE INDEX session_charging_needs_set_at_idx ON session_charging_needs (set_at);
        CREATE TABLE smart_charging_allocations (
            site_id text PRIMARY KEY,
            at timestamptz NOT NULL,
            body jsonb NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE station_compliance (
            charge_point_id text PRIMARY KEY,
            connector_id integer NOT NULL,
            non_compliant_since timestamptz NOT NULL,
            limit_a numeric(7, 1) NOT NULL,
            measured_a numeric(7, 1) NOT NULL
        );
        """
    )


def downgrade() -> None:
    op.execute(
        "DROP TABLE station_compliance; DROP TABLE smart_charging_allocations;"
        " DROP TABLE session_charging_needs; DROP TABLE site_limit_windows"
    )

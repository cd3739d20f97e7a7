"""Signed meter values (Eichrecht): what the meter signed for a session, kept exactly as
the station sent it, for the CDR's OCPI ``signed_data``.

- ``signed_meter_values``: one row per signed value of a transaction, natural key
  (charge point, transaction, measured_at, context, measurand): a replay or a station
  resending inserts nothing (``ON CONFLICT DO NOTHING``, the first stored wins).
  ``signed_data`` is text as received (an OCMF string, base64...); ``value``/``unit``/
  ``unit_multiplier`` the plain register the station sent with it, if it did.

A plain table in both storage modes (a few rows per session, read per session).

Revision ID: 0019
Revises: 0017
Create Date: 2026-12-04
"""

from alembic import op

revision = "0019"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE signed_meter_values (
            charge_point_id text NOT NULL,
            transaction_id text NOT NULL,
            measured_at timestamptz NOT NULL,
            context text NOT NULL,
            measurand text NOT NULL,
            connector_id integer,
            signed_data text NOT NULL,
            encoding_method text,
            signing_method text,
            public_key text,
            value numeric,
            unit text NOT NULL DEFAULT '',
            unit_multiplier smallint NOT NULL DEFAULT 0,
            PRIMARY KEY (charge_point_id, transaction_id, measured_at, context, measurand)
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE signed_meter_values")

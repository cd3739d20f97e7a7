"""Payment methods per id token: how a session started with an id tag is paid.

- ``payment_methods``: one row per id tag (the key): the provider (``wallet``,
  ``postpaid`` or ``stripe``), the customer (the wallet or postpaid account holder, or
  the Stripe customer) and, for Stripe, the payment method (``pm_...``) the
  pre-authorisation is confirmed with. The billing worker pre-authorises an active
  session whose id tag has a row here; the session's CDR names the row's customer.
- ``sessions_active_started_idx``: the active sessions in start order, for that look.

Plain table in both storage modes.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-04
"""

from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE payment_methods (
            id_tag text PRIMARY KEY,
            provider text NOT NULL CHECK (provider IN ('wallet', 'postpaid', 'stripe')),
            customer text NOT NULL CHECK (customer <> ''),
            payment_method text,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            CHECK (provider <> 'stripe' OR payment_method IS NOT NULL)
        );
        -- The billing worker's look for active sessions to pre-authorise, every few
        -- seconds: the active sessions only, not a scan of every session ever.
        CREATE INDEX sessions_active_started_idx ON sessions (started_at, session_id)
            WHERE status = 'active';
        """
    )


def downgrade() -> None:
    op.execute("DROP INDEX sessions_active_started_idx; DROP TABLE payment_methods")

"""Session payments: what each session's payment is at (authorised, captured, refunded,
retried, flagged for billing) and an append-only log of what happened to it.

- ``session_payments``: one row per session with a payment (the session id is the key:
  a session is paid once). The row lock serialises every capture, cancel and refund of
  a session, and the provider call carries an idempotency key derived from the session
  (``capture:{session_id}``), so a crash between the provider's answer and the commit
  repeats the first outcome instead of charging twice.
- ``payment_events``: the log (audit of operator actions, provider webhooks); a
  provider's event id is UNIQUE, so a redelivered webhook is applied once.

Plain tables in both storage modes.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03
"""

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE session_payments (
            session_id text PRIMARY KEY,
            provider text NOT NULL,
            customer text NOT NULL,
            currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
            reference text,
            status text NOT NULL CHECK (status IN ('authorizing', 'authorized',
                'requires_action', 'captured', 'canceled', 'failed')),
            authorized_minor bigint NOT NULL DEFAULT 0 CHECK (authorized_minor >= 0),
            captured_minor bigint NOT NULL DEFAULT 0 CHECK (captured_minor >= 0),
            refunded_minor bigint NOT NULL DEFAULT 0
                CHECK (refunded_minor >= 0 AND refunded_minor <= captured_minor),
            final_cost_minor bigint CHECK (final_cost_minor >= 0),
            shortfall_minor bigint NOT NULL DEFAULT 0 CHECK (shortfall_minor >= 0),
            attempts integer NOT NULL DEFAULT 0,
            next_attempt_at timestamptz,
            last_error text,
            flagged text,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX session_payments_due_idx ON session_payments (next_attempt_at)
            WHERE next_attempt_at IS NOT NULL;
        CREATE INDEX session_payments_flagged_idx ON session_payments (updated_at)
            WHERE flagged IS NOT NULL;

        CREATE TABLE payment_events (
            event_id bigserial PRIMARY KEY,
            session_id text NOT NULL,
            at timestamptz NOT NULL DEFAULT now(),
            kind text NOT NULL,
            actor text NOT NULL,
            provider_event_id text UNIQUE,
            amount_minor bigint,
            detail text
        );
        CREATE INDEX payment_events_session_idx ON payment_events (session_id, event_id);
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE payment_events, session_payments")

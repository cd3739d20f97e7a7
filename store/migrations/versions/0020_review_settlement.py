"""What the billing worker did with a review's decision.

- ``billing_reviews.settled_at``: when the worker carried the decision out (released or
  corrected: the CDR stored, published and its payment captured; written off: the
  payment hold released). NULL on a decided review: still to do. The worker sets it
  last, so a crash before it repeats the steps (each idempotent) instead of losing one.
- ``billing_reviews.cdr_id``: the CDR the decision issued (NULL for a write-off).
- ``billing_review_events.action`` may be ``settled`` (the worker's audit row).

The worker looks for decided, unsettled reviews on a partial index that stays as small
as the backlog.

Revision ID: 0020
Revises: 0017
Create Date: 2026-12-04
"""

from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE billing_reviews
            ADD COLUMN settled_at timestamptz,
            ADD COLUMN cdr_id text,
            ADD CONSTRAINT billing_reviews_settled_after_decision
                CHECK (settled_at IS NULL OR status <> 'held'),
            ADD CONSTRAINT billing_reviews_cdr_of_a_billed_decision
                CHECK (cdr_id IS NULL OR status IN ('released', 'corrected'));
        CREATE INDEX billing_reviews_unsettled_idx ON billing_reviews (decided_at, session_id)
            WHERE status <> 'held' AND settled_at IS NULL;
        ALTER TABLE billing_review_events
            DROP CONSTRAINT billing_review_events_action_check,
            ADD CONSTRAINT billing_review_events_action_check CHECK (action IN
                ('held', 'released', 'corrected', 'written_off', 'settled'));
        """
    )


def downgrade() -> None:
    op.execute(
        """
        -- The worker's audit rows go with the column they record (append-only otherwise).
        ALTER TABLE billing_review_events DISABLE TRIGGER billing_review_events_append_only;
        DELETE FROM billing_review_events WHERE action = 'settled';
        ALTER TABLE billing_review_events ENABLE TRIGGER billing_review_events_append_only;
        ALTER TABLE billing_review_events
            DROP CONSTRAINT billing_review_events_action_check,
            ADD CONSTRAINT billing_review_events_action_check CHECK (action IN
                ('held', 'released', 'corrected', 'written_off'));
        DROP INDEX billing_reviews_unsettled_idx;
        ALTER TABLE billing_reviews
            DROP CONSTRAINT billing_reviews_cdr_of_a_billed_decision,
            DROP CONSTRAINT billing_reviews_settled_after_decision,
            DROP COLUMN cdr_id,
            DROP COLUMN settled_at;
        """
    )

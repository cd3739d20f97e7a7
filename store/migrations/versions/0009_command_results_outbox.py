"""commands: the row is the outbox of its ``CommandResult``.

A terminal command row used to be published to ``ocpp.command-results`` right after
the update, with nothing to catch a replica that died (or a broker that was down
past the retries) in between: the row stayed terminal and the result was never
published. Now:

* ``result_published_at timestamptz``: set once the result is confirmed by Kafka;
* every replica's heartbeat publishes terminal rows still unpublished a while after
  ``completed_at`` (``store.commands.publish_unpublished``: ``FOR UPDATE SKIP LOCKED``
  so one replica takes each row), then sets the column. At-least-once: a result can
  be published twice (a crash after the publish, before the mark); consumers
  de-duplicate on ``command_id``.

The partial index keeps the heartbeat's look-up to the few unpublished rows.
Rows that are terminal already when this runs count as published (their results
went out before; publishing them again after an upgrade would flood consumers).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-21
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE commands ADD COLUMN result_published_at timestamptz;
        UPDATE commands SET result_published_at = completed_at
            WHERE completed_at IS NOT NULL;
        CREATE INDEX commands_unpublished_idx ON commands (completed_at)
            WHERE completed_at IS NOT NULL AND result_published_at IS NULL;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP INDEX commands_unpublished_idx;
        ALTER TABLE commands DROP COLUMN result_published_at;
        """
    )

"""commands from the API: idempotency keys, the publish outbox, remote start ids.

* ``api_key_id``, ``idempotency_key``: a request retried with the same
  ``Idempotency-Key`` by the same API key finds the first command (unique per key);
  ``request_hash``: what that request asked (a reuse of the key for another request
  is refused).
* ``published_at``: when the command was confirmed on ``ocpp.commands``. The API
  writes the row first and publishes after; a command the broker did not take stays
  ``pending`` with ``published_at`` NULL and a gateway heartbeat publishes it
  (``store.command_queue.publish_queued``). Rows already there count as published.
* ``remote_start_id``: the 2.0.1 ``remoteStartId`` a remote start carries (from the
  sequence ``command_remote_start_ids``), to match the transaction it starts.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-04
"""

from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE commands
            ADD COLUMN api_key_id text,
            ADD COLUMN idempotency_key text,
            ADD COLUMN request_hash text,
            ADD COLUMN published_at timestamptz,
            ADD COLUMN remote_start_id integer;
        UPDATE commands SET published_at = requested_at;
        CREATE UNIQUE INDEX commands_idempotency_idx ON commands (api_key_id, idempotency_key)
            WHERE idempotency_key IS NOT NULL;
        CREATE INDEX commands_unpublished_pending_idx ON commands (requested_at)
            WHERE published_at IS NULL AND status = 'pending';
        CREATE INDEX commands_requested_idx ON commands (requested_at DESC, command_id DESC);
        CREATE SEQUENCE command_remote_start_ids AS integer MINVALUE 1 MAXVALUE 2147483647
            CYCLE;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP SEQUENCE command_remote_start_ids;
        DROP INDEX commands_requested_idx;
        DROP INDEX commands_unpublished_pending_idx;
        DROP INDEX commands_idempotency_idx;
        ALTER TABLE commands DROP COLUMN api_key_id, DROP COLUMN idempotency_key,
            DROP COLUMN request_hash, DROP COLUMN published_at, DROP COLUMN remote_start_id;
        """
    )

"""remote start -> the transaction it produced.

* ``commands.transaction_id``: the station's transaction id a remote start
  (``RemoteStartTransaction`` / ``RequestStartTransaction``) produced, written by the
  gateway that saw the start (``store.remote_start_links``); NULL until then, and for
  every other command. ``linked_at``: when it was written.
* ``commands_transaction_idx``: one command per (station, transaction), and the
  session's reverse look-up (sessions join on the same pair).
* ``commands_unlinked_starts_idx``: the candidates a start is matched against.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-07
"""

from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE commands
            ADD COLUMN transaction_id text,
            ADD COLUMN linked_at timestamptz;
        CREATE UNIQUE INDEX commands_transaction_idx ON commands (charge_point_id, transaction_id)
            WHERE transaction_id IS NOT NULL;
        CREATE INDEX commands_unlinked_starts_idx ON commands (charge_point_id, sent_at)
            WHERE transaction_id IS NULL
              AND action IN ('RemoteStartTransaction', 'RequestStartTransaction');
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP INDEX commands_unlinked_starts_idx;
        DROP INDEX commands_transaction_idx;
        ALTER TABLE commands DROP COLUMN transaction_id, DROP COLUMN linked_at;
        """
    )

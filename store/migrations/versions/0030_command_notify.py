"""commands: a notification on every status step, so waiting callers wake at once.

``commands_changed`` sends ``pg_notify('chargeflow_commands', command_id)`` after an
update that changes ``status``, ``sent_at`` or ``transaction_id`` (the steps a caller
waits for, and a remote start's link to its transaction). The API
listens once per process and wakes the requests waiting on that command (``?wait`` and
the event stream); they still read the row itself, and re-read it every second should
a notification be missed (e.g. while the listener reconnects).

Revision ID: 0030
Revises: 0023
Create Date: 2026-12-07
"""

from alembic import op

revision = "0030"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION commands_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('chargeflow_commands', NEW.command_id::text);
            RETURN NULL;
        END $$;
        CREATE TRIGGER commands_changed
            AFTER UPDATE OF status, sent_at, transaction_id ON commands
            FOR EACH ROW
            WHEN (OLD.status IS DISTINCT FROM NEW.status
                  OR OLD.sent_at IS DISTINCT FROM NEW.sent_at
                  OR OLD.transaction_id IS DISTINCT FROM NEW.transaction_id)
            EXECUTE FUNCTION commands_changed();
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER commands_changed ON commands; DROP FUNCTION commands_changed();")

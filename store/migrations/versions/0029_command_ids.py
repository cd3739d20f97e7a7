"""commands from the API: the ids chargeflow draws for the station.

* ``command_request_ids``: the 2.0.1 ``requestId`` of a log upload (GetLog), so its
  LogStatusNotifications name the command's request.
* ``command_reservation_ids``: the ``reservationId`` (1.6) / ``id`` (2.0.1) of a
  ReserveNow, the id a CancelReservation names later.

Both kept in the command's payload; integers of the OCPP range, cycling.

Revision ID: 0029
Revises: 0030
Create Date: 2026-12-07
"""

from alembic import op

revision = "0029"
down_revision = "0030"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE SEQUENCE command_request_ids AS integer MINVALUE 1 MAXVALUE 2147483647 CYCLE;
        CREATE SEQUENCE command_reservation_ids AS integer MINVALUE 1 MAXVALUE 2147483647
            CYCLE;
        """
    )


def downgrade() -> None:
    op.execute("DROP SEQUENCE command_reservation_ids; DROP SEQUENCE command_request_ids;")

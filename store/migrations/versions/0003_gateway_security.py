"""Gateway security: station credentials, authentication failures, connection tracking,
open transactions (concurrent idTag use).

- ``stations.security_profile``: 0 = no authentication (must be set explicitly per
  station), 1 = HTTP Basic (default), 2 = HTTP Basic over TLS. ``stations.password_hash``
  (from 0001) holds the argon2 hash of the station's Basic-auth password.
- ``stations.auth_failures`` (consecutive failed logins since the last good one),
  ``last_auth_failure_at``/``last_auth_failure_ip`` and ``last_auth_at``: for operators.
- ``station_connections``: which gateway replica holds which station's socket now
  (written by the gateway on connect, deleted on disconnect; read by command routing,
  see docs/commands.md).
- ``open_transactions``: transactions started with an idTag and not stopped yet
  (inserted/deleted by the gateway after the event is in Kafka), so a second start
  with the same idTag elsewhere is answered ConcurrentTx.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE stations
            ADD COLUMN security_profile smallint NOT NULL DEFAULT 1
                CHECK (security_profile IN (0, 1, 2)),
            ADD COLUMN auth_failures integer NOT NULL DEFAULT 0,
            ADD COLUMN last_auth_failure_at timestamptz,
            ADD COLUMN last_auth_failure_ip text,
            ADD COLUMN last_auth_at timestamptz;

        CREATE TABLE station_connections (
            charge_point_id text PRIMARY KEY
                REFERENCES stations (charge_point_id) ON DELETE CASCADE,
            gateway_id text NOT NULL,
            connected_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX station_connections_gateway_idx ON station_connections (gateway_id);

        CREATE TABLE open_transactions (
            charge_point_id text NOT NULL
                REFERENCES stations (charge_point_id) ON DELETE CASCADE,
            transaction_id text NOT NULL,
            connector_id integer NOT NULL,
            id_tag text NOT NULL,
            started_at timestamptz NOT NULL,
            PRIMARY KEY (charge_point_id, transaction_id)
        );
        CREATE INDEX open_transactions_id_tag_idx ON open_transactions (id_tag);
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE open_transactions;
        DROP TABLE station_connections;
        ALTER TABLE stations DROP COLUMN security_profile, DROP COLUMN auth_failures,
            DROP COLUMN last_auth_failure_at, DROP COLUMN last_auth_failure_ip,
            DROP COLUMN last_auth_at;
        """
    )

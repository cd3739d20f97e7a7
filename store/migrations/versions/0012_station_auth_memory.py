"""Station authentication memory that survives gateway restarts.

- ``stations.last_auth_ip``: the source address (IPv6: its /64) of the station's last
  successful login. A login from that address is always verified, also while the
  address as a whole is cooling down after failed logins (ingest.gateway.security).
- ``station_verified_credentials``: one row per station whose password was verified
  with argon2: an HMAC-SHA256 of (station id, stored hash, password) under the
  gateway's cache key (a secret setting, never stored in the database) and when it
  was verified. A later login whose HMAC matches, while the station was seen within
  the cache TTL, costs an HMAC instead of an argon2 verification, on any replica that
  has the same key. Bound to the stored hash: a new password invalidates it.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE stations ADD COLUMN last_auth_ip text;

        CREATE TABLE station_verified_credentials (
            charge_point_id text PRIMARY KEY
                REFERENCES stations (charge_point_id) ON DELETE CASCADE,
            credential_mac bytea NOT NULL,
            verified_at timestamptz NOT NULL
        );
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE station_verified_credentials;
        ALTER TABLE stations DROP COLUMN last_auth_ip;
        """
    )

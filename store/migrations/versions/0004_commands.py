"""Remote commands: lifecycle and audit of commands sent to charge points.

``commands``: one row per command id (the idempotency key), from ``pending`` to a
terminal status; who asked, when, what, which gateway replica sent it and the
station's answer. ``gateways``: replica heartbeats (a replica whose heartbeat is
older than the grace period holds no stations). ``gateway_offsets``: where each
replica continues reading ``ocpp.commands`` after a restart. Routing also reads
``station_connections`` (0003: which replica holds which station's socket).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE commands (
            command_id uuid PRIMARY KEY,
            charge_point_id text NOT NULL,
            action text NOT NULL,
            payload jsonb NOT NULL,
            ocpp_version text,
            requested_by text NOT NULL,
            requested_at timestamptz NOT NULL,
            expires_at timestamptz NOT NULL,
            timeout_s double precision NOT NULL CHECK (timeout_s > 0),
            status text NOT NULL DEFAULT 'pending' CHECK (status IN (
                'pending', 'sent', 'accepted', 'rejected', 'failed', 'timed_out',
                'expired', 'offline')),
            gateway_id text,
            sent_at timestamptz,
            completed_at timestamptz,
            response jsonb,
            error text,
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX commands_station_idx ON commands (charge_point_id, requested_at DESC);
        CREATE INDEX commands_open_idx ON commands (status, expires_at)
            WHERE status IN ('pending', 'sent');

        CREATE TABLE gateways (
            gateway_id text PRIMARY KEY,
            started_at timestamptz NOT NULL DEFAULT now(),
            last_heartbeat timestamptz NOT NULL DEFAULT now()
        );

        CREATE TABLE gateway_offsets (
            gateway_id text NOT NULL,
            topic text NOT NULL,
            partition integer NOT NULL,
            next_offset bigint NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (gateway_id, topic, partition)
        );

        -- Undecodable messages on ocpp.commands: the replica that inserts the row
        -- dead-letters the message, so it is dead-lettered once, not once per replica.
        CREATE TABLE command_deadletters (
            topic text NOT NULL,
            partition integer NOT NULL,
            "offset" bigint NOT NULL,
            gateway_id text NOT NULL,
            reason text NOT NULL,
            at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (topic, partition, "offset")
        );
        """
    )


def downgrade() -> None:
    op.execute(
        "DROP TABLE command_deadletters; DROP TABLE gateway_offsets; DROP TABLE gateways; "
        "DROP TABLE commands"
    )

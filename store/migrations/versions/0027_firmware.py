"""firmware: status notifications, update-firmware request ids, rollouts in waves.

* ``firmware_statuses``: every FirmwareStatusNotification the gateway accepted
  (append-only; charge point, status as sent, the 2.0.1 ``requestId`` or NULL, when the
  gateway received it). Written by the gateway after publishing (a registry write like
  the boot's), read by the rollout worker.
* ``firmware_request_ids``: the 2.0.1 UpdateFirmware ``requestId`` chargeflow draws.
* ``firmware_rollouts``: one rollout (target, firmware, waves, window, threshold, its
  state and current wave; ``waived_wave``: the wave a resume let continue past its
  failures); ``firmware_rollout_stations``: one row per target station
  (its wave, state, the command sent and the requestId it carried).

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-07
"""

from alembic import op

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE firmware_statuses (
            status_id bigserial PRIMARY KEY,
            charge_point_id text NOT NULL,
            status text NOT NULL,
            request_id integer,
            received_at timestamptz NOT NULL
        );
        CREATE INDEX firmware_statuses_station_idx
            ON firmware_statuses (charge_point_id, received_at);
        CREATE SEQUENCE firmware_request_ids AS integer MINVALUE 1 MAXVALUE 2147483647 CYCLE;
        CREATE TABLE firmware_rollouts (
            rollout_id uuid PRIMARY KEY,
            name text NOT NULL,
            status text NOT NULL DEFAULT 'pending' CHECK (status IN
                ('pending', 'running', 'paused', 'completed', 'cancelled')),
            firmware jsonb NOT NULL,
            wave_size integer NOT NULL CHECK (wave_size > 0),
            wave_unit text NOT NULL CHECK (wave_unit IN ('count', 'percent')),
            failure_threshold numeric NOT NULL CHECK (failure_threshold >= 0),
            threshold_unit text NOT NULL CHECK (threshold_unit IN ('count', 'fraction')),
            window_spec jsonb,
            station_timeout_s integer NOT NULL,
            current_wave integer NOT NULL DEFAULT 0,
            pause_reason text,
            waived_wave integer,
            created_by text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX firmware_rollouts_created_idx
            ON firmware_rollouts (created_at DESC, rollout_id DESC);
        CREATE INDEX firmware_rollouts_active_idx ON firmware_rollouts (status)
            WHERE status IN ('pending', 'running');
        CREATE TABLE firmware_rollout_stations (
            rollout_id uuid NOT NULL REFERENCES firmware_rollouts ON DELETE CASCADE,
            charge_point_id text NOT NULL,
            wave integer NOT NULL,
            state text NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'sent',
                'downloading', 'installing', 'installed', 'failed', 'timed_out')),
            command_id uuid,
            request_id integer,
            sent_at timestamptz,
            last_status text,
            updated_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (rollout_id, charge_point_id)
        );
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE firmware_rollout_stations;
        DROP TABLE firmware_rollouts;
        DROP SEQUENCE firmware_request_ids;
        DROP TABLE firmware_statuses;
        """
    )
